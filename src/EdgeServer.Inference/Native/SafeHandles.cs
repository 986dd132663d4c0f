using System.Runtime.InteropServices;

namespace EdgeServer.Inference.Native;

/// <summary>Owns a <c>llama_model*</c>; freed with <c>llama_model_free</c>.</summary>
internal sealed class SafeLlamaModelHandle : SafeHandle
{
    public SafeLlamaModelHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        NativeMethods.llama_model_free(handle);
        return true;
    }
}

/// <summary>Owns a <c>llama_context*</c>; freed with <c>llama_free</c>.</summary>
internal sealed class SafeLlamaContextHandle : SafeHandle
{
    public SafeLlamaContextHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        NativeMethods.llama_free(handle);
        return true;
    }
}

/// <summary>Owns a <c>llama_sampler*</c> chain; freed (with every sampler it holds) by <c>llama_sampler_free</c>.</summary>
internal sealed class SafeLlamaSamplerHandle : SafeHandle
{
    public SafeLlamaSamplerHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        NativeMethods.llama_sampler_free(handle);
        return true;
    }
}

/// <summary>
/// Owns the arrays of a <c>llama_batch</c> made by <c>llama_batch_init</c>; freed with <c>llama_batch_free</c>.
/// The handle value is the token array; the whole struct is kept to hand back to the native free.
/// </summary>
internal sealed unsafe class SafeLlamaBatchHandle : SafeHandle
{
    private LlamaBatch _batch;

    private SafeLlamaBatchHandle(LlamaBatch batch, int capacity) : base(IntPtr.Zero, ownsHandle: true)
    {
        _batch = batch;
        Capacity = capacity;
        SetHandle((IntPtr)batch.Token);
    }

    public int Capacity { get; }

    public override bool IsInvalid => handle == IntPtr.Zero;

    public ref LlamaBatch Batch => ref _batch;

    public static SafeLlamaBatchHandle Create(int capacity, int maxSequencesPerToken)
    {
        var batch = NativeMethods.llama_batch_init(capacity, 0, maxSequencesPerToken);
        if (batch.Token == null || batch.Pos == null || batch.SeqId == null || batch.Logits == null)
        {
            throw new InferenceException($"llama_batch_init could not allocate a batch of {capacity} tokens.");
        }

        return new SafeLlamaBatchHandle(batch, capacity);
    }

    protected override bool ReleaseHandle()
    {
        NativeMethods.llama_batch_free(_batch);
        return true;
    }
}

/// <summary>
/// Owns a <c>ggml_threadpool*</c>: persistent compute threads a llama_context runs its graphs on; freed with
/// <c>ggml_threadpool_free</c>, which stops and joins them. Detach it from every context first
/// (<see cref="ContextThreadPool"/> does).
/// </summary>
internal sealed unsafe class SafeGgmlThreadPoolHandle : SafeHandle
{
    public SafeGgmlThreadPoolHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <summary>Threads the pool runs, the caller's own counted (ggml makes <c>threads - 1</c> workers).</summary>
    public int Threads { get; private init; }

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <param name="poll">How long idle threads spin for new work before they sleep, 0 to 100 (llama.cpp's --poll).</param>
    public static SafeGgmlThreadPoolHandle Create(int threads, int poll)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(threads, GgmlThreadPoolParams.MaxThreads);
        ArgumentOutOfRangeException.ThrowIfNegative(poll);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(poll, 100);

        GgmlThreadPoolParams parameters;
        NativeMethods.ggml_threadpool_params_init(&parameters, threads);
        parameters.Poll = (uint)poll;
        var pool = new SafeGgmlThreadPoolHandle { Threads = threads };
        var created = GgmlThreadPoolApi.New(&parameters);
        if (created == IntPtr.Zero)
        {
            pool.SetHandleAsInvalid();
            throw new ThreadPoolException(threads);
        }

        pool.SetHandle(created);
        return pool;
    }

    protected override bool ReleaseHandle()
    {
        GgmlThreadPoolApi.Free(handle);
        return true;
    }
}
