namespace EdgeServer.Inference;

/// <summary>
/// One chat message. Roles: system, user, assistant, tool. <see cref="Content"/> is null for an assistant turn
/// that only called tools.
/// </summary>
public sealed record ChatMessage(string Role, string? Content)
{
    /// <summary>Calls an assistant turn made.</summary>
    public IReadOnlyList<ToolCall>? ToolCalls { get; init; }

    /// <summary>For a tool result: the call it answers.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>For a tool result: the function's name; otherwise the speaker's name.</summary>
    public string? Name { get; init; }

    /// <summary>For an assistant turn: its thinking, given to the template as <c>reasoning_content</c> (templates that
    /// keep thinking in the history, such as Qwen3's within a tool-calling turn, show it).</summary>
    public string? Reasoning { get; init; }
}

/// <summary>A function the model called, with its arguments as a JSON object's text.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>Calls a length limit cut off, as OpenAI returns them: <see cref="Content"/> is the text before them.</summary>
public sealed record CutOffToolCalls(string Content, IReadOnlyList<ToolCall> Calls);

/// <summary>A function the model may call; <see cref="Parameters"/> is a JSON Schema's text.</summary>
public sealed record ToolDefinition(string Name, string? Description, string Parameters, bool Strict = false);

public enum ToolChoiceMode
{
    /// <summary>The model decides between text and calls.</summary>
    Auto,

    /// <summary>The model answers with text; tools are not shown to it.</summary>
    None,

    /// <summary>The model must call at least one tool (grammar-enforced).</summary>
    Required,

    /// <summary>The model must call <see cref="ToolChoice.Function"/> (grammar-enforced).</summary>
    Function,
}

public sealed record ToolChoice(ToolChoiceMode Mode, string? Function = null)
{
    public static ToolChoice Auto { get; } = new(ToolChoiceMode.Auto);
}

/// <summary>Constrains output: any JSON object, or JSON that validates against a schema.</summary>
public sealed record ResponseFormat(ResponseFormatKind Kind, string? Schema = null)
{
    public static ResponseFormat Text { get; } = new(ResponseFormatKind.Text);
}

public enum ResponseFormatKind
{
    Text,
    JsonObject,
    JsonSchema,
}

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

    /// <summary>These parameters with the values given (a request's fields, a model's settings); null keeps this one's.</summary>
    public SamplingParameters Override(float? temperature = null, float? topP = null, int? topK = null, float? minP = null,
        float? repeatPenalty = null, float? presencePenalty = null, float? frequencyPenalty = null) => this with
    {
        Temperature = temperature ?? Temperature,
        TopP = topP ?? TopP,
        TopK = topK ?? TopK,
        MinP = minP ?? MinP,
        RepeatPenalty = repeatPenalty ?? RepeatPenalty,
        PresencePenalty = presencePenalty ?? PresencePenalty,
        FrequencyPenalty = frequencyPenalty ?? FrequencyPenalty,
    };
}

/// <summary>A request to generate text: either chat <see cref="Messages"/> or a raw <see cref="Prompt"/>.</summary>
public sealed record GenerationRequest
{
    public required string Model { get; init; }

    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    public string? Prompt { get; init; }

    /// <summary>Null: the host's default (<see cref="GenerationLimits.DefaultMaxTokens"/>), at most to the end of the context.</summary>
    public int? MaxTokens { get; init; }

    public IReadOnlyList<string> Stop { get; init; } = [];

    public SamplingParameters Sampling { get; init; } = SamplingParameters.Default;

    /// <summary>Keep generating past end-of-generation tokens (benchmarks use it to produce exactly MaxTokens).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Functions the model may call (chat only).</summary>
    public IReadOnlyList<ToolDefinition> Tools { get; init; } = [];

    public ToolChoice ToolChoice { get; init; } = ToolChoice.Auto;

    /// <summary>
    /// Whether one turn may hold more than one call (up to <see cref="Chat.ToolCallFormat.MaxParallelCalls"/>).
    /// Off unless asked for, as in llama-server: small models allowed several calls tend to repeat one.
    /// </summary>
    public bool ParallelToolCalls { get; init; }

    public ResponseFormat ResponseFormat { get; init; } = ResponseFormat.Text;

    /// <summary>Added to a token's logit before sampling; -100 bans it, 100 all but forces it.</summary>
    public IReadOnlyDictionary<int, float> LogitBias { get; init; } = new Dictionary<int, float>();

    /// <summary>Report each generated token's log probability.</summary>
    public bool Logprobs { get; init; }

    /// <summary>With <see cref="Logprobs"/>: how many most likely alternatives to report per token (0–20).</summary>
    public int TopLogprobs { get; init; }

    /// <summary>
    /// Choices to generate from the one prompt, each in its own slot, side by side (OpenAI's n). A given seed s
    /// becomes s, s+1, ... The engine admits all of them or none.
    /// </summary>
    public int Choices { get; init; } = 1;

    /// <summary>
    /// How much a reasoning model thinks (OpenAI's reasoning_effort, Ollama's think, Anthropic's thinking).
    /// <see cref="ReasoningEffort.None"/> turns thinking off through the chat template's own switch
    /// (<c>enable_thinking</c>); other levels are passed to the template as <c>reasoning_effort</c>.
    /// </summary>
    public ReasoningEffort ReasoningEffort { get; init; }

    /// <summary>
    /// How long the model stays loaded once idle after this request (Ollama's keep_alive): zero unloads it at once,
    /// a negative value keeps it until it must make room; null keeps the model's current setting.
    /// </summary>
    public TimeSpan? KeepAlive { get; init; }
}

/// <summary>A request's reasoning effort; <see cref="Default"/> leaves it to the model's chat template.</summary>
public enum ReasoningEffort
{
    Default,

    /// <summary>No thinking: <c>enable_thinking</c> is false in the chat template.</summary>
    None,
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

public enum FinishReason
{
    /// <summary>The model ended its turn or a stop sequence was found.</summary>
    Stop,

    /// <summary>max_tokens or the end of the context was reached.</summary>
    Length,

    /// <summary>The model called tools; the final chunk carries them.</summary>
    ToolCalls,
}

public static class FinishReasons
{
    /// <summary>The one name of each reason, as OpenAI's API, the request log and traces spell it.</summary>
    public static string Name(this FinishReason reason) => reason switch
    {
        FinishReason.Length => "length",
        FinishReason.ToolCalls => "tool_calls",
        _ => "stop",
    };
}

/// <summary>A candidate token and its log probability under the model (before sampling settings).</summary>
public sealed record TokenCandidate(string Token, float Logprob, byte[] Bytes);

/// <summary>One generated token with its log probability and the most likely alternatives at its position.</summary>
public sealed record TokenLogprob(string Token, float Logprob, byte[] Bytes, IReadOnlyList<TokenCandidate> TopLogprobs);

public sealed record GenerationUsage(int PromptTokens, int CompletionTokens, int CachedPromptTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;

    /// <summary>Of <see cref="CompletionTokens"/>, those that carried the model's thinking (and its markers).</summary>
    public int ReasoningTokens { get; init; }

    /// <summary>The box's energy given to this generation, in joules, when the host measured it (null otherwise).</summary>
    public double? EnergyJoules { get; init; }
}

/// <summary>A piece of generated text; the last chunk carries the finish reason, usage and timings.</summary>
public readonly record struct GenerationChunk(string Text, FinishReason? FinishReason = null, GenerationUsage? Usage = null, Diagnostics.GenerationTimings? Timings = null)
{
    /// <summary>Whether this chunk ends its choice (the session ends when every choice has ended).</summary>
    public bool IsFinal => FinishReason is not null;

    /// <summary>Which choice this chunk belongs to (0 unless the request asked for several).</summary>
    public int Choice { get; init; }

    /// <summary>Tokens generated since the previous chunk, when the request asked for log probabilities.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }

    /// <summary>On the final chunk, when the model called tools.</summary>
    public IReadOnlyList<ToolCall>? ToolCalls { get; init; }

    /// <summary>
    /// On a final chunk that max_tokens cut off inside tool calls: the calls so far, the last one's arguments the
    /// partial JSON written so far. <see cref="Text"/> keeps the whole output, for APIs that cannot show a partial call.
    /// </summary>
    public CutOffToolCalls? CutOffToolCalls { get; init; }

    /// <summary>On the final chunk, when a stop sequence of the request ended the text: which one (Anthropic's API reports it).</summary>
    public string? StopSequence { get; init; }

    /// <summary>
    /// The model's thinking that came with this chunk, split out of <see cref="Text"/> (which then holds only the
    /// answer) when the model's chat template marks thinking; null or empty otherwise.
    /// </summary>
    public string? Reasoning { get; init; }

    /// <summary>Generated tokens whose text this chunk carries first (text held back for stop sequences or split
    /// characters comes with a later chunk, counted there).</summary>
    public int Tokens { get; init; }
}

/// <summary>A generation that was admitted: prompt tokenized, checked against the context, and queued.</summary>
public interface IGenerationSession
{
    string Model { get; }

    int PromptTokens { get; }

    /// <summary>
    /// Completes when the generation has a slot (its first choice, with n &gt; 1), or when it ended without one: what a
    /// streaming host waits for before it sends headers, so a request that times out waiting is still a plain error.
    /// </summary>
    Task Started { get; }

    /// <summary>Streams text as it is produced; ends after the final chunk of every choice. Cancelling frees the slots.</summary>
    IAsyncEnumerable<GenerationChunk> ReadAllAsync(CancellationToken cancellationToken = default);
}

public enum ModelStatus
{
    /// <summary>Found and valid; loads on first use (<see cref="ModelDescriptor.Error"/> holds the last load's failure, if any).</summary>
    Available,

    /// <summary>Being loaded (or being freed, on its way back to <see cref="Available"/>).</summary>
    Loading,
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
    string ChatTemplate)
{
    /// <summary>Bytes the model takes (estimated before loading) against the memory budget.</summary>
    public long MemoryBytes { get; init; }

    /// <summary>The estimate's parts ("weights 1.6 GiB, KV 0.4, compute 0.1").</summary>
    public string? MemoryParts { get; init; }

    /// <summary>When an idle loaded model unloads, unless used again first; null when it is not idle or never does.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>Other names the model answers to.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>Requests the loaded model holds now (queued or running); a gateway sends new ones to the shortest queue.</summary>
    public int Requests { get; init; }

    /// <summary>The sampling a request gets for the fields it leaves out (the model's settings, else the engine's defaults).</summary>
    public SamplingParameters Sampling { get; init; } = SamplingParameters.Default;

    /// <summary>How the model marks its thinking, read from its chat template; null when the template shows no
    /// syntax EdgeServer splits (the model does not think, or thinks in a syntax that is left in the text).</summary>
    public Chat.ReasoningSyntax? Reasoning { get; init; }
}

/// <summary>The memory budget of the loaded models and what they use of it; a null budget is no limit.</summary>
public sealed record MemoryStatus(long? BudgetBytes, long UsedBytes, string? BudgetDerivation);

/// <summary>Text to embed, or tokens already tokenized.</summary>
public sealed record EmbeddingInput(string? Text, IReadOnlyList<int>? Tokens = null);

public sealed record EmbeddingResult(IReadOnlyList<float[]> Vectors, int PromptTokens, int Dimensions);

/// <summary>A token and the text it stands for (bytes of a split character are shown as U+FFFD).</summary>
public sealed record TokenPiece(int Id, string Piece);

/// <summary>The engine the HTTP host talks to. It knows nothing of HTTP.</summary>
public interface IInferenceEngine
{
    /// <summary>
    /// One L2-normalised vector per input, pooled as the model says (mean for models that do not say). The inputs are
    /// validated (<see cref="GenerationRequestValidator.ValidateEmbedding"/>) and take one place among the model's
    /// slots and wait queue while they run.
    /// </summary>
    Task<EmbeddingResult> EmbedAsync(string model, IReadOnlyList<EmbeddingInput> inputs, CancellationToken cancellationToken);

    Task<IReadOnlyList<TokenPiece>> TokenizeAsync(string model, string text, bool addSpecial, bool parseSpecial, CancellationToken cancellationToken);

    /// <summary>Throws <see cref="InvalidGenerationParameterException"/> for a token outside the vocabulary.</summary>
    Task<string> DetokenizeAsync(string model, IReadOnlyList<int> tokens, CancellationToken cancellationToken);

    /// <summary>Every model with its state in the pool (available, loading, loaded, unavailable) and memory.</summary>
    IReadOnlyList<ModelDescriptor> ListModels();

    /// <summary>The memory budget and its use.</summary>
    MemoryStatus Memory { get; }

    /// <summary>
    /// The most CPU threads any model's decode loop may use now, for a thermal back-off; null: each model's own count
    /// (its setting, or adaptive up to the cores). Applies to loaded models before their next step and to models
    /// loaded later.
    /// </summary>
    int? ThreadCeiling { get; set; }

    /// <summary>
    /// The decode threads of the loaded models: the most any uses now (under the ceiling), and the most any may use
    /// without one (its configured count, or the cores). With no model loaded, both are what one would get.
    /// </summary>
    (int InUse, int Limit) DecodeThreads { get; }

    /// <summary>
    /// Frees a loaded model's memory. False when it is not loaded. A model with requests queued or running is
    /// unloaded when they finish if <paramref name="wait"/>, otherwise <see cref="ModelBusyException"/>.
    /// </summary>
    Task<bool> UnloadAsync(string id, bool wait, CancellationToken cancellationToken);

    /// <summary>
    /// Ollama's <c>keep_alive: 0</c>: an idle model is freed now (awaited); one with requests queued or running is
    /// freed as soon as they finish, without waiting for that here. False when it is not loaded.
    /// </summary>
    Task<bool> UnloadWhenIdleAsync(string id, CancellationToken cancellationToken);

    ModelDescriptor? FindModel(string id);

    /// <summary>Reads the models folder now (as the folder watcher does after a change), so a file just put there is listed.</summary>
    void RescanModelsFolder();

    /// <summary>
    /// Validates the request (<see cref="GenerationRequestValidator"/>), resolves the model (loading it if needed),
    /// takes a place for each choice among the model's slots and wait queue, renders and tokenizes the prompt,
    /// checks it fits, and queues it. Throws <see cref="ModelNotFoundException"/>, <see cref="ModelUnavailableException"/>,
    /// <see cref="ContextLengthExceededException"/>, <see cref="InvalidGenerationParameterException"/> or
    /// <see cref="ServerBusyException"/> before any token is generated. The session streams every choice's chunks,
    /// each tagged with <see cref="GenerationChunk.Choice"/>.
    /// </summary>
    Task<IGenerationSession> StartAsync(GenerationRequest request, CancellationToken cancellationToken);

    /// <summary>
    /// The tokens the request's prompt takes (chat template, tools and all), validated as <see cref="StartAsync"/>
    /// does but without generating or taking a place in the model's queue.
    /// </summary>
    Task<int> CountPromptTokensAsync(GenerationRequest request, CancellationToken cancellationToken);

    /// <summary>Problems that keep the engine from serving (a stopped decode loop); none when healthy.</summary>
    EngineHealth CheckHealth();

    /// <summary>The loaded llama.cpp library's version; responses name it in their system fingerprint.</summary>
    string RuntimeVersion { get; }

    /// <summary>
    /// Loads a model now (it would otherwise load on first use), so preloading fails or succeeds at start-up.
    /// <paramref name="keepAlive"/>: how long it then stays loaded idle, as a request's keep_alive; null: the setting.
    /// </summary>
    Task LoadAsync(string id, TimeSpan? keepAlive = null, CancellationToken cancellationToken = default);

    /// <summary>From now on new requests are refused with <see cref="ShuttingDownException"/>; running ones go on.</summary>
    void BeginShutdown();

    /// <summary>Ends every running and queued generation now, each with a shutting-down error its reader sees.</summary>
    void EndGenerations();
}

/// <summary>The engine's own view of whether it can serve; <see cref="Problems"/> say what is wrong.</summary>
public sealed record EngineHealth(IReadOnlyList<string> Problems)
{
    public bool Healthy => Problems.Count == 0;
}
