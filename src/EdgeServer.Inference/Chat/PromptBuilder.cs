using System.Text.Json;
using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Text.Templates;

namespace EdgeServer.Inference.Chat;

/// <summary>What a request becomes before it is queued: prompt tokens, the grammar that constrains sampling, and
/// how to read tool calls from the output.</summary>
internal sealed record PreparedPrompt(int[] Tokens, string? Grammar, ToolCallSyntax? ToolSyntax)
{
    /// <summary>The request field the grammar comes from, to name in errors (tools, or the response format).</summary>
    public FieldRef? GrammarSource { get; init; }

    /// <summary>Mistral's call marker is a control token, so its text must be kept in the output.</summary>
    public bool RenderSpecialTokens => ToolSyntax == ToolCallSyntax.Mistral;
}

internal static class PromptBuilder
{
    /// <summary>Renders and tokenizes a request <see cref="GenerationRequestValidator"/> has checked, and builds its grammar.</summary>
    public static PreparedPrompt Prepare(LlamaModel model, GenerationRequest request, int maxSchemaAlternatives = JsonSchemaGrammar.DefaultMaxAlternatives)
    {
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
                throw new InvalidGenerationParameterException(GenerationField.Messages, $"The model's chat template refused the conversation: {shield.Restore(e.Message)}");
            }
            catch (TemplateRenderException e)
            {
                throw new InvalidGenerationParameterException(GenerationField.Messages, $"The model's chat template could not render the conversation: {shield.Restore(e.Message)}");
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
            grammar = request.ResponseFormat.Kind switch
            {
                ResponseFormatKind.JsonObject => JsonSchemaGrammar.AnyObject(),
                ResponseFormatKind.JsonSchema => SchemaGrammar(request.ResponseFormat.Schema!, maxSchemaAlternatives),
                _ => null,
            };
        }

        FieldRef? source = grammar is null ? null
            : toolsActive && request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function ? GenerationField.Tools
            : request.ResponseFormat.Kind == ResponseFormatKind.JsonSchema ? GenerationField.ResponseFormatSchema : GenerationField.ResponseFormat;
        return new PreparedPrompt(tokens, grammar, toolsActive ? syntax : null) { GrammarSource = source };
    }

    private static string SchemaGrammar(string schema, int maxAlternatives)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema, maxAlternatives);
    }
}
