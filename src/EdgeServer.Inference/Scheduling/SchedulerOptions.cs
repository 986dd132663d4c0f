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
}
