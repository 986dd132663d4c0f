using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Scheduling;

/// <summary>
/// The one description of the llama_contexts a model runs in: the decode loop's (one sequence per slot) and the
/// embedder's. The probe plans the same contexts, so what it checks is what the server then creates.
/// </summary>
internal static class ContextParameters
{
    /// <summary>Refuses thread settings llama.cpp and ggml cannot take, naming them.</summary>
    public static void CheckThreads(SchedulerOptions options)
    {
        if (options.ThreadsProblem() is { } problem)
        {
            throw new ArgumentOutOfRangeException(nameof(options), problem + ".");
        }
    }

    /// <summary>
    /// The most decode threads a model with <paramref name="options"/> may use: its configured count, or the cores
    /// this process may use (affinity and cgroup limit), capped at ggml's maximum.
    /// </summary>
    public static int ThreadLimit(SchedulerOptions options) =>
        options.Threads > 0 ? options.Threads : Math.Min(Environment.ProcessorCount, GgmlThreadPoolParams.MaxThreads);

    /// <summary>Tokens each slot holds: the setting, capped at the model's training length (at least 256).</summary>
    public static int ContextPerSlot(SchedulerOptions options, int trainingContextLength) =>
        Math.Min(options.ContextPerSlot, Math.Max(trainingContextLength, 256));

    public static LlamaContextParams Generation(SchedulerOptions options, int trainingContextLength, int threads)
    {
        var p = NativeMethods.llama_context_default_params();
        p.NCtx = (uint)(ContextPerSlot(options, trainingContextLength) * options.Slots);
        p.NSeqMax = (uint)options.Slots;
        p.NBatch = (uint)options.BatchSize;
        p.NUbatch = (uint)Math.Min(options.BatchSize, 512);
        p.NThreads = threads;
        p.NThreadsBatch = threads;
        p.KvUnified = 0;
        p.TypeK = (int)options.KvCacheType;
        p.TypeV = (int)options.KvCacheType;
        p.FlashAttnType = (int)options.FlashAttention;
        return p;
    }

    public static LlamaContextParams Embedding(int contextLength, int threads, int poolingType)
    {
        var p = NativeMethods.llama_context_default_params();
        p.NCtx = (uint)contextLength;
        p.NBatch = (uint)contextLength;
        p.NUbatch = (uint)contextLength; // non-causal models need the whole input in one micro-batch
        p.NSeqMax = 1;
        p.NThreads = threads;
        p.NThreadsBatch = threads;
        p.Embeddings = 1;
        p.PoolingType = poolingType;
        return p;
    }
}
