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

    /// <summary>CPU threads for decoding; 0 uses every core.</summary>
    public int Threads { get; init; }

    /// <summary>Requests that may wait for a free slot before new ones are refused as busy.</summary>
    public int QueueCapacity { get; init; } = 16;

    /// <summary>
    /// Longest time sampling one token may take (a grammar step). A request over it ends with an error; the other
    /// slots never wait for it, since grammar steps run off the decode thread.
    /// </summary>
    public TimeSpan SamplingBudget { get; init; } = TimeSpan.FromSeconds(5);
}
