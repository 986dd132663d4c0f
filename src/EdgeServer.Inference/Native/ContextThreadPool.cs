namespace EdgeServer.Inference.Native;

/// <summary>
/// The persistent ggml thread pool of one llama_context. Without one, the bundled libraries (built without OpenMP)
/// start and join a fresh pool for every graph, that is for every token (ggml_graph_compute's disposable pool).
/// <para>
/// The pool has exactly the threads the context decodes with. A pool larger than the count in use would not do:
/// ggml wakes every worker for every graph, and a worker left out of one spins for the next (up to the poll level)
/// on a core that others could use. So a new count gets a new pool, attached between decode steps.
/// </para>
/// <para>
/// ggml's CPU backend keeps a pointer to the pool it last computed with, and pauses that pool when the next graph
/// runs on another one. So a pool is freed only when no decode may still reach it: once a decode has succeeded on
/// its successor, or when the context is gone.
/// </para>
/// Not thread-safe: call it from the thread that decodes on the context, between decodes.
/// </summary>
internal sealed class ContextThreadPool : IDisposable
{
    private readonly SafeLlamaContextHandle _context;
    private readonly int _poll;
    private SafeGgmlThreadPoolHandle _pool;

    // Pools the CPU backend may still point at: those a decode was called with since the last one that succeeded.
    private readonly List<SafeGgmlThreadPoolHandle> _mayBeInUse = [];

    /// <summary>Makes a pool of <paramref name="threads"/> and attaches it to <paramref name="context"/>.</summary>
    public ContextThreadPool(SafeLlamaContextHandle context, int threads, int poll)
    {
        _context = context;
        _poll = poll;
        _pool = SafeGgmlThreadPoolHandle.Create(threads, poll);
        Attach();
    }

    /// <summary>Threads of the attached pool, which the context decodes with.</summary>
    public int Threads => _pool.Threads;

    /// <summary>Pools alive now, the attached one included (for tests: old pools must not pile up).</summary>
    internal int LivePools => _mayBeInUse.Contains(_pool) ? _mayBeInUse.Count : _mayBeInUse.Count + 1;

    /// <summary>Attaches a pool of <paramref name="threads"/> in place of the current one; takes effect at the next decode.</summary>
    public void Resize(int threads)
    {
        if (threads == _pool.Threads)
        {
            return;
        }

        var next = SafeGgmlThreadPoolHandle.Create(threads, _poll);
        var old = _pool;
        _pool = next;
        Attach();
        if (!_mayBeInUse.Contains(old))
        {
            old.Dispose(); // no decode ran on it
        }
    }

    /// <summary>Call after each llama_decode on the context, with whether it returned 0.</summary>
    public void Decoded(bool succeeded)
    {
        if (succeeded)
        {
            // A successful decode computed its graphs on the attached pool: the backend has let go of the others.
            foreach (var pool in _mayBeInUse)
            {
                if (pool != _pool)
                {
                    pool.Dispose();
                }
            }

            _mayBeInUse.Clear();
        }

        if (!_mayBeInUse.Contains(_pool))
        {
            _mayBeInUse.Add(_pool);
        }
    }

    /// <summary>Detaches from a live context, then frees every pool. Nothing may decode on the context afterwards.</summary>
    public void Dispose()
    {
        if (!_context.IsClosed && !_context.IsInvalid)
        {
            NativeMethods.llama_detach_threadpool(_context);
        }

        foreach (var pool in _mayBeInUse)
        {
            pool.Dispose();
        }

        _mayBeInUse.Clear();
        _pool.Dispose();
    }

    private void Attach()
    {
        NativeMethods.llama_attach_threadpool(_context, _pool, _pool);
        NativeMethods.llama_set_n_threads(_context, _pool.Threads, _pool.Threads);
    }
}
