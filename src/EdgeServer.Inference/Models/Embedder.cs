using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Models;

/// <summary>
/// Embeddings for one model: its own llama_context in embedding mode, next to the generation context, used by
/// one request at a time. Pooling is the model's own (GGUF <c>pooling_type</c>); a model without one, such as a
/// decoder-only chat model, is mean-pooled. Vectors are L2-normalised, as OpenAI's are. It decodes on a persistent
/// thread pool with the thread count its model's decode loop uses at that moment.
/// </summary>
internal sealed class Embedder : IDisposable
{
    private readonly LlamaModel _model;
    private readonly SafeLlamaContextHandle _context;
    private readonly ContextThreadPool _threadPool;
    private readonly Func<int> _threads;
    private readonly IntPtr _memory;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <param name="threads">The thread count to decode with, asked before each input (the decode loop's current one).</param>
    /// <param name="threadPoll">Poll level of the thread pool (<see cref="Scheduling.SchedulerOptions.ThreadPoll"/>).</param>
    public Embedder(LlamaModel model, int contextLength, Func<int> threads, int threadPoll)
    {
        _model = model;
        _threads = threads;
        ContextLength = Math.Min(contextLength, Math.Max(model.TrainingContextLength, 256));
        var count = Math.Max(1, threads());
        _context = Create(model, ContextLength, count, poolingType: -1);
        Pooling = (EmbeddingPooling)NativeMethods.llama_pooling_type(_context);
        if (Pooling is EmbeddingPooling.None or EmbeddingPooling.Rank)
        {
            _context.Dispose();
            _context = Create(model, ContextLength, count, poolingType: (int)EmbeddingPooling.Mean);
            Pooling = EmbeddingPooling.Mean;
        }

        try
        {
            _threadPool = new ContextThreadPool(_context, count, threadPoll);
        }
        catch
        {
            _context.Dispose();
            throw;
        }

        _memory = NativeMethods.llama_get_memory(_context);
        Dimensions = NativeMethods.llama_model_n_embd(model.Handle);
    }

    public int ContextLength { get; }

    public int Dimensions { get; }

    public EmbeddingPooling Pooling { get; }

    /// <summary>For tests: the embedding context's pool.</summary>
    internal ContextThreadPool ThreadPool => _threadPool;

    private static SafeLlamaContextHandle Create(LlamaModel model, int contextLength, int threads, int poolingType)
    {
        var p = Scheduling.ContextParameters.Embedding(contextLength, threads, poolingType);
        var context = NativeMethods.llama_init_from_model(model.Handle, p);
        if (context.IsInvalid)
        {
            context.Dispose();
            throw new ModelLoadException(model.Path, $"llama.cpp could not create an embedding context of {contextLength} tokens (not enough memory?).");
        }

        return context;
    }

    /// <summary>One normalised vector per input. Throws <see cref="ContextLengthExceededException"/> for an input that does not fit.</summary>
    public async Task<float[][]> EmbedAsync(IReadOnlyList<int[]> inputs, CancellationToken cancellationToken)
    {
        GenerationRequestValidator.ForEmbedding(inputs, ContextLength);

        await _gate.WaitAsync(cancellationToken);
        try
        {
            return await Task.Run(() => inputs.Select(t =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                return EmbedOne(t);
            }).ToArray(), cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    private unsafe float[] EmbedOne(int[] tokens)
    {
        NativeMethods.llama_memory_clear(_memory, true);
        using var batch = SafeLlamaBatchHandle.Create(tokens.Length, 1);
        ref var b = ref batch.Batch;
        for (var i = 0; i < tokens.Length; i++)
        {
            b.Token[i] = tokens[i];
            b.Pos[i] = i;
            b.NSeqId[i] = 1;
            b.SeqId[i][0] = 0;
            b.Logits[i] = 1;
        }

        b.NTokens = tokens.Length;
        _threadPool.Resize(Math.Max(1, _threads()));
        var status = NativeMethods.llama_decode(_context, b);
        _threadPool.Decoded(status == 0);
        if (status != 0)
        {
            throw new DecodeException(status);
        }

        var pooled = NativeMethods.llama_get_embeddings_seq(_context, 0);
        if (pooled == null)
        {
            throw new InferenceException("llama.cpp returned no pooled embedding for the input.");
        }

        var vector = new ReadOnlySpan<float>(pooled, Dimensions).ToArray();
        var norm = Math.Sqrt(vector.Sum(v => (double)v * v));
        if (norm > 0)
        {
            for (var i = 0; i < vector.Length; i++)
            {
                vector[i] = (float)(vector[i] / norm);
            }
        }

        return vector;
    }

    public void Dispose()
    {
        _threadPool.Dispose();
        _context.Dispose();
        _gate.Dispose();
    }
}

/// <summary>llama.cpp's pooling types.</summary>
public enum EmbeddingPooling
{
    None = 0,
    Mean = 1,
    Cls = 2,
    Last = 3,
    Rank = 4,
}
