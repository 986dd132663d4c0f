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

    /// <summary>
    /// Control tokens' text is kept in the output: Mistral's call marker and some models' thinking markers
    /// (<c>[THINK]</c>) are control tokens.
    /// </summary>
    public bool RenderSpecialTokens { get; init; }

    /// <summary>How to split the model's thinking from its answer; null when it is not split (no such model, a grammar).</summary>
    public ReasoningSyntax? Reasoning { get; init; }

    /// <summary>The prompt ends inside thinking (its template opened it), so the output starts with thinking.</summary>
    public bool ReasoningOpen { get; init; }

    /// <summary>Strict tools in auto mode: the call grammar that starts once the model opens a call.</summary>
    public GrammarTrigger? Trigger { get; init; }
}

internal static class PromptBuilder
{
    /// <summary>Renders and tokenizes a request <see cref="GenerationRequestValidator"/> has checked, and builds its grammar.</summary>
    public static PreparedPrompt Prepare(LlamaModel model, GenerationRequest request, int maxSchemaAlternatives = JsonSchemaGrammar.DefaultMaxAlternatives)
    {
        var toolsActive = request.Messages is not null && request.Tools.Count > 0 && request.ToolChoice.Mode != ToolChoiceMode.None;
        var forcedCall = toolsActive && request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function;

        // A grammar constrains the reply from its first token, leaving no room to think: the template is asked for
        // its non-thinking prompt and the output is not split. Otherwise thinking is on where the template marks it,
        // as llama.cpp renders, and off when the request says none.
        var constrained = forcedCall || request.ResponseFormat.Kind != ResponseFormatKind.Text;
        var reasoning = request.Messages is null || constrained ? null : model.Template.Reasoning;
        bool? enableThinking = constrained || request.ReasoningEffort == ReasoningEffort.None ? false : reasoning is not null ? true : null;
        var effort = EffortName(request.ReasoningEffort);
        var opensThinking = false;
        int[] tokens;
        if (request.Messages is { } messages)
        {
            // The caller's text must not become control tokens; only the template's own text may.
            var shield = UserTextShield.Create(model.SpecialTokens, messages, request.Tools, request.ToolChoice);
            string text;
            try
            {
                text = model.Template.Render(shield.Messages, shield.Tools, shield.ToolChoice, request.ParallelToolCalls, enableThinking, effort);
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
            opensThinking = reasoning is not null && ReasoningFormat.OpensThinking(reasoning, text);
        }
        else
        {
            tokens = model.Tokenize(request.Prompt!, addSpecial: true, parseSpecial: false);
        }

        var syntax = model.Template.Syntax;
        string? grammar = null;
        if (forcedCall)
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

        // Strict tools in auto mode: the reply is free (thinking included) until the model opens a call.
        var trigger = toolsActive && !forcedCall && request.ResponseFormat.Kind == ResponseFormatKind.Text
            ? ToolCallFormat.Trigger(syntax, request.Tools, request.ParallelToolCalls, maxSchemaAlternatives)
            : null;
        FieldRef? source = grammar is null && trigger is null ? null
            : forcedCall || trigger is not null ? GenerationField.Tools
            : request.ResponseFormat.Kind == ResponseFormatKind.JsonSchema ? GenerationField.ResponseFormatSchema : GenerationField.ResponseFormat;
        var markersAreControl = reasoning is not null && (model.SpecialTokens.IsReserved(reasoning.Open) || model.SpecialTokens.IsReserved(reasoning.Close));
        var renderSpecial = (toolsActive && syntax == ToolCallSyntax.Mistral) || markersAreControl;
        return new PreparedPrompt(tokens, grammar, toolsActive ? syntax : null)
        {
            GrammarSource = source,
            RenderSpecialTokens = renderSpecial,
            Reasoning = reasoning,
            ReasoningOpen = opensThinking,
            Trigger = trigger is null ? null : trigger with { Reasoning = reasoning, ReasoningOpen = opensThinking, RenderSpecialTokens = renderSpecial },
        };
    }

    /// <summary>The level as OpenAI names it, which is what templates that read <c>reasoning_effort</c> compare with.</summary>
    private static string? EffortName(ReasoningEffort effort) => effort switch
    {
        ReasoningEffort.Minimal => "minimal",
        ReasoningEffort.Low => "low",
        ReasoningEffort.Medium => "medium",
        ReasoningEffort.High => "high",
        ReasoningEffort.XHigh => "xhigh",
        ReasoningEffort.Max => "max",
        _ => null,
    };

    private static string SchemaGrammar(string schema, int maxAlternatives)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema, maxAlternatives);
    }
}
