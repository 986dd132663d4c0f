using System.Globalization;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Scheduling;

namespace EdgeServer.Inference.Models;

/// <summary>
/// What serving a model takes in memory, in bytes, by llama.cpp's buffers. <see cref="Weights"/> is the model's
/// weight buffer: with a mapped file the file range it maps (page cache the kernel may reclaim and read again),
/// otherwise memory of its own. <see cref="RepackedWeights"/> is the CPU backend's interleaved copy of some weights,
/// always memory of its own. <see cref="KvCache"/> holds every slot's context; <see cref="Compute"/> is the
/// scheduler's compute buffer plus the logits/embeddings output buffer at its largest.
/// </summary>
public sealed record MemoryEstimate(long Weights, long RepackedWeights, long KvCache, long Compute)
{
    private const double MiB = 1024.0 * 1024;
    private const double GiB = MiB * 1024;

    public long Total => Weights + RepackedWeights + KvCache + Compute;

    /// <summary>As a user reads it: "2.1 GiB (weights 1.6, KV 0.4, compute 0.1)"; in MiB below 1 GiB.</summary>
    public override string ToString()
    {
        var unit = Total >= GiB ? GiB : MiB;
        string N(long bytes)
        {
            var v = bytes / unit;
            return v.ToString(v < 10 ? "0.0" : "0", CultureInfo.InvariantCulture);
        }

        var repacked = RepackedWeights > 0 ? $", repacked {N(RepackedWeights)}" : string.Empty;
        return $"{N(Total)} {(unit == GiB ? "GiB" : "MiB")} (weights {N(Weights)}{repacked}, KV {N(KvCache)}, compute {N(Compute)})";
    }
}

/// <summary>
/// Estimates, from a GGUF file's header and the server's context settings, what llama.cpp (this release, CPU
/// backend) will allocate for a model, without loading it. Weights and the KV cache follow llama.cpp's own
/// arithmetic; the compute buffer is a model of ggml-alloc's peak for a llama-style dense transformer with flash
/// attention (which llama.cpp turns on for the CPU), fitted to measured buffers. docs/architecture.md, "Model
/// memory", gives its accuracy.
/// </summary>
public static class MemoryEstimator
{
    private const int TensorAlignment = 32; // ggml's TENSOR_ALIGNMENT, the CPU buffers' alignment
    private const int ContextPad = 256; // llama_context pads n_ctx and n_ctx_seq to this
    private const int MaxMicroBatch = 512; // ContextParameters caps n_ubatch here

    /// <summary>The model's weights, KV cache and compute buffers as <see cref="ModelScheduler"/> creates them.</summary>
    /// <param name="cpu">What the CPU backend repacks; <see cref="CpuRepackFeatures.Current"/> for this machine.</param>
    public static MemoryEstimate Estimate(GgufFile model, SchedulerOptions scheduler, bool memoryMapped, CpuRepackFeatures cpu)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(scheduler);
        ArgumentNullException.ThrowIfNull(cpu);
        var hp = Hyper.Read(model);
        var (weights, repacked) = WeightBuffers(model, memoryMapped, cpu);

        // llama_context: n_ctx padded, split into one stream per slot, each padded again.
        var slots = Math.Max(1, scheduler.Slots);
        var perSlot = ContextParameters.ContextPerSlot(scheduler, hp.TrainingContext);
        var nCtx = Pad((long)perSlot * slots, ContextPad);
        var cells = Pad(nCtx / slots, ContextPad);
        nCtx = cells * slots;
        var batch = Math.Min(nCtx, scheduler.BatchSize);
        var tokens = Math.Min(batch, Math.Min(scheduler.BatchSize, MaxMicroBatch));

        var kv = KvBytes(hp, cells * slots, scheduler.KvCacheType.ToGgml());
        var compute = ComputeBytes(hp, tokens, cells, pooled: false, flashAttention: scheduler.FlashAttention != FlashAttention.Off)
            + (long)slots * hp.Vocabulary * sizeof(float);
        return new MemoryEstimate(weights, repacked, kv, compute);
    }

    /// <summary>
    /// The embedding context <see cref="Embedder"/> creates next to the generation context on a model's first
    /// embeddings request: one sequence of the per-slot context, all of it in one micro-batch, and an output buffer
    /// that grows on the first long input to logits and embeddings for every token (llama.cpp outputs every token
    /// of a pooled sequence). Its weights are the model's, so <see cref="MemoryEstimate.Weights"/> is 0.
    /// </summary>
    public static MemoryEstimate EstimateEmbedding(GgufFile model, SchedulerOptions scheduler)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(scheduler);
        var hp = Hyper.Read(model);
        long tokens = ContextParameters.ContextPerSlot(scheduler, hp.TrainingContext);
        var cells = Pad(tokens, ContextPad);
        var kv = KvBytes(hp, cells, GgmlType.F16);
        var output = (hp.Vocabulary + hp.Embedding) * tokens * sizeof(float);
        return new MemoryEstimate(0, 0, kv, ComputeBytes(hp, tokens, cells, pooled: true, flashAttention: true) + output);
    }

    /// <summary>
    /// The weight buffers llama.cpp makes: a matrix-product weight the CPU backend can repack goes into CPU_REPACK
    /// (its own copy); the rest stay in the mapped file (the buffer is the file range from the first to the last
    /// of them, repacked ones in between included) or, unmapped, in a buffer of their own.
    /// </summary>
    private static (long Weights, long Repacked) WeightBuffers(GgufFile model, bool memoryMapped, CpuRepackFeatures cpu)
    {
        long kept = 0, repacked = 0;
        long first = long.MaxValue, last = 0;
        foreach (var t in model.Tensors)
        {
            var bytes = (long)t.ByteSize;
            if (IsMatrixProductWeight(t) && cpu.Repacks(t.Type, t.Dimensions[1]))
            {
                repacked += Pad(bytes, TensorAlignment);
                continue;
            }

            kept += Pad(bytes, TensorAlignment);
            var start = model.DataOffset + (long)t.Offset;
            first = Math.Min(first, start);
            last = Math.Max(last, start + bytes);
        }

        // Without an output matrix the token embeddings serve as one; as a matrix product weight they get a
        // repacked copy of their own while the table itself stays where it is (llama.cpp's TENSOR_DUPLICATED).
        if (!model.Tensors.Any(t => t.Name == "output.weight")
            && model.Tensors.FirstOrDefault(t => t.Name == "token_embd.weight") is { Dimensions.Count: 2 } embeddings
            && cpu.Repacks(embeddings.Type, embeddings.Dimensions[1]))
        {
            repacked += Pad((long)embeddings.ByteSize, TensorAlignment);
        }

        var weights = memoryMapped ? Math.Max(0, last - (first == long.MaxValue ? 0 : first)) : kept;
        return (weights, repacked);
    }

    /// <summary>2-D weights other than lookup tables are used by matrix products (3-D: experts' products).</summary>
    private static bool IsMatrixProductWeight(GgufTensorInfo t) =>
        t.Dimensions.Count is 2 or 3
        && t.Name is not ("token_embd.weight" or "token_types.weight" or "position_embd.weight" or "per_layer_token_embd.weight");

    /// <summary>llama_kv_cache: per layer, a K and a V tensor of (head_count_kv x key/value length) x cells.</summary>
    private static long KvBytes(Hyper hp, long cells, GgmlType kvType)
    {
        long bytes = 0;
        for (var layer = 0; layer < hp.Layers; layer++)
        {
            bytes += Pad(RowBytes(kvType, (long)hp.HeadsKv[layer] * hp.KeyLength) * cells, TensorAlignment);
            bytes += Pad(RowBytes(kvType, (long)hp.HeadsKv[layer] * hp.ValueLength) * cells, TensorAlignment);
        }

        return bytes;
    }

    /// <summary>
    /// ggml-alloc's peak for the worst-case micro-batch of <paramref name="tokens"/> over <paramref name="cells"/>
    /// cells per stream. Every tensor of the graph grows with the tokens, so the peak is tokens times the larger of
    /// two moments: the output layer (logits for every token plus two rows of width n_embd; mean pooling adds a
    /// transposed copy of the last hidden state and its weights row) and a feed-forward block before the last layer
    /// (three n_ff rows, four n_embd rows, the f16 attention mask over the cells, and the token, position, output
    /// and K/V index inputs). Without flash attention a third moment can be the largest: the attention scores of
    /// every head over the cells (f32; the softmax runs in place) beside the f32 mask.
    /// </summary>
    private static long ComputeBytes(Hyper hp, long tokens, long cells, bool pooled, bool flashAttention)
    {
        var output = sizeof(float) * (hp.Vocabulary + (pooled ? 3L : 2L) * hp.Embedding) + sizeof(int) + (pooled ? sizeof(float) : 0);
        var feedForward = sizeof(float) * (3L * hp.FeedForward + 4L * hp.Embedding) + sizeof(ushort) * cells
            + 3 * sizeof(int) + 2 * sizeof(long);
        var attention = flashAttention ? 0 : sizeof(float) * ((long)hp.Heads * cells + cells + 4L * hp.Embedding);
        return tokens * Math.Max(Math.Max(output, feedForward), attention);
    }

    private static long RowBytes(GgmlType type, long elements) =>
        GgmlTypeInfo.Geometry(type) is var (block, size) && elements % block == 0
            ? elements / block * size
            : throw new ArgumentException($"A KV cache of type {type} cannot hold rows of {elements} values.", nameof(type));

    private static long Pad(long value, long multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>The hyper-parameters the estimate needs, as llama.cpp reads them (llama-model.cpp, load_hparams).</summary>
    private sealed record Hyper(int Layers, long Embedding, long FeedForward, int Heads, int[] HeadsKv, long KeyLength, long ValueLength,
        int TrainingContext, long Vocabulary)
    {
        public static Hyper Read(GgufFile file)
        {
            var arch = file.Architecture ?? throw new GgufFormatException(file.Path, "it names no architecture, so its memory cannot be estimated");
            long Required(string key) => file.GetInteger($"{arch}.{key}") is > 0 and var v
                ? v
                : throw new GgufFormatException(file.Path, $"it lacks {arch}.{key}, needed to estimate its memory");

            var layers = (int)Required("block_count");
            var embedding = Required("embedding_length");
            var heads = PerLayer(file, $"{arch}.attention.head_count", layers, fallback: null);
            var headsKv = PerLayer(file, $"{arch}.attention.head_count_kv", layers, fallback: heads);
            var maxHeads = Math.Max(1, heads.Max());
            var feedForward = PerLayer(file, $"{arch}.feed_forward_length", layers, fallback: null).Max();
            var vocabulary = file.Metadata.TryGetValue("tokenizer.ggml.tokens", out var tokens) && tokens is GgufArray a
                ? (long)a.Count
                : file.GetInteger($"{arch}.vocab_size") ?? throw new GgufFormatException(file.Path, "it has no vocabulary, needed to estimate its memory");
            return new Hyper(layers, embedding, feedForward, maxHeads, headsKv,
                file.GetInteger($"{arch}.attention.key_length") ?? embedding / maxHeads,
                file.GetInteger($"{arch}.attention.value_length") ?? embedding / maxHeads,
                (int)Math.Min(int.MaxValue, file.ContextLength ?? 0), vocabulary);
        }

        /// <summary>A scalar or per-layer array value, as llama.cpp's get_key_or_arr reads it.</summary>
        private static int[] PerLayer(GgufFile file, string key, int layers, int[]? fallback)
        {
            if (file.Metadata.TryGetValue(key, out var value))
            {
                if (value is GgufArray { Values: { } values } && values.Count >= layers)
                {
                    return values.Take(layers).Select(v => Convert.ToInt32(v, CultureInfo.InvariantCulture)).ToArray();
                }

                if (file.GetInteger(key) is { } scalar)
                {
                    return Enumerable.Repeat((int)scalar, layers).ToArray();
                }
            }

            return fallback ?? throw new GgufFormatException(file.Path, $"it lacks {key}, needed to estimate its memory");
        }
    }
}
