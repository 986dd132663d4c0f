using System.Text.Json;
using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Text.Templates;

namespace EdgeServer.Inference.Chat;

/// <summary>What a request becomes before it is queued: prompt tokens, the grammar that constrains sampling, and
/// how to read tool calls from the output.</summary>
internal sealed record PreparedPrompt(int[] Tokens, string? Grammar, ToolCallSyntax? ToolSyntax)
{
    /// <summary>The request field the grammar comes from, to name in errors ("tools", "response_format.json_schema.schema").</summary>
    public string? GrammarSource { get; init; }

    /// <summary>Mistral's call marker is a control token, so its text must be kept in the output.</summary>
    public bool RenderSpecialTokens => ToolSyntax == ToolCallSyntax.Mistral;
}

internal static class PromptBuilder
{
    public static PreparedPrompt Prepare(LlamaModel model, GenerationRequest request, int maxSchemaAlternatives = JsonSchemaGrammar.DefaultMaxAlternatives)
    {
        Validate(request);
        var toolsActive = request.Messages is not null && request.Tools.Count > 0 && request.ToolChoice.Mode != ToolChoiceMode.None;
        int[] tokens;
        if (request.Messages is { } messages)
        {
            // The caller's text must not become control tokens; only the template's own text may.
            var shield = UserTextShield.Create(model.SpecialTokens, messages, request.Tools, request.ToolChoice);
            string text;
            try
            {
                text = model.Template.Render(shield.Messages, shield.Tools, shield.ToolChoice, request.ParallelToolCalls);
            }
            catch (TemplateRaisedException e)
            {
                throw new InvalidGenerationParameterException("messages", $"The model's chat template refused the conversation: {shield.Restore(e.Message)}");
            }
            catch (TemplateRenderException e)
            {
                throw new InvalidGenerationParameterException("messages", $"The model's chat template could not render the conversation: {shield.Restore(e.Message)}");
            }

            tokens = shield.Tokenize(model, text);
        }
        else
        {
            tokens = model.Tokenize(request.Prompt!, addSpecial: true, parseSpecial: false);
        }

        var syntax = model.Template.Syntax;
        string? grammar = null;
        if (toolsActive && request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function)
        {
            grammar = ToolCallFormat.Grammar(syntax, request.Tools, request.ToolChoice, request.ParallelToolCalls, maxSchemaAlternatives);
        }
        else
        {
            if (toolsActive)
            {
                // In auto mode the model may answer in text, so no grammar runs; a strict tool would be a promise
                // EdgeServer does not keep there. A schema that could never be enforced is refused either way.
                for (var i = 0; i < request.Tools.Count; i++)
                {
                    if (request.Tools[i].Strict)
                    {
                        throw new InvalidGenerationParameterException($"tools[{i}].function.strict",
                            $"The tool '{request.Tools[i].Name}' is strict, but with tool_choice 'auto' EdgeServer does not constrain calls. Use tool_choice 'required' or name the function to have calls enforced by a grammar, or set strict to false.");
                    }

                    using var doc = JsonDocument.Parse(request.Tools[i].Parameters);
                    JsonSchemaGrammar.FromSchema(doc.RootElement, $"tools[{i}].function.parameters", maxSchemaAlternatives);
                }
            }

            grammar = request.ResponseFormat.Kind switch
            {
                ResponseFormatKind.JsonObject => JsonSchemaGrammar.AnyObject(),
                ResponseFormatKind.JsonSchema => SchemaGrammar(request.ResponseFormat.Schema!, maxSchemaAlternatives),
                _ => null,
            };
        }

        var source = grammar is null ? null
            : toolsActive && request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function ? "tools"
            : request.ResponseFormat.Kind == ResponseFormatKind.JsonSchema ? "response_format.json_schema.schema" : "response_format";
        return new PreparedPrompt(tokens, grammar, toolsActive ? syntax : null) { GrammarSource = source };
    }

    private static string SchemaGrammar(string schema, int maxAlternatives)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonSchemaGrammar.FromSchema(doc.RootElement, "response_format.json_schema.schema", maxAlternatives);
    }

    private static void Validate(GenerationRequest request)
    {
        if (request.Tools.Count > 0 && request.Messages is null)
        {
            throw new InvalidGenerationParameterException("tools", "Tools are only available with chat messages.");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var tool in request.Tools)
        {
            if (!names.Add(tool.Name))
            {
                throw new InvalidGenerationParameterException("tools", $"The tool name '{tool.Name}' is given twice.");
            }
        }

        if (request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function && request.Tools.Count == 0)
        {
            throw new InvalidGenerationParameterException("tool_choice", "'tool_choice' asks for a tool call, but no 'tools' were given.");
        }

        if (request.ToolChoice.Mode == ToolChoiceMode.Function && !names.Contains(request.ToolChoice.Function!))
        {
            throw new InvalidGenerationParameterException("tool_choice", $"'tool_choice' names the function '{request.ToolChoice.Function}', which is not among 'tools'.");
        }

        if (request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function && request.ResponseFormat.Kind != ResponseFormatKind.Text)
        {
            throw new InvalidGenerationParameterException("response_format", "A forced tool call ('tool_choice' required or a function) cannot be combined with a JSON 'response_format': both constrain the same output.");
        }

        if (request.TopLogprobs is < 0 or > 20)
        {
            throw new InvalidGenerationParameterException("top_logprobs", $"top_logprobs must be between 0 and 20; got {request.TopLogprobs}.");
        }

        if (request.TopLogprobs > 0 && !request.Logprobs)
        {
            throw new InvalidGenerationParameterException("top_logprobs", "'top_logprobs' needs 'logprobs' set to true.");
        }
    }
}
