using System.Text.Json;
using EdgeServer.Inference.Sampling;

namespace EdgeServer.Inference;

/// <summary>Request-size limits, sized by the host for its box (EdgeServer:Limits).</summary>
public sealed record GenerationLimits
{
    public static GenerationLimits Default { get; } = new();

    /// <summary>Highest max_tokens a request may ask for.</summary>
    public int MaxTokens { get; init; } = 4096;

    /// <summary>
    /// Tokens a request that names no max_tokens may generate, at most what its slot's context has left; 0: up to
    /// the end of the context. Small models that never write end-of-text would otherwise hold a slot for the whole
    /// context.
    /// </summary>
    public int DefaultMaxTokens { get; init; } = 1024;

    public int MaxMessages { get; init; } = 256;

    /// <summary>Characters in one message's content, in a prompt, or in one text to embed.</summary>
    public int MaxMessageChars { get; init; } = 65_536;

    public int MaxStopSequences { get; init; } = 4;

    public int MaxStopLength { get; init; } = 256;

    /// <summary>Highest number of choices (n) per request.</summary>
    public int MaxChoices { get; init; } = 4;

    /// <summary>
    /// Most options of a request's JSON schema that may match the same text at once, multiplied through nesting;
    /// beyond it the schema is refused, since llama.cpp's grammar work per token grows with it.
    /// </summary>
    public int MaxSchemaAlternatives { get; init; } = JsonSchemaGrammar.DefaultMaxAlternatives;
}

/// <summary>
/// The one validator of what a request asks the engine for. Every API maps its wire format to a
/// <see cref="GenerationRequest"/> (or embedding inputs) and this checks it, against the ranges of
/// <see cref="GenerationFields"/> and the host's <see cref="GenerationLimits"/>; an error names the field with
/// <see cref="FieldRef"/>, which each API spells its own way. Checks that need the model (token ids, the prompt's
/// length against the context) are in <see cref="ForModel"/> and <see cref="ForContext"/>.
/// </summary>
public static class GenerationRequestValidator
{
    private static readonly HashSet<string> Roles = new(StringComparer.Ordinal) { "system", "user", "assistant", "tool" };

    /// <summary>Throws <see cref="InvalidGenerationParameterException"/> for the first invalid field.</summary>
    public static void Validate(GenerationRequest request, GenerationLimits limits)
    {
        if (request.Messages is null == request.Prompt is null)
        {
            throw new InvalidGenerationParameterException(GenerationField.Messages,
                n => $"Give either '{n.Name(GenerationField.Messages)}' or '{n.Name(GenerationField.Prompt)}'.");
        }

        if (request.Messages is { } messages)
        {
            Messages(messages, limits);
        }
        else
        {
            Text(request.Prompt!, GenerationField.Prompt, limits);
        }

        Range(GenerationField.Choices, request.Choices, ValidationFailure.BelowMinimum);
        if (request.Choices > limits.MaxChoices)
        {
            throw Limit(GenerationField.Choices, GenerationLimit.MaxChoices, limits.MaxChoices, request.Choices);
        }

        if (request.MaxTokens is { } maxTokens)
        {
            Range(GenerationField.MaxTokens, maxTokens, ValidationFailure.BelowMinimum);
            if (maxTokens > limits.MaxTokens)
            {
                throw Limit(GenerationField.MaxTokens, GenerationLimit.MaxTokens, limits.MaxTokens, maxTokens);
            }
        }

        Stop(request.Stop, limits);
        Sampling(request.Sampling);
        foreach (var (_, bias) in request.LogitBias)
        {
            if (!GenerationFields.Range(GenerationField.LogitBias)!.Contains(bias))
            {
                throw new InvalidGenerationParameterException(GenerationField.LogitBias,
                    n => $"Invalid value in '{n.Name(GenerationField.LogitBias)}': {bias}. A bias must be a number {GenerationFields.Range(GenerationField.LogitBias)!.Describe()}.");
            }
        }

        Range(GenerationField.TopLogprobs, request.TopLogprobs);
        if (request.TopLogprobs > 0 && !request.Logprobs)
        {
            throw new InvalidGenerationParameterException(GenerationField.TopLogprobs,
                n => $"'{n.Name(GenerationField.TopLogprobs)}' needs '{n.Name(GenerationField.Logprobs)}' set to true.");
        }

        Tools(request, limits);
    }

    /// <summary>The checks that need the loaded model's vocabulary: the token ids the request names.</summary>
    public static void ForModel(GenerationRequest request, int vocabularySize) =>
        Tokens(request.LogitBias.Keys, GenerationField.LogitBias, vocabularySize);

    /// <summary>
    /// The tokenized prompt against a slot's context: returns the tokens the completion may have. The one place
    /// where a request without max_tokens gets the host's default (<see cref="GenerationLimits.DefaultMaxTokens"/>).
    /// </summary>
    public static int ForContext(GenerationRequest request, int promptTokens, int contextPerSlot, GenerationLimits limits)
    {
        var field = request.Messages is null ? GenerationField.Prompt : GenerationField.Messages;
        if (promptTokens == 0)
        {
            throw new InvalidGenerationParameterException(field, n => $"'{n.Name(field)}' is empty after tokenization.");
        }

        var room = contextPerSlot - promptTokens;
        if (request.MaxTokens is { } requested ? requested > room : room < 1)
        {
            throw new ContextLengthExceededException(promptTokens, request.MaxTokens ?? 1, contextPerSlot, field);
        }

        return request.MaxTokens ?? (limits.DefaultMaxTokens > 0 ? Math.Min(limits.DefaultMaxTokens, room) : room);
    }

    /// <summary>Texts or token lists to embed: not empty, not too many, each within the text limit.</summary>
    public static void ValidateEmbedding(IReadOnlyList<EmbeddingInput> inputs, GenerationLimits limits)
    {
        if (inputs.Count == 0)
        {
            throw new InvalidGenerationParameterException(GenerationField.EmbeddingInput, n => $"'{n.Name(GenerationField.EmbeddingInput)}' must not be empty.");
        }

        if (inputs.Count > GenerationFields.MaxEmbeddingInputs)
        {
            throw new InvalidGenerationParameterException(GenerationField.EmbeddingInput,
                n => $"'{n.Name(GenerationField.EmbeddingInput)}' has {inputs.Count} items; the limit is {GenerationFields.MaxEmbeddingInputs}.", ValidationFailure.TooMany);
        }

        for (var i = 0; i < inputs.Count; i++)
        {
            var at = new FieldRef(GenerationField.EmbeddingInput, i);
            if (inputs[i].Tokens is { } tokens)
            {
                if (tokens.Count == 0)
                {
                    throw new InvalidGenerationParameterException(at, n => $"'{n.Name(at)}' must not be empty.");
                }
            }
            else
            {
                Text(inputs[i].Text ?? string.Empty, at, limits);
            }
        }
    }

    /// <summary>The tokenized inputs of an embedding: each not empty and within the embedding context.</summary>
    public static void ForEmbedding(IReadOnlyList<int[]> inputs, int contextLength)
    {
        for (var i = 0; i < inputs.Count; i++)
        {
            var at = new FieldRef(GenerationField.EmbeddingInput, i);
            if (inputs[i].Length == 0)
            {
                throw new InvalidGenerationParameterException(at, n => $"'{n.Name(at)}' is empty after tokenization.");
            }

            if (inputs[i].Length > contextLength)
            {
                var length = inputs[i].Length;
                throw new InvalidGenerationParameterException(at, n => $"'{n.Name(at)}' has {length} tokens; this model embeds at most {contextLength} tokens at a time.");
            }
        }
    }

    /// <summary>Token ids a request gives (logit bias keys, tokens to embed or detokenize) must be in the vocabulary.</summary>
    public static void Tokens(IEnumerable<int> tokens, FieldRef field, int vocabularySize)
    {
        foreach (var first in tokens.Where(t => t < 0 || t >= vocabularySize).Take(1))
        {
            throw new InvalidGenerationParameterException(field, $"Token {first} is outside the model's vocabulary (0 to {vocabularySize - 1}).");
        }
    }

    private static void Messages(IReadOnlyList<ChatMessage> messages, GenerationLimits limits)
    {
        if (messages.Count == 0)
        {
            throw new InvalidGenerationParameterException(GenerationField.Messages, n => $"'{n.Name(GenerationField.Messages)}' must contain at least one message.");
        }

        if (messages.Count > limits.MaxMessages)
        {
            throw Limit(GenerationField.Messages, GenerationLimit.MaxMessages, limits.MaxMessages, messages.Count, "messages");
        }

        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (!Roles.Contains(m.Role))
            {
                var at = new FieldRef(GenerationField.MessageRole, i);
                throw new InvalidGenerationParameterException(at, n => $"Invalid value for '{n.Name(at)}': '{m.Role}'. Supported roles are: system, user, assistant and tool.");
            }

            if (m.ToolCalls is { Count: > 0 } calls)
            {
                if (m.Role != "assistant")
                {
                    var at = new FieldRef(GenerationField.MessageToolCalls, i);
                    throw new InvalidGenerationParameterException(at, n => $"'{n.Name(at)}' is only allowed on assistant messages.");
                }

                for (var j = 0; j < calls.Count; j++)
                {
                    if (string.IsNullOrEmpty(calls[j].Id))
                    {
                        throw Missing(new FieldRef(GenerationField.ToolCallId, i, j));
                    }

                    FunctionName(calls[j].Name, new FieldRef(GenerationField.ToolCallName, i, j));
                }
            }

            if (m.Role == "tool" && string.IsNullOrEmpty(m.ToolCallId))
            {
                throw Missing(new FieldRef(GenerationField.MessageToolCallId, i));
            }

            if (m.Name is { Length: > GenerationFields.MaxNameLength } name)
            {
                var at = new FieldRef(GenerationField.MessageName, i);
                throw new InvalidGenerationParameterException(at,
                    n => $"Invalid '{n.Name(at)}': string too long. Expected a string with maximum length {GenerationFields.MaxNameLength}, but got a string with length {name.Length} instead.",
                    ValidationFailure.TooLong);
            }

            if (m.Content is null && m.ToolCalls is not { Count: > 0 })
            {
                throw Missing(new FieldRef(GenerationField.MessageContent, i));
            }

            Text(m.Content ?? string.Empty, new FieldRef(GenerationField.MessageContent, i), limits, allowEmpty: true);
        }
    }

    /// <summary>A prompt, a message's content or a text to embed: within MaxMessageChars; only a message's content may be empty.</summary>
    private static void Text(string text, FieldRef field, GenerationLimits limits, bool allowEmpty = false)
    {
        if (text.Length == 0 && !allowEmpty)
        {
            throw new InvalidGenerationParameterException(field, n => $"'{n.Name(field)}' must not be empty.");
        }

        if (text.Length > limits.MaxMessageChars)
        {
            throw new RequestLimitException(field, GenerationLimit.MaxMessageChars, limits.MaxMessageChars, n => $"'{n.Name(field)}' has {text.Length} characters");
        }
    }

    private static void Stop(IReadOnlyList<string> stop, GenerationLimits limits)
    {
        if (stop.Count > limits.MaxStopSequences)
        {
            throw Limit(GenerationField.Stop, GenerationLimit.MaxStopSequences, limits.MaxStopSequences, stop.Count, "sequences");
        }

        if (stop.FirstOrDefault(s => s.Length > limits.MaxStopLength) is { } tooLong)
        {
            throw new RequestLimitException(GenerationField.Stop, GenerationLimit.MaxStopLength, limits.MaxStopLength, _ => $"a stop sequence has {tooLong.Length} characters");
        }
    }

    private static void Sampling(SamplingParameters p)
    {
        Range(GenerationField.Temperature, p.Temperature);
        Range(GenerationField.TopP, p.TopP);
        Range(GenerationField.TopK, p.TopK);
        Range(GenerationField.MinP, p.MinP);
        Range(GenerationField.PresencePenalty, p.PresencePenalty);
        Range(GenerationField.FrequencyPenalty, p.FrequencyPenalty);
        Range(GenerationField.RepeatPenalty, p.RepeatPenalty);
        Range(GenerationField.RepeatLastN, p.RepeatLastN);
    }

    private static void Tools(GenerationRequest request, GenerationLimits limits)
    {
        var tools = request.Tools;
        if (tools.Count == 0)
        {
            if (request.ToolChoice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function)
            {
                throw new InvalidGenerationParameterException(GenerationField.ToolChoice,
                    n => $"'{n.Name(GenerationField.ToolChoice)}' asks for a tool call, but no '{n.Name(GenerationField.Tools)}' were given.");
            }

            return;
        }

        if (request.Messages is null)
        {
            throw new InvalidGenerationParameterException(GenerationField.Tools, "Tools are only available with chat messages.");
        }

        if (tools.Count > GenerationFields.MaxTools)
        {
            throw new InvalidGenerationParameterException(GenerationField.Tools,
                n => $"'{n.Name(GenerationField.Tools)}' has {tools.Count} tools; the limit is {GenerationFields.MaxTools}.", ValidationFailure.TooMany);
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < tools.Count; i++)
        {
            FunctionName(tools[i].Name, new FieldRef(GenerationField.ToolName, i));
            if (!names.Add(tools[i].Name))
            {
                var name = tools[i].Name;
                throw new InvalidGenerationParameterException(GenerationField.Tools, $"The tool name '{name}' is given twice.");
            }
        }

        var choice = request.ToolChoice;
        if (choice.Mode == ToolChoiceMode.Function && !names.Contains(choice.Function!))
        {
            throw new InvalidGenerationParameterException(GenerationField.ToolChoice,
                n => $"'{n.Name(GenerationField.ToolChoice)}' names the function '{choice.Function}', which is not among '{n.Name(GenerationField.Tools)}'.");
        }

        var forced = choice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function;
        if (forced && request.ResponseFormat.Kind != ResponseFormatKind.Text)
        {
            throw new InvalidGenerationParameterException(GenerationField.ResponseFormat,
                n => $"A forced tool call ('{n.Name(GenerationField.ToolChoice)}' required or a function) cannot be combined with a JSON '{n.Name(GenerationField.ResponseFormat)}': both constrain the same output.");
        }

        if (forced || choice.Mode == ToolChoiceMode.None)
        {
            return;
        }

        // In auto mode a strict tool's calls are enforced by a grammar that starts where the model opens a call; a
        // JSON response format would constrain the same reply from its first token. A schema that could never be
        // enforced is refused either way.
        for (var i = 0; i < tools.Count; i++)
        {
            if (tools[i].Strict && request.ResponseFormat.Kind != ResponseFormatKind.Text)
            {
                throw new InvalidGenerationParameterException(GenerationField.ResponseFormat,
                    n => $"A strict tool with '{n.Name(GenerationField.ToolChoice)}' 'auto' cannot be combined with a JSON '{n.Name(GenerationField.ResponseFormat)}': both constrain the same output. Set strict to false, or leave out the response format.");
            }

            using var doc = JsonDocument.Parse(tools[i].Parameters);
            JsonSchemaGrammar.FromSchema(doc.RootElement, new FieldRef(GenerationField.ToolParameters, i), limits.MaxSchemaAlternatives);
        }
    }

    /// <summary>OpenAI's rule for function names, ^[a-zA-Z0-9_-]{1,64}$, for tools and for the calls that name them.</summary>
    private static void FunctionName(string name, FieldRef field)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw Missing(field);
        }

        if (name.Length > GenerationFields.MaxNameLength || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            var shown = name.Length > GenerationFields.MaxNameLength ? name[..GenerationFields.MaxNameLength] + "..." : name;
            throw new InvalidGenerationParameterException(field,
                n => $"Invalid '{n.Name(field)}': '{shown}'. Names are 1 to {GenerationFields.MaxNameLength} characters of a-z, A-Z, 0-9, underscores and dashes.");
        }
    }

    private static void Range(GenerationField field, int value, ValidationFailure failure = ValidationFailure.InvalidValue) =>
        Range(field, value, value.ToString(System.Globalization.CultureInfo.InvariantCulture), failure);

    private static void Range(GenerationField field, float value) =>
        Range(field, value, value.ToString(System.Globalization.CultureInfo.InvariantCulture), ValidationFailure.InvalidValue);

    private static void Range(GenerationField field, double value, string shown, ValidationFailure failure)
    {
        var range = GenerationFields.Range(field)!;
        if (!range.Contains(value))
        {
            throw new InvalidGenerationParameterException(field, n => $"Invalid '{n.Name(field)}': {shown}. It must be {range.Describe()}.", failure);
        }
    }

    private static InvalidGenerationParameterException Missing(FieldRef field) =>
        new(field, n => $"Missing required parameter: '{n.Name(field)}'.", ValidationFailure.Missing);

    private static RequestLimitException Limit(GenerationField field, GenerationLimit limit, int max, int value, string? unit = null) =>
        new(field, limit, max, n => unit is null ? $"'{n.Name(field)}' is {value}" : $"'{n.Name(field)}' has {value} {unit}");
}
