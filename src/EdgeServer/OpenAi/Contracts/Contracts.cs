using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeServer.OpenAi;

// Wire contracts of the OpenAI API (../shared/openai-openapi/openapi.json) that EdgeServer serves.
// Fields OpenAI marks required are always written, null where they have no value.

/// <summary>Fields shared by chat and legacy completions: model, length, sampling, stop, streaming.</summary>
public abstract class GenerationRequestDto
{
    public string? Model { get; set; }

    public int? MaxTokens { get; set; }

    public float? Temperature { get; set; }

    public float? TopP { get; set; }

    /// <summary>Extension (llama-server): top-k sampling; 0 = off.</summary>
    public int? TopK { get; set; }

    /// <summary>Extension (llama-server): min-p sampling.</summary>
    public float? MinP { get; set; }

    /// <summary>Extension (llama-server): repetition penalty; 1 = off.</summary>
    public float? RepeatPenalty { get; set; }

    public float? PresencePenalty { get; set; }

    public float? FrequencyPenalty { get; set; }

    /// <summary>Same seed, same parameters, same prompt: same output. -1 or absent: random.</summary>
    public long? Seed { get; set; }

    /// <summary>A string or an array of up to 4 strings.</summary>
    public JsonElement? Stop { get; set; }

    public bool? Stream { get; set; }

    public StreamOptionsDto? StreamOptions { get; set; }

    public int? N { get; set; }

    /// <summary>Token id (as a string) to a bias from -100 to 100.</summary>
    public JsonElement? LogitBias { get; set; }

    /// <summary>Extension (llama-server): keep generating past end-of-generation tokens.</summary>
    public bool? IgnoreEos { get; set; }

    /// <summary>Extension (Ollama): how long the model stays loaded once idle after this request ("5m", 300, 0, -1).</summary>
    public JsonElement? KeepAlive { get; set; }

    /// <summary>Accepted and ignored: EdgeServer keeps no per-user state.</summary>
    public string? User { get; set; }

    /// <summary>Fields not bound here: refused ones (see <see cref="RequestFields"/>) and unknown ones, each a 400 naming it.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class ChatCompletionRequest : GenerationRequestDto
{
    public List<ChatMessageDto?>? Messages { get; set; }

    /// <summary>Newer name of max_tokens; wins when both are given.</summary>
    public int? MaxCompletionTokens { get; set; }

    public List<ToolDto?>? Tools { get; set; }

    /// <summary>"none", "auto", "required", or {"type":"function","function":{"name":...}}.</summary>
    public JsonElement? ToolChoice { get; set; }

    public bool? ParallelToolCalls { get; set; }

    public ResponseFormatDto? ResponseFormat { get; set; }

    public bool? Logprobs { get; set; }

    public int? TopLogprobs { get; set; }

    public bool? Store { get; set; }

    public JsonElement? Metadata { get; set; }

    public string? ServiceTier { get; set; }

    public string? PromptCacheKey { get; set; }

    public string? PromptCacheRetention { get; set; }

    public JsonElement? PromptCacheOptions { get; set; }

    public string? SafetyIdentifier { get; set; }

    public List<string>? Modalities { get; set; }

    /// <summary>none, minimal, low, medium, high, xhigh or max.</summary>
    public string? ReasoningEffort { get; set; }

    // OpenAI's fields EdgeServer cannot honour (audio, prediction, functions, ...) are not bound: they land in
    // Unrecognized, and RequestFields.Chat refuses them when set, saying why.
}

public sealed class ChatMessageDto
{
    public string? Role { get; set; }

    /// <summary>A string, or an array of content parts ({"type":"text","text":...}).</summary>
    public JsonElement? Content { get; set; }

    public string? Name { get; set; }

    public List<ToolCallDto?>? ToolCalls { get; set; }

    public string? ToolCallId { get; set; }

    /// <summary>An assistant turn's refusal text; kept out of the prompt.</summary>
    public string? Refusal { get; set; }

    /// <summary>Extension (llama-server, DeepSeek): an assistant turn's thinking, as EdgeServer returns it.</summary>
    public string? ReasoningContent { get; set; }

    /// <summary>Extension (OpenRouter, vLLM): the same under the other name clients use.</summary>
    public string? Reasoning { get; set; }

    public JsonElement? Audio { get; set; }

    public JsonElement? FunctionCall { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class ToolCallDto
{
    public string? Id { get; set; }

    public string? Type { get; set; }

    public FunctionCallDto? Function { get; set; }
}

public sealed class FunctionCallDto
{
    public string? Name { get; set; }

    /// <summary>The arguments as JSON text.</summary>
    public string? Arguments { get; set; }
}

public sealed class ToolDto
{
    public string? Type { get; set; }

    public FunctionDefinitionDto? Function { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class FunctionDefinitionDto
{
    public string? Name { get; set; }

    public string? Description { get; set; }

    public JsonElement? Parameters { get; set; }

    public bool? Strict { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class ResponseFormatDto
{
    public string? Type { get; set; }

    public JsonSchemaFormatDto? JsonSchema { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

/// <summary>A named JSON Schema for structured output; the Responses API puts the same fields in text.format.</summary>
public class JsonSchemaFormatDto
{
    public string? Name { get; set; }

    public string? Description { get; set; }

    public JsonElement? Schema { get; set; }

    public bool? Strict { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class StreamOptionsDto
{
    public bool? IncludeUsage { get; set; }

    /// <summary>Accepted; EdgeServer does not pad chunks.</summary>
    public bool? IncludeObfuscation { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class CompletionRequest : GenerationRequestDto
{
    /// <summary>A string or an array holding one string.</summary>
    public JsonElement? Prompt { get; set; }

    /// <summary>0 to 5: log probabilities of each token and this many alternatives.</summary>
    public int? Logprobs { get; set; }

    public int? BestOf { get; set; }
}

public sealed class EmbeddingRequest
{
    public string? Model { get; set; }

    /// <summary>A string, an array of strings, an array of token ids, or an array of such arrays.</summary>
    public JsonElement? Input { get; set; }

    /// <summary>"float" (default) or "base64" (little-endian float32).</summary>
    public string? EncodingFormat { get; set; }

    /// <summary>Only the model's own size is accepted; EdgeServer does not truncate vectors.</summary>
    public int? Dimensions { get; set; }

    /// <summary>Accepted and ignored.</summary>
    public string? User { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed record EmbeddingList(string Object, IReadOnlyList<EmbeddingDto> Data, string Model, EmbeddingUsage Usage);

/// <summary><see cref="Embedding"/> is a float array, or a base64 string when asked for.</summary>
public sealed record EmbeddingDto(string Object, int Index, JsonElement Embedding);

public sealed record EmbeddingUsage(int PromptTokens, int TotalTokens);

/// <summary>llama-server's /tokenize.</summary>
public sealed class TokenizeRequest
{
    /// <summary>Optional when the server has a single model.</summary>
    public string? Model { get; set; }

    public string? Content { get; set; }

    /// <summary>Add BOS and the like, as a prompt would get. Default false.</summary>
    public bool? AddSpecial { get; set; }

    /// <summary>Read special-token text such as &lt;|im_end|&gt; as the token. Default true.</summary>
    public bool? ParseSpecial { get; set; }

    /// <summary>Return {id, piece} objects instead of bare ids.</summary>
    public bool? WithPieces { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed class DetokenizeRequest
{
    public string? Model { get; set; }

    public List<int>? Tokens { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Unrecognized { get; set; }
}

public sealed record TokenizeResponse(IReadOnlyList<int> Tokens);

public sealed record TokenPieceDto(int Id, string Piece);

public sealed record TokenizeWithPiecesResponse(IReadOnlyList<TokenPieceDto> Tokens);

public sealed record DetokenizeResponse(string Content);

public sealed record ChatCompletionResponse(
    string Id,
    string Object,
    long Created,
    string Model,
    string SystemFingerprint,
    IReadOnlyList<ChatChoice> Choices,
    Usage Usage);

public sealed record ChatChoice(int Index, ResponseMessage Message, ChoiceLogprobs? Logprobs, string FinishReason);

public sealed record ResponseMessage(
    string Role,
    string? Content,
    string? Refusal,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ToolCallOut>? ToolCalls = null)
{
    /// <summary>Extension: the model's thinking (llama-server's and DeepSeek's name).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ReasoningContent { get; init; }

    /// <summary>Extension: the same thinking under the name OpenRouter and vLLM use; clients read one or the other.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reasoning { get; init; }
}

public sealed record ToolCallOut(string Id, string Type, FunctionOut Function);

public sealed record FunctionOut(string Name, string Arguments);

public sealed record ChoiceLogprobs(IReadOnlyList<TokenLogprobDto>? Content, IReadOnlyList<TokenLogprobDto>? Refusal);

public sealed record TokenLogprobDto(string Token, float Logprob, IReadOnlyList<int>? Bytes, IReadOnlyList<TopLogprobDto> TopLogprobs);

public sealed record TopLogprobDto(string Token, float Logprob, IReadOnlyList<int>? Bytes);

/// <summary>Legacy completions' logprobs object.</summary>
public sealed record CompletionLogprobs(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<float> TokenLogprobs,
    IReadOnlyList<Dictionary<string, float>> TopLogprobs,
    IReadOnlyList<int> TextOffset);

public sealed record ChatCompletionChunk(
    string Id,
    string Object,
    long Created,
    string Model,
    string SystemFingerprint,
    IReadOnlyList<ChunkChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Usage? Usage);

public sealed record ChunkChoice(int Index, ChunkDelta Delta, ChoiceLogprobs? Logprobs, string? FinishReason);

public sealed record ChunkDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ToolCallDelta>? ToolCalls = null)
{
    /// <summary>Extension: a piece of the model's thinking, under both names clients read (see <see cref="ResponseMessage"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ReasoningContent { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reasoning { get; init; }
}

public sealed record ToolCallDelta(
    int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Type,
    FunctionDelta Function);

public sealed record FunctionDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name,
    string Arguments);

public sealed record CompletionResponse(
    string Id,
    string Object,
    long Created,
    string Model,
    string SystemFingerprint,
    IReadOnlyList<CompletionChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] Usage? Usage);

public sealed record CompletionChoice(string Text, int Index, CompletionLogprobs? Logprobs, string? FinishReason);

/// <summary>OpenAI's usage; <see cref="EnergyJoules"/> is EdgeServer's extension (OpenAI clients ignore it), present only when measured.</summary>
public sealed record Usage(
    int PromptTokens,
    int CompletionTokens,
    int TotalTokens,
    PromptTokensDetails PromptTokensDetails,
    CompletionTokensDetails CompletionTokensDetails,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? EnergyJoules = null);

public sealed record PromptTokensDetails(int CachedTokens);

/// <summary>Of the completion tokens, those the model spent thinking.</summary>
public sealed record CompletionTokensDetails(int ReasoningTokens);

/// <summary>OpenAI's model list; <see cref="Memory"/> is EdgeServer's addition (the budget and its use).</summary>
public sealed record ModelList(string Object, IReadOnlyList<ModelDto> Data, MemoryDto Memory);

/// <summary>The memory budget of the loaded models (null: no limit) and the bytes they take.</summary>
public sealed record MemoryDto(long? BudgetBytes, long UsedBytes);

public sealed record ModelDto(string Id, string Object, long Created, string OwnedBy, ModelDetails Details);

/// <summary>
/// EdgeServer's own description of a model (an extension of OpenAI's Model object): <see cref="Status"/> is its state
/// (available, loading, loaded, unavailable with <see cref="Error"/>), <see cref="MemoryBytes"/> what it takes against
/// the budget (estimated until loaded), <see cref="ExpiresAt"/> when an idle loaded model unloads (Unix seconds),
/// <see cref="Aliases"/> the other names requests may use for it.
/// </summary>
public sealed record ModelDetails(
    string Status,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error,
    string? Architecture,
    string? Quantization,
    ulong Parameters,
    long FileSize,
    int ContextLength,
    string ChatTemplate,
    long MemoryBytes,
    string? MemoryEstimate,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? ExpiresAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<string>? Aliases)
{
    /// <summary>Requests the model holds now, queued or running (what a gateway balances on).</summary>
    public int Requests { get; init; }

    /// <summary>On a gateway, the box that serves the model ("local": the gateway itself).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Boxes { get; init; }
}

public sealed record ErrorResponse(ErrorBody Error);

public sealed record ErrorBody(string Message, string Type, string? Param, string? Code);

/// <summary>/health: "ok", or "unhealthy" with what is wrong (a decode loop that stopped).</summary>
public sealed record HealthResponse(string Status)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Problems { get; init; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    NumberHandling = JsonNumberHandling.Strict,
    AllowTrailingCommas = false,
    ReadCommentHandling = JsonCommentHandling.Disallow,
    MaxDepth = 64)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelDto))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(EmbeddingRequest))]
[JsonSerializable(typeof(EmbeddingList))]
[JsonSerializable(typeof(TokenizeRequest))]
[JsonSerializable(typeof(DetokenizeRequest))]
[JsonSerializable(typeof(TokenizeResponse))]
[JsonSerializable(typeof(TokenizeWithPiecesResponse))]
[JsonSerializable(typeof(DetokenizeResponse))]
[JsonSerializable(typeof(CreateResponseRequest))]
[JsonSerializable(typeof(ResponseObject))]
[JsonSerializable(typeof(ResponseLifecycleEvent))]
[JsonSerializable(typeof(ResponseOutputItemEvent))]
[JsonSerializable(typeof(ResponseContentPartEvent))]
[JsonSerializable(typeof(ResponseTextDeltaEvent))]
[JsonSerializable(typeof(ResponseTextDoneEvent))]
[JsonSerializable(typeof(ResponseReasoningDeltaEvent))]
[JsonSerializable(typeof(ResponseReasoningDoneEvent))]
[JsonSerializable(typeof(ResponseErrorEvent))]
[JsonSerializable(typeof(ResponseFunctionCallArgumentsDeltaEvent))]
[JsonSerializable(typeof(ResponseFunctionCallArgumentsDoneEvent))]
[JsonSerializable(typeof(DeletedResponseDto))]
[JsonSerializable(typeof(float[]))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(HealthResponse))]
public sealed partial class OpenAiJsonContext : JsonSerializerContext
{
    /// <summary>
    /// The context the server uses: like <see cref="JsonSerializerContext"/>'s default, but it writes quotes,
    /// apostrophes and non-ASCII text as they are (JSON-escaped only where JSON requires), as OpenAI does.
    /// </summary>
    public static OpenAiJsonContext Web => s_web ??= CreateWeb();

    // Not a static initializer: it would run before the generated Default context exists.
    private static OpenAiJsonContext? s_web;

    private static OpenAiJsonContext CreateWeb()
    {
        var options = new JsonSerializerOptions(Default.Options)
        {
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        return new OpenAiJsonContext(options);
    }
}
