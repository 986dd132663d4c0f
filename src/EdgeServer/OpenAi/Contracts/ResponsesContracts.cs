using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeServer.OpenAi;

// The Responses API (/v1/responses): text and function calls in and out, stored responses; see ResponsesEndpoints.

public sealed class CreateResponseRequest
{
    public string? Model { get; set; }

    /// <summary>A string (one user message) or an array of message items.</summary>
    public JsonElement? Input { get; set; }

    public string? Instructions { get; set; }

    public int? MaxOutputTokens { get; set; }

    public float? Temperature { get; set; }

    public float? TopP { get; set; }

    public bool? Stream { get; set; }

    /// <summary>Extension (Ollama): how long the model stays loaded once idle after this request.</summary>
    public JsonElement? KeepAlive { get; set; }

    public ResponseTextParamDto? Text { get; set; }

    /// <summary>Keep the response for previous_response_id and GET (default true, as OpenAI's).</summary>
    public bool? Store { get; set; }

    /// <summary>A stored response whose conversation (not its instructions) this one continues.</summary>
    public string? PreviousResponseId { get; set; }

    /// <summary>Function tools, flat: {"type":"function","name","description","parameters","strict"}.</summary>
    public List<ResponseToolDto?>? Tools { get; set; }

    // Accepted with no effect: EdgeServer has no tiers.

    public JsonElement? Metadata { get; set; }

    public string? User { get; set; }

    public string? SafetyIdentifier { get; set; }

    public string? PromptCacheKey { get; set; }

    public string? PromptCacheRetention { get; set; }

    public string? ServiceTier { get; set; }

    public bool? ParallelToolCalls { get; set; }

    public string? Truncation { get; set; }

    public JsonElement? StreamOptions { get; set; }

    /// <summary>"none", "auto", "required" or {"type":"function","name":...}.</summary>
    public JsonElement? ToolChoice { get; set; }

    /// <summary>effort as chat's reasoning_effort; summary and the rest accepted (no summaries are written).</summary>
    public ResponseReasoningParamDto? Reasoning { get; set; }

    // Conversations, hosted tools' options and the like are not bound: they land in Unrecognized, and
    // RequestFields.Responses refuses them when set, saying why.

    public JsonElement? PromptCacheOptions { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

/// <summary>A tool of a Responses request: only type "function" is served.</summary>
public sealed class ResponseToolDto
{
    public string? Type { get; set; }

    public string? Name { get; set; }

    public string? Description { get; set; }

    public JsonElement? Parameters { get; set; }

    public bool? Strict { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class ResponseReasoningParamDto
{
    public string? Effort { get; set; }

    public JsonElement? Summary { get; set; }

    public JsonElement? GenerateSummary { get; set; }

    public JsonElement? Mode { get; set; }

    public JsonElement? Context { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class ResponseTextParamDto
{
    public ResponseFormatTextDto? Format { get; set; }

    public string? Verbosity { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

/// <summary>{"type":"text"}, {"type":"json_object"} or {"type":"json_schema","name":...,"schema":...,"strict":...}.</summary>
public sealed class ResponseFormatTextDto : JsonSchemaFormatDto
{
    public string? Type { get; set; }
}

public sealed record ResponseObject(
    string Id,
    string Object,
    long CreatedAt,
    string Status,
    long? CompletedAt,
    ResponseErrorDto? Error,
    IncompleteDetailsDto? IncompleteDetails,
    string? Instructions,
    int? MaxOutputTokens,
    string Model,
    IReadOnlyList<ResponseOutputItem> Output,
    bool ParallelToolCalls,
    string? PreviousResponseId,
    bool Store,
    float? Temperature,
    float? TopP,
    ResponseTextConfigDto Text,
    JsonElement ToolChoice,
    IReadOnlyList<ResponseFunctionToolOut> Tools,
    string Truncation,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ResponseUsageDto? Usage,
    JsonElement Metadata);

public sealed record ResponseErrorDto(string Code, string Message);

/// <summary>A function tool as the response echoes it (OpenAI's FunctionTool).</summary>
public sealed record ResponseFunctionToolOut(string Type, string Name, string? Description, JsonElement Parameters, bool Strict);

/// <summary>DELETE /v1/responses/{id}.</summary>
public sealed record DeletedResponseDto(string Id, string Object, bool Deleted);

public sealed record IncompleteDetailsDto(string Reason);

public sealed record ResponseTextConfigDto(ResponseTextFormatOut Format);

/// <summary>The text format as the request gave it; a json_schema format with its name, schema and strict.</summary>
public sealed record ResponseTextFormatOut(string Type)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Name { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Description { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? Schema { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? Strict { get; init; }
}

/// <summary>An item of a response's output: the model's thinking, its message, its function calls (each written as its own type).</summary>
[JsonDerivedType(typeof(ResponseOutputMessage))]
[JsonDerivedType(typeof(ResponseReasoningItem))]
[JsonDerivedType(typeof(ResponseFunctionCallItem))]
public abstract record ResponseOutputItem;

public sealed record ResponseOutputMessage(string Type, string Id, string Status, string Role, IReadOnlyList<OutputTextPart> Content) : ResponseOutputItem;

/// <summary>A thinking model's thinking as a reasoning item: its text in <see cref="Content"/>, no summary.</summary>
public sealed record ResponseReasoningItem(string Type, string Id, IReadOnlyList<JsonElement> Summary, IReadOnlyList<ReasoningTextPart> Content, string Status) : ResponseOutputItem;

/// <summary>A function call (OpenAI's FunctionToolCall): <see cref="Id"/> the item's, <see cref="CallId"/> the one a function_call_output answers.</summary>
public sealed record ResponseFunctionCallItem(string Type, string Id, string CallId, string Name, string Arguments, string Status) : ResponseOutputItem;

public sealed record ReasoningTextPart(string Type, string Text);

public sealed record OutputTextPart(string Type, string Text, IReadOnlyList<JsonElement> Annotations, IReadOnlyList<JsonElement> Logprobs);

public sealed record ResponseUsageDto(int InputTokens, InputTokensDetailsDto InputTokensDetails, int OutputTokens, OutputTokensDetailsDto OutputTokensDetails, int TotalTokens);

/// <summary>Every evaluated prompt token stays in the slot's KV cache for the next request, so it counts as written.</summary>
public sealed record InputTokensDetailsDto(int CachedTokens, int CacheWriteTokens);

public sealed record OutputTokensDetailsDto(int ReasoningTokens);

/// <summary>response.created, response.in_progress, response.completed, response.incomplete.</summary>
public sealed record ResponseLifecycleEvent(string Type, int SequenceNumber, ResponseObject Response);

/// <summary>response.output_item.added / done.</summary>
public sealed record ResponseOutputItemEvent(string Type, int SequenceNumber, int OutputIndex, ResponseOutputItem Item);

/// <summary>response.content_part.added / done.</summary>
public sealed record ResponseContentPartEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, int ContentIndex, OutputTextPart Part);

public sealed record ResponseTextDeltaEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, int ContentIndex, string Delta, IReadOnlyList<JsonElement> Logprobs);

public sealed record ResponseTextDoneEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, int ContentIndex, string Text, IReadOnlyList<JsonElement> Logprobs);

/// <summary>response.reasoning_text.delta.</summary>
public sealed record ResponseReasoningDeltaEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, int ContentIndex, string Delta);

/// <summary>response.reasoning_text.done.</summary>
public sealed record ResponseReasoningDoneEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, int ContentIndex, string Text);

/// <summary>response.function_call_arguments.delta.</summary>
public sealed record ResponseFunctionCallArgumentsDeltaEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, string Delta);

/// <summary>response.function_call_arguments.done.</summary>
public sealed record ResponseFunctionCallArgumentsDoneEvent(string Type, int SequenceNumber, string ItemId, int OutputIndex, string Name, string Arguments);

public sealed record ResponseErrorEvent(string Type, int SequenceNumber, string? Code, string Message, string? Param);
