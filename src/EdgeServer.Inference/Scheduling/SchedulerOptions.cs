namespace EdgeServer.Inference.Scheduling;

/// <summary>How one model's decode loop is sized.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together (llama_context n_seq_max).</summary>
    public int Slots { get; init; } = 2;

    /// <summary>Tokens of context each slot holds; capped at the model's training length.</summary>
    public int ContextPerSlot { get; init; } = 4096;

    /// <summary>Most tokens in one llama_decode call (prompt chunks plus one token per generating slot).</summary>
    public int BatchSize { get; init; } = 512;

    /// <summary>
    /// CPU threads for decoding. 0: adaptive, up to the cores this process may use; the decode loop measures its steps
    /// and runs on the count that decodes fastest under the box's load (see <see cref="ThreadCountPolicy"/>).
    /// </summary>
    public int Threads { get; init; }

    /// <summary>
    /// How long idle threads of a context's ggml thread pool spin for the next step before they sleep, 0 to 100
    /// (llama.cpp's --poll; its default is 50). Spinning answers sooner and takes a core from other work meanwhile.
    /// </summary>
    public int ThreadPoll { get; init; } = 50;

    /// <summary>Requests that may wait for a free slot before new ones are refused as busy.</summary>
    public int QueueCapacity { get; init; } = 16;

    /// <summary>
    /// Longest time sampling one token may take (a grammar step). A request over it ends with an error; the other
    /// slots never wait for it, since grammar steps run off the decode thread.
    /// </summary>
    public TimeSpan SamplingBudget { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The type of the KV cache's K and V tensors. q8_0 halves the cache and q4_0 takes about a quarter of f16's
    /// room; a quantized cache needs flash attention (llama.cpp refuses a quantized V cache without it).
    /// </summary>
    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>Flash attention: Auto lets llama.cpp decide (on for the CPU backend), Off is refused with a quantized KV cache.</summary>
    public FlashAttention FlashAttention { get; init; } = FlashAttention.Auto;

    /// <summary>Why these options cannot make a context, or null. Refused before llama.cpp would refuse them.</summary>
    public string? Problem() =>
        ThreadsProblem()
        ?? (KvCacheType != KvCacheType.F16 && FlashAttention == FlashAttention.Off
            ? $"a {KvCacheType.Name()} KV cache needs flash attention, which is Off; set FlashAttention to Auto or On, or KvCacheType to f16"
            : null);

    /// <summary>Why ggml cannot run these thread settings, or null.</summary>
    internal string? ThreadsProblem() =>
        Threads is < 0 or > Native.GgmlThreadPoolParams.MaxThreads ? $"Threads must be 0 (adaptive) to {Native.GgmlThreadPoolParams.MaxThreads}, not {Threads}"
        : ThreadPoll is < 0 or > 100 ? $"ThreadPoll must be 0 to 100, not {ThreadPoll}"
        : null;
}

/// <summary>The KV cache types a server can pick: f16 (llama.cpp's default) and the two quantized types that hold up in quality.</summary>
public enum KvCacheType
{
    F16 = (int)Gguf.GgmlType.F16,
    Q8_0 = (int)Gguf.GgmlType.Q8_0,
    Q4_0 = (int)Gguf.GgmlType.Q4_0,
}

/// <summary>llama_flash_attn_type.</summary>
public enum FlashAttention
{
    Auto = -1,
    Off = 0,
    On = 1,
}

public static class KvCacheTypes
{
    /// <summary>As llama.cpp and users write it: "f16", "q8_0", "q4_0".</summary>
    public static string Name(this KvCacheType type) => type.ToString().ToLowerInvariant();

    public static Gguf.GgmlType ToGgml(this KvCacheType type) => (Gguf.GgmlType)(uint)type;
}
