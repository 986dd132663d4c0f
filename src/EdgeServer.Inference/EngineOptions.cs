using EdgeServer.Inference.Scheduling;

namespace EdgeServer.Inference;

/// <summary>A model file and the name clients use for it.</summary>
public sealed record ModelSource(string Id, string Path);

/// <summary>What the engine needs to start. The host builds it from its own configuration.</summary>
public sealed record EngineOptions
{
    /// <summary>Folder of libllama/libggml; null uses the bundled libraries.</summary>
    public string? NativeDirectory { get; init; }

    public IReadOnlyList<ModelSource> Models { get; init; } = [];

    public SchedulerOptions Scheduler { get; init; } = new();

    /// <summary>Memory-map model files (llama.cpp's default); off reads them into memory.</summary>
    public bool UseMmap { get; init; } = true;

    /// <summary>
    /// Most options of a request's JSON schema that may match the same text at once, multiplied through nesting;
    /// beyond it the schema is refused, since llama.cpp's grammar work per token grows with it.
    /// </summary>
    public int MaxSchemaAlternatives { get; init; } = Sampling.JsonSchemaGrammar.DefaultMaxAlternatives;
}
