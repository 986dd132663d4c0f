namespace EdgeServer.Inference;

/// <summary>One chat message. Roles: system, developer, user, assistant, tool.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>How the next token is picked. Defaults match llama-server's.</summary>
public sealed record SamplingParameters
{
    public static SamplingParameters Default { get; } = new();

    /// <summary>0 picks the most likely token (greedy).</summary>
    public float Temperature { get; init; } = 0.8f;

    public float TopP { get; init; } = 0.95f;

    /// <summary>0 disables top-k.</summary>
    public int TopK { get; init; } = 40;

    public float MinP { get; init; } = 0.05f;

    /// <summary>Null draws a random seed.</summary>
    public uint? Seed { get; init; }

    /// <summary>1 disables the repetition penalty.</summary>
    public float RepeatPenalty { get; init; } = 1f;

    public int RepeatLastN { get; init; } = 64;

    public float PresencePenalty { get; init; }

    public float FrequencyPenalty { get; init; }
}

/// <summary>A request to generate text: either chat <see cref="Messages"/> or a raw <see cref="Prompt"/>.</summary>
public sealed record GenerationRequest
{
    public required string Model { get; init; }

    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    public string? Prompt { get; init; }

    /// <summary>Null: until the end of the context.</summary>
    public int? MaxTokens { get; init; }

    public IReadOnlyList<string> Stop { get; init; } = [];

    public SamplingParameters Sampling { get; init; } = SamplingParameters.Default;

    /// <summary>Keep generating past end-of-generation tokens (benchmarks use it to produce exactly MaxTokens).</summary>
    public bool IgnoreEos { get; init; }
}

public enum FinishReason
{
    /// <summary>The model ended its turn or a stop sequence was found.</summary>
    Stop,

    /// <summary>max_tokens or the end of the context was reached.</summary>
    Length,
}

public sealed record GenerationUsage(int PromptTokens, int CompletionTokens, int CachedPromptTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>A piece of generated text; the last chunk carries the finish reason, usage and timings.</summary>
public readonly record struct GenerationChunk(string Text, FinishReason? FinishReason = null, GenerationUsage? Usage = null, Diagnostics.GenerationTimings? Timings = null)
{
    public bool IsFinal => FinishReason is not null;
}

/// <summary>A generation that was admitted: prompt tokenized, checked against the context, and queued.</summary>
public interface IGenerationSession
{
    string Model { get; }

    int PromptTokens { get; }

    /// <summary>Streams text as it is produced; ends with a final chunk. Cancelling frees the slot.</summary>
    IAsyncEnumerable<GenerationChunk> ReadAllAsync(CancellationToken cancellationToken = default);
}

public enum ModelStatus
{
    /// <summary>Found and valid; loads on first use.</summary>
    Available,
    Loaded,
    /// <summary>Broken or unloadable; <see cref="ModelDescriptor.Error"/> says why.</summary>
    Unavailable,
}

/// <summary>What the catalog knows of one model file.</summary>
public sealed record ModelDescriptor(
    string Id,
    string Path,
    DateTimeOffset Created,
    ModelStatus Status,
    string? Error,
    string? Architecture,
    string? Quantization,
    ulong ParameterCount,
    long FileSize,
    int ContextLength,
    string ChatTemplate);

/// <summary>The engine the HTTP host talks to. It knows nothing of HTTP.</summary>
public interface IInferenceEngine
{
    IReadOnlyList<ModelDescriptor> ListModels();

    ModelDescriptor? FindModel(string id);

    /// <summary>
    /// Resolves the model (loading it if needed), renders and tokenizes the prompt, checks it fits, and queues it.
    /// Throws <see cref="ModelNotFoundException"/>, <see cref="ModelUnavailableException"/>,
    /// <see cref="ContextLengthExceededException"/>, <see cref="InvalidGenerationParameterException"/> or
    /// <see cref="ServerBusyException"/> before any token is generated.
    /// </summary>
    Task<IGenerationSession> StartAsync(GenerationRequest request, CancellationToken cancellationToken);
}
