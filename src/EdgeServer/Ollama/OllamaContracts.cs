using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeServer.Ollama;

// Wire contracts of Ollama's native API (its docs/api.md and api/types.go) that EdgeServer serves. As Ollama does,
// unknown request fields are ignored and empty response fields are left out.

/// <summary>Fields /api/chat and /api/generate share.</summary>
public abstract class OllamaGenerationRequest
{
    public string? Model { get; set; }

    /// <summary>Absent means true: Ollama streams unless told not to.</summary>
    public bool? Stream { get; set; }

    /// <summary>"json" or a JSON schema object.</summary>
    public JsonElement? Format { get; set; }

    public JsonElement? KeepAlive { get; set; }

    /// <summary>Modelfile parameters by name (temperature, num_predict, ...); read by <see cref="OllamaOptions"/>.</summary>
    public JsonElement? Options { get; set; }

    /// <summary>A boolean or a level ("low", "medium", "high").</summary>
    public JsonElement? Think { get; set; }
}

public sealed class OllamaChatRequest : OllamaGenerationRequest
{
    public List<OllamaMessage?>? Messages { get; set; }

    public List<OpenAi.ToolDto?>? Tools { get; set; }

    /// <summary>Extension (OpenAI's tool_choice): "auto", "none", "required" or a named function.</summary>
    public JsonElement? ToolChoice { get; set; }
}

public sealed class OllamaGenerateRequest : OllamaGenerationRequest
{
    public string? Prompt { get; set; }

    public string? Suffix { get; set; }

    public string? System { get; set; }

    public string? Template { get; set; }

    public List<int>? Context { get; set; }

    public bool? Raw { get; set; }

    public JsonElement? Images { get; set; }
}

public sealed class OllamaMessage
{
    public string? Role { get; set; }

    public string? Content { get; set; }

    public string? Thinking { get; set; }

    public JsonElement? Images { get; set; }

    public List<OllamaToolCall?>? ToolCalls { get; set; }

    public string? ToolName { get; set; }

    public string? ToolCallId { get; set; }
}

public sealed class OllamaToolCall
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Id { get; set; }

    public OllamaToolCallFunction? Function { get; set; }
}

public sealed class OllamaToolCallFunction
{
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public int Index { get; set; }

    public string? Name { get; set; }

    /// <summary>An object, not a string as in OpenAI's API.</summary>
    public JsonElement? Arguments { get; set; }
}

public sealed class OllamaEmbedRequest
{
    public string? Model { get; set; }

    /// <summary>A string or an array of strings.</summary>
    public JsonElement? Input { get; set; }

    /// <summary>The old /api/embeddings: one text.</summary>
    public string? Prompt { get; set; }

    public bool? Truncate { get; set; }

    public int? Dimensions { get; set; }

    public JsonElement? Options { get; set; }

    public JsonElement? KeepAlive { get; set; }
}

public sealed class OllamaShowRequest
{
    public string? Model { get; set; }

    /// <summary>The older name of <see cref="Model"/>.</summary>
    public string? Name { get; set; }

    public bool? Verbose { get; set; }
}

/// <summary>One object of a chat stream, or the whole reply.</summary>
public sealed record OllamaChatResponse(string Model, string CreatedAt, OllamaMessage Message, bool Done) : OllamaStatistics;

/// <summary>One object of a generate stream, or the whole reply.</summary>
public sealed record OllamaGenerateResponse(string Model, string CreatedAt, string Response, bool Done) : OllamaStatistics
{
    /// <summary>The model's thinking, split from <see cref="Response"/>.</summary>
    public string? Thinking { get; init; }
}

/// <summary>What the final object of a generation carries; durations in nanoseconds.</summary>
public abstract record OllamaStatistics
{
    public string? DoneReason { get; init; }

    public long? TotalDuration { get; init; }

    public long? LoadDuration { get; init; }

    public int? PromptEvalCount { get; init; }

    public long? PromptEvalDuration { get; init; }

    public int? EvalCount { get; init; }

    public long? EvalDuration { get; init; }
}

public sealed record OllamaModelDetails(string ParentModel, string Format, string Family, IReadOnlyList<string> Families, string ParameterSize, string QuantizationLevel);

public sealed record OllamaModelEntry(string Name, string Model, string ModifiedAt, long Size, string Digest, OllamaModelDetails Details);

public sealed record OllamaTagsResponse(IReadOnlyList<OllamaModelEntry> Models);

public sealed record OllamaRunningModel(string Name, string Model, long Size, string Digest, OllamaModelDetails Details, string ExpiresAt, long SizeVram);

public sealed record OllamaPsResponse(IReadOnlyList<OllamaRunningModel> Models);

public sealed record OllamaShowResponse(string Modelfile, string Parameters, string Template, OllamaModelDetails Details, JsonElement ModelInfo,
    IReadOnlyList<string> Capabilities, string ModifiedAt);

public sealed record OllamaVersionResponse(string Version);

public sealed record OllamaEmbedResponse(string Model, IReadOnlyList<float[]> Embeddings, long TotalDuration, long LoadDuration, int PromptEvalCount);

public sealed record OllamaEmbeddingResponse(float[] Embedding);

/// <summary>Ollama's error shape: <c>{"error": "..."}</c>.</summary>
public sealed record OllamaError(string Error);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.Strict,
    MaxDepth = 64)]
[JsonSerializable(typeof(OllamaChatRequest))]
[JsonSerializable(typeof(OllamaGenerateRequest))]
[JsonSerializable(typeof(OllamaEmbedRequest))]
[JsonSerializable(typeof(OllamaShowRequest))]
[JsonSerializable(typeof(OllamaChatResponse))]
[JsonSerializable(typeof(OllamaGenerateResponse))]
[JsonSerializable(typeof(OllamaTagsResponse))]
[JsonSerializable(typeof(OllamaPsResponse))]
[JsonSerializable(typeof(OllamaShowResponse))]
[JsonSerializable(typeof(OllamaVersionResponse))]
[JsonSerializable(typeof(OllamaEmbedResponse))]
[JsonSerializable(typeof(OllamaEmbeddingResponse))]
[JsonSerializable(typeof(OllamaError))]
public sealed partial class OllamaJsonContext : JsonSerializerContext
{
    /// <summary>Like the default context, but text is written as it is (JSON-escaped only where JSON requires), as Ollama does.</summary>
    public static OllamaJsonContext Web => s_web ??= new OllamaJsonContext(new JsonSerializerOptions(Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    private static OllamaJsonContext? s_web;
}
