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
}
