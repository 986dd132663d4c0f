using EdgeServer.Inference.Scheduling;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Pool;

/// <summary>What a model is expected to take in memory before it is loaded, with the parts a user reads.</summary>
public sealed record ModelFootprint(long Bytes, string Parts);

/// <summary>Why a model left memory.</summary>
public enum UnloadReason
{
    /// <summary>Idle past its keep-alive.</summary>
    Idle,

    /// <summary>Made room for another model.</summary>
    Evicted,

    /// <summary>Asked for (POST /v1/models/{id}/unload).</summary>
    Requested,

    /// <summary>Its file was removed or replaced in the models folder.</summary>
    FileChanged,
}

/// <summary>
/// The loaded models of one engine within a memory budget. A model is loaded on first use when its estimated
/// footprint fits beside what is loaded; when it does not, idle models are unloaded, least recently used first, until
/// it does; a model with requests queued or running (or a caller between admission and queueing) is never unloaded,
/// and a request that needs its room waits, within its deadline, for them to finish. A model that can never fit is
/// refused at once with the numbers. Idle models unload after their keep-alive. Two requests for an unloaded model
/// load it once; a failed load is reported to each waiter and tried again on the next request.
/// </summary>
internal sealed partial class ModelPool : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>Models taken out of the catalog that are still loaded: each is freed once idle.</summary>
    private readonly HashSet<Entry> _retired = [];
    private readonly Func<string, ModelScheduler> _load;
    private readonly Action<string, ModelScheduler> _unload;
    private readonly Func<string, ModelFootprint> _estimate;
    private readonly TimeProvider _clock;
    private readonly ILogger _logger;
    private readonly ITimer _timer;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _disposed;

    /// <param name="load">Loads a model and starts its decode loop (called on a pool thread).</param>
    /// <param name="unload">Frees an idle model's scheduler, embedder and weights.</param>
    public ModelPool(IEnumerable<string> models, long? budget, TimeSpan keepAlive, Func<string, ModelFootprint> estimate,
        Func<string, ModelScheduler> load, Action<string, ModelScheduler> unload, TimeProvider clock, ILogger logger)
    {
        foreach (var id in models)
        {
            _entries[id] = new Entry(id);
        }

        Budget = budget;
        KeepAlive = keepAlive;
        _estimate = estimate;
        _load = load;
        _unload = unload;
        _clock = clock;
        _logger = logger;
        _timer = clock.CreateTimer(_ => Expire(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Bytes the models may take; null: no limit.</summary>
    public long? Budget { get; }

    /// <summary>How long a model stays loaded once idle, unless a request set its own; infinite: until evicted.</summary>
    public TimeSpan KeepAlive { get; }

    /// <summary>Raised after a model was loaded, with how long it took.</summary>
    public event Action<string, TimeSpan>? Loaded;

    /// <summary>Raised after a model was unloaded.</summary>
    public event Action<string, UnloadReason>? Unloaded;

    /// <summary>Raised when a model could not be loaded because it can never fit.</summary>
    public event Action<string>? RefusedForMemory;

    /// <summary>Bytes counted against the budget: models loading, loaded or being freed.</summary>
    public long Used
    {
        get
        {
            lock (_lock)
            {
                return UsedLocked();
            }
        }
    }

    /// <summary>
    /// The model's scheduler, loading the model first if needed, held until the lease is disposed: a model with a
    /// lease out is never unloaded. <paramref name="keepAlive"/> (a request's own; null: the setting) applies after it.
    /// </summary>
    public async Task<Lease> AcquireAsync(string id, TimeSpan? keepAlive, CancellationToken cancellationToken)
    {
        var told = false;
        while (true)
        {
            Task<ModelScheduler>? loading = null;
            Task wait;
            Entry entry;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                entry = Active(id);
                // As in Ollama, each request's keep_alive (or, without one, the setting) applies after it.
                entry.KeepAlive = keepAlive;

                wait = entry.Unloading ?? Task.CompletedTask;
                if (entry.Unloading is null)
                {
                    if (entry.Loading is null)
                    {
                        wait = MakeRoom(entry);
                    }

                    if (entry.Loading is { } task)
                    {
                        entry.Leases++;
                        loading = task;
                    }
                }
            }

            if (loading is null)
            {
                if (!told && wait.IsCompleted is false)
                {
                    told = true;
                    LogWaitingForRoom(_logger, id);
                }

                await wait.WaitAsync(cancellationToken);
                continue;
            }

            try
            {
                return new Lease(this, entry, await loading.WaitAsync(cancellationToken));
            }
            catch
            {
                Release(entry);
                throw;
            }
        }
    }

    /// <summary>
    /// Counts <paramref name="bytes"/> more for a model the caller holds a lease on (its embedding context, made on
    /// first use), unloading idle models if it must, or waiting within the caller's deadline for busy ones. Throws
    /// <see cref="ModelTooLargeException"/> when the model with the extra bytes could never fit.
    /// </summary>
    public async Task GrowAsync(Lease lease, long bytes, string what, CancellationToken cancellationToken)
    {
        var entry = lease.Entry;
        var id = entry.Id;
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (Budget is not { } budget || UsedLocked() + bytes <= budget)
                {
                    entry.Bytes += bytes;
                    return;
                }

                if (entry.Bytes + bytes > budget)
                {
                    RefusedForMemory?.Invoke(id);
                    throw new ModelTooLargeException(id, $"{what} needs {Sizes.Describe(bytes)} besides the model's {Sizes.Describe(entry.Bytes)}, more than the whole memory budget of {Sizes.Describe(budget)}. {Describe()}");
                }

                wait = Evict(UsedLocked() + bytes - budget, keep: entry);
            }

            await wait.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Unloads an idle model now. False when it is not loaded; <see cref="ModelBusyException"/> when it has work and <paramref name="wait"/> is false.</summary>
    public async Task<bool> UnloadAsync(string id, bool wait, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task next;
            var unloaded = false;
            lock (_lock)
            {
                var entry = Active(id);
                if (entry.Unloading is { } unloading)
                {
                    next = unloading;
                }
                else if (entry.Loading is null)
                {
                    return false;
                }
                else if (entry.IsIdle)
                {
                    next = StartUnload(entry, UnloadReason.Requested);
                    unloaded = true;
                }
                else if (!wait)
                {
                    throw new ModelBusyException(id);
                }
                else
                {
                    next = _changed.Task;
                }
            }

            await next.WaitAsync(cancellationToken);
            if (unloaded)
            {
                return true;
            }
        }
    }

    /// <summary>
    /// Unloads an idle model now, or a busy (or loading) one as soon as it is idle, without waiting for that: its
    /// keep-alive becomes zero, until a later request sets its own. False when it is not loaded.
    /// </summary>
    public async Task<bool> UnloadWhenIdleAsync(string id, CancellationToken cancellationToken)
    {
        Task unloading;
        lock (_lock)
        {
            var entry = Active(id);
            if (entry.Unloading is { } already)
            {
                unloading = already;
            }
            else if (entry.Loading is null)
            {
                return false;
            }
            else if (entry.Scheduler is not null && entry.IsIdle)
            {
                unloading = StartUnload(entry, UnloadReason.Requested);
            }
            else
            {
                // Touch unloads it when its last request finishes.
                entry.KeepAlive = TimeSpan.Zero;
                return true;
            }
        }

        await unloading.WaitAsync(cancellationToken);
        return true;
    }

    /// <summary>The state of a model in the pool, for listings.</summary>
    public PoolState State(string id)
    {
        lock (_lock)
        {
            var e = Active(id);
            var loaded = e.Scheduler;
            var expires = loaded is not null && e.IsIdle && Expiry(e) is { } at ? at : (DateTimeOffset?)null;
            return new PoolState(
                e.Unloading is not null ? PoolModelState.Unloading : loaded is not null ? PoolModelState.Loaded : e.Loading is not null ? PoolModelState.Loading : PoolModelState.Unloaded,
                e.Bytes,
                expires,
                e.LastError);
        }
    }

    /// <summary>Loaded schedulers, for metrics, shutdown and health.</summary>
    public IReadOnlyList<ModelScheduler> LoadedSchedulers()
    {
        lock (_lock)
        {
            return All().Select(e => e.Scheduler).OfType<ModelScheduler>().ToList();
        }
    }

    /// <summary>
    /// A loaded model's decode loop stopped: it leaves service at once, and its memory stays counted until it is
    /// freed, once no lease is out and no grammar step still reads its vocabulary. A request for the model meanwhile
    /// waits for that and then loads it anew.
    /// </summary>
    public void Forget(string id, ModelScheduler scheduler)
    {
        lock (_lock)
        {
            if (All().FirstOrDefault(e => e.Id == id && e.Scheduler == scheduler) is not { } entry)
            {
                return;
            }

            entry.Loading = null;
            entry.Unloading = Task.Run(async () =>
            {
                while (true)
                {
                    lock (_lock)
                    {
                        if (entry.Leases == 0 && !scheduler.HasRunningSteps)
                        {
                            break;
                        }
                    }

                    await Task.Delay(50);
                }

                try
                {
                    _unload(id, scheduler);
                    LogStoppedModelFreed(_logger, id);
                }
                finally
                {
                    Freed(entry);
                }
            });
        }
    }

    /// <summary>
    /// Under the lock: starts loading <paramref name="entry"/> if it fits (after unloading idle models if it must),
    /// or returns what to wait for first. Throws <see cref="ModelTooLargeException"/> when it can never fit.
    /// </summary>
    private Task MakeRoom(Entry entry)
    {
        var footprint = _estimate(entry.Id);
        if (Budget is { } budget)
        {
            if (footprint.Bytes > budget)
            {
                RefusedForMemory?.Invoke(entry.Id);
                throw new ModelTooLargeException(entry.Id, $"it needs {Sizes.Describe(footprint.Bytes)} ({footprint.Parts}), more than the whole memory budget of {Sizes.Describe(budget)}. {Describe()}");
            }

            var over = UsedLocked() + footprint.Bytes - budget;
            if (over > 0)
            {
                return Evict(over, keep: entry);
            }
        }

        entry.Bytes = footprint.Bytes;
        entry.LastError = null;
        var started = _clock.GetTimestamp();
        var load = Task.Run(() =>
        {
            var scheduler = _load(entry.Id);
            scheduler.Idle = OnIdle;
            return scheduler;
        });
        entry.Loading = load;
        load.ContinueWith(t => Settled(entry, t, _clock.GetElapsedTime(started)), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Under the lock: unloads idle models other than <paramref name="keep"/>, least recently used first, until
    /// <paramref name="over"/> bytes are freed, and returns the unloads to wait for; when even every idle model is not
    /// enough, unloads none and returns the next change (a busy model finishing, a free under way) to try again after.
    /// </summary>
    private Task Evict(long over, Entry keep)
    {
        var victims = new List<Entry>();
        foreach (var idle in All().Where(e => e != keep && e.Unloading is null && e.Scheduler is not null && e.IsIdle).OrderBy(e => e.LastUsed))
        {
            if (over <= 0)
            {
                break;
            }

            victims.Add(idle);
            over -= idle.Bytes;
        }

        return over > 0 ? _changed.Task : Task.WhenAll(victims.Select(v => StartUnload(v, UnloadReason.Evicted)));
    }

    private void Settled(Entry entry, Task<ModelScheduler> load, TimeSpan took)
    {
        lock (_lock)
        {
            if (load.IsCompletedSuccessfully)
            {
                // As if just used: a retired or keep-alive-0 model nobody waits for any more is freed now, and the
                // keep-alive timer counts from here.
                Touch(entry);
            }
            else if (entry.Loading == load)
            {
                // Not sticky: the next request tries again.
                entry.Loading = null;
                entry.Bytes = 0;
                entry.LastError = load.Exception?.GetBaseException().Message;
                _retired.Remove(entry);
            }

            Signal();
        }

        if (load.IsCompletedSuccessfully)
        {
            Loaded?.Invoke(entry.Id, took);
        }
    }

    /// <summary>Under the lock: takes an idle model out of service and frees it on a pool thread.</summary>
    private Task StartUnload(Entry entry, UnloadReason reason)
    {
        var scheduler = entry.Scheduler!;
        entry.Loading = null;
        var bytes = entry.Bytes;
        entry.Unloading = Task.Run(() =>
        {
            try
            {
                _unload(entry.Id, scheduler);
                LogUnloaded(_logger, entry.Id, reason, bytes >> 20);
            }
            finally
            {
                Freed(entry);
            }

            Unloaded?.Invoke(entry.Id, reason);
        });
        return entry.Unloading;
    }

    private void Freed(Entry entry)
    {
        lock (_lock)
        {
            entry.Unloading = null;
            entry.Bytes = 0;
            _retired.Remove(entry);
            Signal();
        }
    }

    private void Release(Entry entry)
    {
        lock (_lock)
        {
            entry.Leases--;
            Touch(entry);
        }
    }

    private void OnIdle(ModelScheduler scheduler)
    {
        lock (_lock)
        {
            if (All().FirstOrDefault(e => e.Scheduler == scheduler) is { } entry)
            {
                Touch(entry);
            }
        }
    }

    /// <summary>Under the lock: the model was just used; when idle, its keep-alive starts now.</summary>
    private void Touch(Entry entry)
    {
        if (_disposed)
        {
            return;
        }

        entry.LastUsed = _clock.GetUtcNow();
        if (entry.IsIdle && entry.Scheduler is not null && entry.Unloading is null && _retired.Contains(entry))
        {
            StartUnload(entry, UnloadReason.FileChanged);
        }
        else if (entry.IsIdle && entry.Scheduler is not null && (entry.KeepAlive ?? KeepAlive) == TimeSpan.Zero)
        {
            StartUnload(entry, UnloadReason.Idle);
        }

        Signal();
        Arm();
    }

    private void Expire()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            var now = _clock.GetUtcNow();
            foreach (var entry in _entries.Values.Where(e => e.Scheduler is not null && e.Unloading is null && e.IsIdle && Expiry(e) <= now).ToList())
            {
                StartUnload(entry, UnloadReason.Idle);
            }

            Arm();
        }
    }

    /// <summary>Under the lock: sets the timer to the next keep-alive expiry of an idle model.</summary>
    private void Arm()
    {
        var next = _entries.Values.Where(e => e.Scheduler is not null && e.Unloading is null && e.IsIdle).Select(Expiry).OfType<DateTimeOffset>().DefaultIfEmpty(DateTimeOffset.MaxValue).Min();
        var due = next == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Max(0, (next - _clock.GetUtcNow()).Ticks));
        _timer.Change(due, Timeout.InfiniteTimeSpan);
    }

    private DateTimeOffset? Expiry(Entry entry)
    {
        var keepAlive = entry.KeepAlive ?? KeepAlive;
        return keepAlive < TimeSpan.Zero ? null : entry.LastUsed + keepAlive;
    }

    private void Signal()
    {
        var changed = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.TrySetResult();
    }

    private long UsedLocked() => All().Where(e => e.Loading is not null || e.Unloading is not null).Sum(e => e.Bytes);

    /// <summary>Under the lock: the catalog's models and the retired ones still in memory.</summary>
    private IEnumerable<Entry> All() => _entries.Values.Concat(_retired);

    /// <summary>Under the lock: a model of the catalog; one removed meanwhile is not found.</summary>
    private Entry Active(string id) => _entries.TryGetValue(id, out var entry) ? entry : throw new ModelNotFoundException(id);

    /// <summary>A model that joined the catalog (a new file in the models folder).</summary>
    public void Add(string id)
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _entries.TryAdd(id, new Entry(id));
            }
        }
    }

    /// <summary>
    /// A model whose file changed: the old entry is retired as by <see cref="Remove"/> and a new one takes its name
    /// in the same step, so the name is never unknown.
    /// </summary>
    public void Replace(string id)
    {
        lock (_lock)
        {
            RemoveLocked(id);
            if (!_disposed)
            {
                _entries[id] = new Entry(id);
            }
        }
    }

    /// <summary>
    /// Takes a model out of the catalog (its file was removed or replaced): new requests no longer reach it, the ones
    /// running finish, and it is freed once idle; its memory counts until then. A model of the same id may be added
    /// at once: it is a new entry.
    /// </summary>
    public void Remove(string id)
    {
        lock (_lock)
        {
            RemoveLocked(id);
        }
    }

    private void RemoveLocked(string id)
    {
        if (!_entries.Remove(id, out var entry) || (entry.Loading is null && entry.Unloading is null))
        {
            return;
        }

        _retired.Add(entry);
        if (entry.Unloading is null && entry.Scheduler is not null && entry.IsIdle)
        {
            StartUnload(entry, UnloadReason.FileChanged);
        }

        Signal();
    }

    /// <summary>Under the lock: "loaded: a 0.9 GiB busy, b 300 MiB idle".</summary>
    private string Describe()
    {
        var held = All().Where(e => e.Loading is not null || e.Unloading is not null).ToList();
        return held.Count == 0
            ? "No model is loaded."
            : "Loaded: " + string.Join(", ", held.Select(e => $"{e.Id} {Sizes.Describe(e.Bytes)} {(e.Unloading is not null ? "unloading" : e.Scheduler is null ? "loading" : e.IsIdle ? "idle" : "busy")}")) + ".";
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
        }

        _timer.Dispose();
    }

    /// <summary>A model held in memory for one caller.</summary>
    public sealed class Lease(ModelPool pool, Entry entry, ModelScheduler scheduler) : IDisposable
    {
        private int _disposed;

        public ModelScheduler Scheduler { get; } = scheduler;

        /// <summary>The pool's entry the lease holds, even when the model has left the catalog since.</summary>
        internal Entry Entry { get; } = entry;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                pool.Release(Entry);
            }
        }
    }

    internal sealed class Entry(string id)
    {
        public string Id { get; } = id;

        /// <summary>Loading or loaded: its <see cref="Bytes"/> count against the budget.</summary>
        public Task<ModelScheduler>? Loading { get; set; }

        /// <summary>Being freed; its bytes count until it is done.</summary>
        public Task? Unloading { get; set; }

        public long Bytes { get; set; }

        /// <summary>Callers holding a lease: between asking for the model and queueing their work.</summary>
        public int Leases { get; set; }

        public DateTimeOffset LastUsed { get; set; }

        /// <summary>The last request's own keep-alive; null when it gave none (the setting applies).</summary>
        public TimeSpan? KeepAlive { get; set; }

        public string? LastError { get; set; }

        public ModelScheduler? Scheduler => Loading is { IsCompletedSuccessfully: true } loaded ? loaded.Result : null;

        /// <summary>No lease out and nothing queued or running in its decode loop.</summary>
        public bool IsIdle => Leases == 0 && (Scheduler?.InFlight ?? 0) == 0;
    }

    [LoggerMessage(EventId = Diagnostics.EventIds.ModelUnloaded, Level = LogLevel.Information, Message = "Model {Model} unloaded ({Reason}); {MiB} MiB freed")]
    private static partial void LogUnloaded(ILogger logger, string model, UnloadReason reason, long miB);

    [LoggerMessage(EventId = Diagnostics.EventIds.StoppedModelFreed, Level = LogLevel.Warning, Message = "Model {Model}: the memory of the model whose decode loop stopped is freed")]
    private static partial void LogStoppedModelFreed(ILogger logger, string model);

    [LoggerMessage(EventId = Diagnostics.EventIds.WaitingForRoom, Level = LogLevel.Information, Message = "Model {Model} waits for memory: the models in the way are busy")]
    private static partial void LogWaitingForRoom(ILogger logger, string model);
}

public enum PoolModelState
{
    Unloaded,
    Loading,
    Loaded,
    Unloading,
}

/// <summary>A model's place in the pool: its state, bytes counted against the budget, when an idle one unloads, and the last load error.</summary>
public sealed record PoolState(PoolModelState State, long Bytes, DateTimeOffset? ExpiresAt, string? LastError);
