using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeServer.Anthropic;

// Wire contracts of Anthropic's Messages API (POST /v1/messages and /v1/messages/count_tokens) that EdgeServer
// serves. Content is read from JSON elements by AnthropicMapper, since blocks of many types share one list; fields
// this server does not use (metadata, service_tier, cache_control, ...) are accepted and ignored.

public sealed class AnthropicMessagesRequest
{
    public string? Model { get; set; }

    public List<AnthropicMessage?>? Messages { get; set; }

    /// <summary>A string or a list of text blocks.</summary>
    public JsonElement? System { get; set; }

    /// <summary>Required by /v1/messages; count_tokens takes none.</summary>
    public int? MaxTokens { get; set; }

    public List<string>? StopSequences { get; set; }

    public bool? Stream { get; set; }

    public float? Temperature { get; set; }

    public float? TopP { get; set; }

    public int? TopK { get; set; }

    public List<AnthropicTool?>? Tools { get; set; }

    public JsonElement? ToolChoice { get; set; }

    /// <summary><c>{"type":"enabled","budget_tokens":n}</c> or <c>{"type":"disabled"}</c>.</summary>
    public JsonElement? Thinking { get; set; }

    public JsonElement? Metadata { get; set; }
}

public sealed class AnthropicMessage
{
    public string? Role { get; set; }

    /// <summary>A string or a list of content blocks.</summary>
    public JsonElement? Content { get; set; }
}

public sealed class AnthropicTool
{
    /// <summary>Absent or "custom" for a client tool; Anthropic's server tools have versioned types.</summary>
    public string? Type { get; set; }

    public string? Name { get; set; }

    public string? Description { get; set; }

    public JsonElement? InputSchema { get; set; }
}

/// <summary>
/// A block of a reply: text (<see cref="Text"/>), thinking (<see cref="Thinking"/> with an empty
/// <see cref="Signature"/>: nothing here can be verified) or a tool call (<see cref="Id"/>, <see cref="Name"/>, <see cref="Input"/>).
/// </summary>
public sealed record AnthropicContentBlock(string Type)
{
    public string? Text { get; init; }

    public string? Thinking { get; init; }

    public string? Signature { get; init; }

    public string? Id { get; init; }

    public string? Name { get; init; }

    public JsonElement? Input { get; init; }

    public static AnthropicContentBlock OfText(string text) => new("text") { Text = text };

    public static AnthropicContentBlock OfThinking(string thinking) => new("thinking") { Thinking = thinking, Signature = string.Empty };
}

public sealed record AnthropicUsage(int InputTokens, int OutputTokens);

public sealed record AnthropicMessageResponse(string Id, string Model, IReadOnlyList<AnthropicContentBlock> Content, AnthropicUsage Usage)
{
    [JsonPropertyOrder(-1)]
    public string Type { get; init; } = "message";

    [JsonPropertyOrder(-1)]
    public string Role { get; init; } = "assistant";

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? StopReason { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? StopSequence { get; init; }
}

public sealed record AnthropicCountTokensResponse(int InputTokens);

// Stream events: each names its type first, as Anthropic sends them.

public sealed record AnthropicMessageStart(AnthropicMessageResponse Message)
{
    [JsonPropertyOrder(-1)]
    public string Type => "message_start";
}

public sealed record AnthropicBlockStart(int Index, AnthropicContentBlock ContentBlock)
{
    [JsonPropertyOrder(-1)]
    public string Type => "content_block_start";
}

/// <summary>
/// A delta of a block: <c>text_delta</c> with <see cref="Text"/>, <c>input_json_delta</c> with <see cref="PartialJson"/>,
/// <c>thinking_delta</c> with <see cref="Thinking"/> or <c>signature_delta</c> with <see cref="Signature"/>.
/// </summary>
public sealed record AnthropicDelta(string Type)
{
    public string? Text { get; init; }

    public string? Thinking { get; init; }

    public string? Signature { get; init; }

    public string? PartialJson { get; init; }
}

public sealed record AnthropicBlockDelta(int Index, AnthropicDelta Delta)
{
    [JsonPropertyOrder(-1)]
    public string Type => "content_block_delta";
}

public sealed record AnthropicBlockStop(int Index)
{
    [JsonPropertyOrder(-1)]
    public string Type => "content_block_stop";
}

public sealed record AnthropicStop(string StopReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? StopSequence { get; init; }
}

public sealed record AnthropicMessageDelta(AnthropicStop Delta, AnthropicUsage Usage)
{
    [JsonPropertyOrder(-1)]
    public string Type => "message_delta";
}

/// <summary>message_stop and ping: events with nothing but their type.</summary>
public sealed record AnthropicEvent(string Type);

public sealed record AnthropicErrorBody(string Type, string Message);

/// <summary>Anthropic's error shape: <c>{"type":"error","error":{"type","message"}}</c>; also the stream's error event.</summary>
public sealed record AnthropicError(AnthropicErrorBody Error)
{
    [JsonPropertyOrder(-1)]
    public string Type => "error";
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.Strict,
    MaxDepth = 64)]
[JsonSerializable(typeof(AnthropicMessagesRequest))]
[JsonSerializable(typeof(AnthropicMessageResponse))]
[JsonSerializable(typeof(AnthropicCountTokensResponse))]
[JsonSerializable(typeof(AnthropicMessageStart))]
[JsonSerializable(typeof(AnthropicBlockStart))]
[JsonSerializable(typeof(AnthropicBlockDelta))]
[JsonSerializable(typeof(AnthropicBlockStop))]
[JsonSerializable(typeof(AnthropicMessageDelta))]
[JsonSerializable(typeof(AnthropicEvent))]
[JsonSerializable(typeof(AnthropicError))]
public sealed partial class AnthropicJsonContext : JsonSerializerContext
{
    /// <summary>Like the default context, but text is written as it is (JSON-escaped only where JSON requires).</summary>
    public static AnthropicJsonContext Web => s_web ??= new AnthropicJsonContext(new JsonSerializerOptions(Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    private static AnthropicJsonContext? s_web;
}
