using EdgeServer.Inference.Scheduling;

namespace EdgeServer.Inference;

/// <summary>A model file, the name clients use for it, and its own settings.</summary>
public sealed record ModelSource(string Id, string Path)
{
    public ModelSettings Settings { get; init; } = ModelSettings.None;
}

/// <summary>
/// What one model does differently from the engine's settings; a null field keeps the engine's. A request's own
/// sampling fields still win over <see cref="Sampling"/>.
/// </summary>
public sealed record ModelSettings
{
    public static ModelSettings None { get; } = new();

    /// <summary>Other names clients may ask for the model by.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    public int? Slots { get; init; }

    public int? ContextPerSlot { get; init; }

    public int? Threads { get; init; }

    public KvCacheType? KvCacheType { get; init; }

    public FlashAttention? FlashAttention { get; init; }

    public MmapMode? UseMmap { get; init; }

    /// <summary>The sampling a request gets for the fields it leaves out; null: <see cref="SamplingParameters.Default"/>.</summary>
    public SamplingParameters? Sampling { get; init; }

    /// <summary>The engine's scheduler settings with this model's own.</summary>
    public SchedulerOptions Apply(SchedulerOptions engine) => engine with
    {
        Slots = Slots ?? engine.Slots,
        ContextPerSlot = ContextPerSlot ?? engine.ContextPerSlot,
        Threads = Threads ?? engine.Threads,
        KvCacheType = KvCacheType ?? engine.KvCacheType,
        FlashAttention = FlashAttention ?? engine.FlashAttention,
    };
}

/// <summary>
/// How to start a probe child: an executable and its first arguments, to which the engine appends
/// <see cref="Models.ModelProbeChild.Switch"/> and the model's path (see <see cref="Models.ModelProbeChild"/>).
/// </summary>
public sealed record ProbeCommand(string FileName, IReadOnlyList<string> Arguments);

/// <summary>Whether model files are memory-mapped. The setting was a boolean before, so true and false still mean On and Off.</summary>
public enum MmapMode
{
    /// <summary>Mapped, unless llama.cpp repacks some of the model's weights on this CPU: then read (see <see cref="Models.WeightLoading"/>).</summary>
    Auto = 0,
    On = 1,
    Off = 2,
    True = On,
    False = Off,
}

/// <summary>What the engine needs to start. The host builds it from its own configuration.</summary>
public sealed record EngineOptions
{
    /// <summary>Folder of libllama/libggml; null uses the bundled libraries.</summary>
    public string? NativeDirectory { get; init; }

    /// <summary>Models named by the host; with <see cref="ModelsDirectory"/>, the folder's files are added to them.</summary>
    public IReadOnlyList<ModelSource> Models { get; init; } = [];

    /// <summary>A folder whose *.gguf files are served, named by file name (see <see cref="Models.ModelCatalog.Discover"/>).</summary>
    public string? ModelsDirectory { get; init; }

    /// <summary>Follow the folder while running: new files are served, removed ones leave once idle.</summary>
    public bool WatchModelsDirectory { get; init; } = true;

    public SchedulerOptions Scheduler { get; init; } = new();

    /// <summary>Memory-map model files, or read them; Auto reads those whose weights llama.cpp repacks (see <see cref="Models.WeightLoading"/>).</summary>
    public MmapMode UseMmap { get; init; } = MmapMode.Auto;

    /// <summary>Let llama.cpp repack weights into the CPU's faster layout (llama_model_params.use_extra_bufts).</summary>
    public bool Repack { get; init; } = true;

    /// <summary>
    /// Bytes the loaded models may take together (<see cref="Pool.MemoryBudget.Detect"/> finds what the box has);
    /// null: no limit.
    /// </summary>
    public Pool.MemoryBudget? MemoryBudget { get; init; }

    /// <summary>How long an idle model stays loaded; zero unloads it after each request, a negative value never.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Request-size limits, checked by <see cref="GenerationRequestValidator"/>.</summary>
    public GenerationLimits Limits { get; init; } = GenerationLimits.Default;

    /// <summary>
    /// Starts the child process each model file is probed in before it is served, so that llama.cpp aborting on a
    /// hostile file ends the child, not this process. Null probes in this process (a library without an
    /// executable to start, such as in its own tests): safe only for files llama.cpp refuses rather than aborts on.
    /// </summary>
    public ProbeCommand? ProbeCommand { get; init; }

    /// <summary>A probe child still running after this long is killed and its model is unavailable.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A file that keeps the model files found servable across runs, so a restart does not probe them again (see
    /// <see cref="Models.ProbeVerdictStore"/>); null: every start probes every file.
    /// </summary>
    public string? ProbeCacheFile { get; init; }
}
