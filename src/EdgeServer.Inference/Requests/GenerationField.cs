namespace EdgeServer.Inference;

/// <summary>
/// The fields of a <see cref="GenerationRequest"/> (and of an embedding request) that an error can be about. Each
/// API names them its own way (<see cref="IFieldNames"/>); the engine's own names are <see cref="FieldNames.Canonical"/>.
/// </summary>
public enum GenerationField
{
    Model,
    Messages,
    MessageRole,
    MessageContent,
    MessageName,
    MessageToolCalls,
    MessageToolCallId,
    ToolCallId,
    ToolCallName,
    Prompt,
    MaxTokens,
    Stop,
    Temperature,
    TopP,
    TopK,
    MinP,
    RepeatPenalty,
    RepeatLastN,
    PresencePenalty,
    FrequencyPenalty,
    Seed,
    LogitBias,
    Tools,
    ToolName,
    ToolParameters,
    ToolStrict,
    ToolChoice,
    ParallelToolCalls,
    ResponseFormat,
    ResponseFormatSchema,
    Logprobs,
    TopLogprobs,
    IgnoreEos,
    Choices,
    EmbeddingInput,
    Tokens,
}

/// <summary>
/// A field an error is about, with the position of the item in a list: <see cref="Index"/> is the message, tool or
/// input; <see cref="Item"/> a tool call within a message. -1: not in a list.
/// </summary>
public readonly record struct FieldRef(GenerationField Field, int Index = -1, int Item = -1)
{
    public static implicit operator FieldRef(GenerationField field) => new(field);
}

/// <summary>Request-size limits the host configures; an error over one names it with <see cref="IFieldNames.Setting"/>.</summary>
public enum GenerationLimit
{
    MaxTokens,
    MaxMessages,
    MaxMessageChars,
    MaxStopSequences,
    MaxStopLength,
    MaxChoices,
}

/// <summary>What is wrong with a field; each API turns it into its own error code.</summary>
public enum ValidationFailure
{
    InvalidValue,

    /// <summary>Required and not given (or empty).</summary>
    Missing,

    /// <summary>An integer below its minimum.</summary>
    BelowMinimum,

    /// <summary>Over a configured limit (<see cref="GenerationLimit"/>).</summary>
    LimitExceeded,

    /// <summary>A string longer than its fixed maximum.</summary>
    TooLong,

    /// <summary>A list longer than its fixed maximum.</summary>
    TooMany,
}

/// <summary>How one API spells the engine's fields and settings in its errors.</summary>
public interface IFieldNames
{
    string Name(FieldRef field);

    string Setting(GenerationLimit limit);
}

/// <summary>The engine's own names: snake_case, as llama.cpp's server and OpenAI's chat API spell the fields.</summary>
public sealed class FieldNames : IFieldNames
{
    public static FieldNames Canonical { get; } = new();

    public string Name(FieldRef field) => field.Field switch
    {
        GenerationField.MessageRole => $"messages[{field.Index}].role",
        GenerationField.MessageContent => $"messages[{field.Index}].content",
        GenerationField.MessageName => $"messages[{field.Index}].name",
        GenerationField.MessageToolCalls => $"messages[{field.Index}].tool_calls",
        GenerationField.MessageToolCallId => $"messages[{field.Index}].tool_call_id",
        GenerationField.ToolCallId => $"messages[{field.Index}].tool_calls[{field.Item}].id",
        GenerationField.ToolCallName => $"messages[{field.Index}].tool_calls[{field.Item}].function.name",
        GenerationField.ToolName => $"tools[{field.Index}].function.name",
        GenerationField.ToolParameters => $"tools[{field.Index}].function.parameters",
        GenerationField.ToolStrict => $"tools[{field.Index}].function.strict",
        GenerationField.ResponseFormatSchema => "response_format.json_schema.schema",
        GenerationField.Choices => "n",
        GenerationField.EmbeddingInput => field.Index < 0 ? "input" : $"input[{field.Index}]",
        _ => Snake(field.Field),
    };

    public string Setting(GenerationLimit limit) => limit.ToString();

    /// <summary>MaxTokens → max_tokens.</summary>
    public static string Snake(GenerationField field) => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(field.ToString());
}
