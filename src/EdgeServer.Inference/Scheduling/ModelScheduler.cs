using System.Diagnostics;
using System.Runtime.CompilerServices;
using EdgeServer.Inference.Diagnostics;
using System.Runtime.InteropServices;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Text;
using Microsoft.Extensions.Logging;
using System.Threading.Channels;

namespace EdgeServer.Inference.Scheduling;

/// <summary>
/// Continuous batching for one model: a single llama_context with one KV sequence per slot, and one decode
/// loop on a dedicated thread. Each step puts the next token of every generating slot and a chunk of any
/// prompt still being read into one batch, decodes once, and samples each slot with its own sampler chain.
/// A new request reuses the KV of the longest token prefix a free slot already holds.
/// </summary>
internal sealed unsafe partial class ModelScheduler : IDisposable
{
    private readonly LlamaModel _model;
    private readonly ILogger _logger;
    private readonly LlamaContextParams _contextParameters;
    private SafeLlamaContextHandle _context;
    private ContextThreadPool _threadPool;
    private readonly ThreadCountPolicy _threadPolicy;
    private readonly int _threadPoll;
    private int _threads; // the pool's count, for readers off the decode thread
    private int _maxThreads; // asked for by MaxThreads; the decode loop applies it between steps
    private readonly int _threadLimit; // the configured or detected count, which MaxThreads cannot exceed
    private readonly SafeLlamaBatchHandle _batch;
    private IntPtr _memory;
    private readonly Slot[] _slots;
    private readonly Channel<GenerationSession> _queue;
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stopping = new();
    private readonly int* _abortFlag;
    private readonly byte[] _pieceBuffer = new byte[256];
    private readonly int _admissionLimit;
    private readonly TimeSpan _samplingBudget;
    private readonly Action<ModelScheduler, Exception>? _faulted;

    // Wakes a loop that waits for grammar steps running off the decode thread (or for a request to admit).
    private readonly AutoResetEvent _wake = new(false);
    private int _orphans; // grammar steps still running for requests that already ended
    private volatile string? _fault;
    private int _inFlight; // places taken: reserved, queued and running sessions; admission refuses beyond slots + queue capacity
    private long _steps; // decode-loop steps, to tell a grammar step started now from an older one
    private long _promptTokensEvaluated;
    private int _disposed;

    private readonly InferenceMetrics? _metrics;
    private readonly TimeProvider _clock;

    public ModelScheduler(string id, LlamaModel model, SchedulerOptions options, ILogger logger, InferenceMetrics? metrics = null, TimeProvider? clock = null, Action<ModelScheduler, Exception>? faulted = null)
    {
        Id = id;
        Options = options;
        _model = model;
        _logger = logger;
        _metrics = metrics;
        _clock = clock ?? TimeProvider.System;
        _faulted = faulted;
        _samplingBudget = options.SamplingBudget;
        ContextParameters.CheckThreads(options);
        _threadPolicy = options.Threads > 0 ? ThreadCountPolicy.Fixed(options.Threads) : ThreadCountPolicy.Adaptive(ContextParameters.ThreadLimit(options), _clock);
        _threadPoll = options.ThreadPoll;
        _threadLimit = _maxThreads = _threadPolicy.Ceiling;
        _contextParameters = ContextParameters.Generation(options, model.TrainingContextLength, _threadPolicy.Threads);
        _abortFlag = (int*)NativeMemory.AllocZeroed(sizeof(int));
        try
        {
            (_context, _threadPool) = CreateContext();
        }
        catch
        {
            NativeMemory.Free(_abortFlag);
            throw;
        }

        ContextPerSlot = (int)NativeMethods.llama_n_ctx_seq(_context);
        BatchCapacity = (int)NativeMethods.llama_n_batch(_context);
        _batch = SafeLlamaBatchHandle.Create(BatchCapacity, 1);
        _slots = Enumerable.Range(0, options.Slots).Select(i => new Slot(i)).ToArray();
        _admissionLimit = options.Slots + Math.Max(0, options.QueueCapacity);
        _queue = Channel.CreateUnbounded<GenerationSession>(new UnboundedChannelOptions { SingleReader = true });
        _thread = new Thread(Run) { IsBackground = true, Name = $"decode:{id}" };
        _thread.Start();
        LogStarted(logger, id, options.Slots, ContextPerSlot, BatchCapacity, _threadPolicy.Threads, _threadPolicy.IsAdaptive ? "adaptive" : "fixed");
    }

    public string Id { get; }

    /// <summary>Why the decode loop stopped, or null while it runs (or stopped only for shutdown).</summary>
    public string? Fault => _fault;

    /// <summary>For tests: runs on the thread that samples a token of <see cref="GenerationRequest"/>; may throw or block.</summary>
    internal Action<GenerationRequest>? SamplingHook { get; set; }

    /// <summary>For tests: a non-zero value stands in for what llama_decode returned.</summary>
    internal Func<int>? DecodeHook { get; set; }

    /// <summary>For tests: runs once per loop turn, outside any slot.</summary>
    internal Action? LoopHook { get; set; }

    /// <summary>For tests: given the thread count and the measured time of a decode step, returns the time the thread policy sees.</summary>
    internal Func<int, TimeSpan, TimeSpan>? StepTimeHook { get; set; }

    /// <summary>
    /// CPU threads the decode loop runs on now: the configured count, or the one measured fastest under the box's
    /// load, and never more than <see cref="MaxThreads"/> (an idle loop applies a lowered ceiling at its next step;
    /// its embedder and the metric follow the ceiling at once).
    /// </summary>
    public int Threads => Math.Min(Volatile.Read(ref _threads), Volatile.Read(ref _maxThreads));

    /// <summary>The most threads this model may use: its configured count, or the cores this process may use.</summary>
    public int ThreadLimit => _threadLimit;

    /// <summary>True when the thread count follows measurement (no fixed Threads setting).</summary>
    public bool AdaptiveThreads => _threadPolicy.IsAdaptive;

    /// <summary>
    /// The most CPU threads the decode loop may use: at first the configured count, or the cores this process may
    /// use. Lower it to shed heat or leave cores to others (a thermal back-off); values beyond the first are
    /// capped there. Applied by the decode loop before its next step.
    /// </summary>
    public int MaxThreads
    {
        get => Volatile.Read(ref _maxThreads);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            Volatile.Write(ref _maxThreads, Math.Min(value, _threadLimit));
        }
    }

    /// <summary>For tests: true while the adaptive policy is trying counts (read off the decode thread: a hint).</summary>
    internal bool MeasuringThreads => _threadPolicy.Measuring;

    /// <summary>For tests: the decode context's pool.</summary>
    internal ContextThreadPool ThreadPool => _threadPool;

    /// <summary>For tests: the thread count llama.cpp's context holds for single-token and batch decodes.</summary>
    internal (int Decode, int Batch) ContextThreads => (NativeMethods.llama_n_threads(_context), NativeMethods.llama_n_threads_batch(_context));

    public LlamaModel Model => _model;

    public int ContextPerSlot { get; }

    /// <summary>The settings this loop was made with (the model's own over the engine's).</summary>
    public SchedulerOptions Options { get; }

    public int BatchCapacity { get; }

    /// <summary>Prompt tokens actually run through llama_decode (cache hits excluded).</summary>
    public long PromptTokensEvaluated => Interlocked.Read(ref _promptTokensEvaluated);


    internal SchedulerSnapshot Snapshot()
    {
        int busy = 0;
        long cells = 0;
        foreach (var slot in _slots)
        {
            busy += slot.Session is null ? 0 : 1;
            cells += slot.Cached.Count;
        }

        return new SchedulerSnapshot(Id, _slots.Length, busy, Math.Max(0, Volatile.Read(ref _inFlight) - busy), cells, (long)_model.SizeBytes, Threads);
    }

    /// <summary>
    /// Takes places for <paramref name="count"/> sessions (the choices of one request, or an embedding) among the
    /// slots and the wait queue, all or none: this is the one admission of the model. Throws
    /// <see cref="ServerBusyException"/> when they are full. Each place is released when its session ends (or its
    /// grammar step, if one is still running then), and places never used when the reservation is disposed.
    /// </summary>
    public Reservation Reserve(int count)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0 || _stopping.IsCancellationRequested, this);
        if (_fault is { } fault)
        {
            throw new ModelUnavailableException(Id, $"its decode loop stopped ({fault}); it is being reloaded");
        }

        if (count > _admissionLimit)
        {
            // It would never be admitted: a 429 would have the client retry for ever.
            throw new InvalidGenerationParameterException(GenerationField.Choices,
                n => $"'{n.Name(GenerationField.Choices)}' is {count}, but the model '{Id}' takes at most {_admissionLimit} generations at once (its slots plus its wait queue).");
        }

        while (true)
        {
            var current = Volatile.Read(ref _inFlight);
            if (current + count > _admissionLimit)
            {
                throw new ServerBusyException(Id, TimeSpan.FromSeconds(1));
            }

            if (Interlocked.CompareExchange(ref _inFlight, current + count, current) == current)
            {
                return new Reservation(this, count);
            }
        }
    }

    /// <summary>Places taken (reserved, queued, running, or a grammar step still running): zero when the model is idle.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Called (on whichever thread returned the last place) each time the model becomes idle.</summary>
    public Action<ModelScheduler>? Idle { get; set; }

    private void ReturnPlaces(int count)
    {
        if (Interlocked.Add(ref _inFlight, -count) == 0)
        {
            Idle?.Invoke(this);
        }
    }

    /// <summary>Places taken by <see cref="Reserve"/>; each <see cref="Enqueue"/> uses one.</summary>
    internal sealed class Reservation(ModelScheduler scheduler, int count) : IDisposable
    {
        private int _left = count;

        /// <summary>Turns one place into a queued session; false when none is left.</summary>
        public bool TryUse() => Interlocked.Decrement(ref _left) >= 0 || Interlocked.Increment(ref _left) < 0;

        public void Dispose()
        {
            var unused = Interlocked.Exchange(ref _left, 0);
            if (unused > 0)
            {
                scheduler.ReturnPlaces(unused);
            }
        }
    }

    /// <summary>
    /// Queues a tokenized, validated request on a place of <paramref name="reservation"/>, with the sampler built for
    /// it; the session owns the sampler from here on. <paramref name="maxTokens"/> fits the context (the engine
    /// checked it).
    /// </summary>
    public GenerationSession Enqueue(Reservation reservation, GenerationRequest request, int[] prompt, int maxTokens, TokenSampler sampler, CancellationToken cancellationToken, bool renderSpecialTokens = false)
    {
        if (!reservation.TryUse())
        {
            throw new InvalidOperationException("The reservation has no place left.");
        }

        var session = new GenerationSession(Id, request, prompt, maxTokens, cancellationToken, abandoned: _ => ReturnPlaces(1)) { QueuedAt = _clock.GetUtcNow(), Sampler = sampler, RenderSpecialTokens = renderSpecialTokens };
        if (!_queue.Writer.TryWrite(session))
        {
            ReturnPlaces(1);
            throw new ObjectDisposedException(nameof(ModelScheduler), $"The model '{Id}' is shutting down.");
        }

        Wake();
        return session;
    }

    /// <summary>Ends every running and queued generation with <paramref name="error"/>; the model stays loaded.</summary>
    public void EndAll(Exception error)
    {
        lock (_endLock)
        {
            _endRequested = error;
        }

        // Wake an idle loop so it notices.
        _queue.Writer.TryWrite(GenerationSession.Wakeup);
        Wake();
    }

    private readonly Lock _endLock = new();
    private Exception? _endRequested;

    /// <summary>
    /// The decode loop. A failure inside one slot ends that request only (see <see cref="FailSlot"/>); anything
    /// else that throws ends the running requests, and the loop goes on with a fresh context. Only when that
    /// recovery fails again and again does the loop stop, and then it says so (<see cref="Fault"/>) and lets the
    /// engine reload the model.
    /// </summary>
    private void Run()
    {
        var failures = 0;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                Turn();
                failures = 0;
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                LogLoopError(_logger, e, Id, failures + 1);
                try
                {
                    EndRunning(new InferenceException($"The model '{Id}' hit an internal error and ended this request: {e.Message}", e), queuedToo: false);
                    if (++failures >= MaxConsecutiveFailures)
                    {
                        throw new InferenceException($"{failures} recoveries in a row failed; last error: {e.Message}", e);
                    }

                    RecreateContext();
                }
                catch (Exception fatal)
                {
                    // Reported first, so that health says so by the time a client sees its request fail.
                    _fault = fatal.Message;
                    LogLoopFailed(_logger, fatal, Id);
                    _faulted?.Invoke(this, fatal);
                    FailAll(new ModelUnavailableException(Id, $"its decode loop stopped ({fatal.Message}); it is being reloaded"));
                    return;
                }
            }
        }

        FailAll(new InferenceException($"The model '{Id}' is shutting down."));
    }

    private const int MaxConsecutiveFailures = 3;

    private void Turn()
    {
        LoopHook?.Invoke();
        if (!_slots.Any(s => s.Session is not null))
        {
            // Idle: block until a request arrives.
            if (!_queue.Reader.WaitToReadAsync(_stopping.Token).AsTask().GetAwaiter().GetResult())
            {
                _stopping.Cancel();
                return;
            }
        }

        Exception? end;
        lock (_endLock)
        {
            end = _endRequested;
            _endRequested = null;
        }

        if (end is not null)
        {
            EndRunning(end, queuedToo: true);
        }

        Admit();
        Step();
    }

    /// <summary>Moves queued requests into free slots, preferring the slot whose cached tokens share the longest prefix.</summary>
    private void Admit()
    {
        while (_slots.Any(s => s.Session is null) && _queue.Reader.TryRead(out var session))
        {
            if (ReferenceEquals(session, GenerationSession.Wakeup))
            {
                continue;
            }

            if (session.IsCancelled)
            {
                Drop(session, error: null);
                continue;
            }

            if (!session.TryAdmit())
            {
                continue; // dropped (cancelled) meanwhile; its place is back already
            }

            Slot? best = null;
            var bestCommon = -1;
            foreach (var slot in _slots)
            {
                if (slot.Session is not null)
                {
                    continue;
                }

                var common = CommonPrefix(slot.Cached, session.Prompt);
                if (common > bestCommon)
                {
                    (best, bestCommon) = (slot, common);
                }
            }

            Start(best!, session, bestCommon);
        }
    }

    private void Start(Slot slot, GenerationSession session, int common)
    {
        slot.Session = session;
        slot.Sampler = session.TakeSampler();
        try
        {
            // At least the last prompt token is evaluated again, to get logits for the first sampled token.
            common = Math.Min(common, session.Prompt.Length - 1);
            if (!NativeMethods.llama_memory_seq_rm(_memory, slot.Id, common, -1))
            {
                NativeMethods.llama_memory_seq_rm(_memory, slot.Id, -1, -1);
                common = 0;
            }

            slot.Cached.RemoveRange(common, slot.Cached.Count - common);
            session.AdmittedAt = _clock.GetUtcNow();
            slot.PromptPosition = common;
            slot.CachedPromptTokens = common;
            slot.Generated = 0;
            slot.Reported = 0;
            slot.PendingToken = -1;
            slot.Decoder = new Utf8StreamDecoder();
            slot.Stops = new StopSequenceMatcher(session.Request.Stop);
            slot.PendingLogprobs.Clear();
        }
        catch (Exception e)
        {
            FailSlot(slot, e);
        }
    }

    private void Step()
    {
        _steps++;
        if (Volatile.Read(ref _maxThreads) is var ceiling && ceiling != _threadPolicy.Ceiling && _threadPolicy.SetCeiling(ceiling))
        {
            ApplyThreads();
        }

        ref var batch = ref _batch.Batch;
        batch.NTokens = 0;
        foreach (var slot in _slots)
        {
            slot.BatchIndex = -1;
            slot.InBatch = false;
            if (slot.Session is { IsCancelled: true })
            {
                Release(slot, error: null);
            }
        }

        Harvest();

        // One token for each generating slot first, so running streams keep flowing.
        foreach (var slot in _slots)
        {
            if (slot.Session is not null && slot.PendingToken >= 0)
            {
                slot.BatchIndex = Add(ref batch, slot.PendingToken, slot.Cached.Count, slot.Id, logits: true);
                slot.InBatch = true;
                slot.Cached.Add(slot.PendingToken);
                slot.PendingToken = -1;
            }
        }

        // Then prompt chunks, as far as the batch allows.
        var generating = batch.NTokens;
        foreach (var slot in _slots)
        {
            if (slot.Session is not { } session || slot.PromptPosition >= session.Prompt.Length || batch.NTokens >= BatchCapacity)
            {
                continue;
            }

            var take = Math.Min(BatchCapacity - batch.NTokens, session.Prompt.Length - slot.PromptPosition);
            slot.InBatch = true;
            for (var i = 0; i < take; i++)
            {
                var token = session.Prompt[slot.PromptPosition];
                slot.PromptPosition++;
                var last = slot.PromptPosition == session.Prompt.Length;
                var index = Add(ref batch, token, slot.Cached.Count, slot.Id, logits: last);
                slot.Cached.Add(token);
                if (last)
                {
                    slot.BatchIndex = index;
                }
            }

            Interlocked.Add(ref _promptTokensEvaluated, take);
        }

        if (batch.NTokens == 0)
        {
            WaitForSampling();
            return;
        }

        var stepStarted = Stopwatch.GetTimestamp();
        var status = DecodeHook?.Invoke() is { } forced and not 0 ? forced : NativeMethods.llama_decode(_context, batch);
        _threadPool.Decoded(status == 0);
        if (status != 0)
        {
            DecodeFailed(status, batch.NTokens);
            return;
        }

        // Plain slots sample here; grammar steps go to workers so that a costly grammar holds only its own request.
        foreach (var slot in _slots)
        {
            if (slot.BatchIndex < 0 || slot.Session is not { } session)
            {
                continue;
            }

            try
            {
                if (slot.Sampler!.HasGrammar)
                {
                    StartSampling(slot, session);
                    continue;
                }

                SamplingHook?.Invoke(session.Request);
                var token = slot.Sampler.Sample(_context, slot.BatchIndex);
                Accept(slot, token, Logits(slot.BatchIndex));
            }
            catch (Exception e)
            {
                FailSlot(slot, e);
            }
        }

        if (generating == batch.NTokens)
        {
            // Only steps of generating slots alone: a prompt chunk's cost says nothing of the decode speed.
            ObserveStep(generating, Stopwatch.GetElapsedTime(stepStarted));
        }

        // A grammar step normally takes milliseconds: wait a little so that it joins the next batch.
        var patience = _clock.GetTimestamp();
        foreach (var slot in _slots)
        {
            // Only steps started now: one that is already late must not tax every later step of the others.
            if (slot.Sampling is { } task && slot.SamplingStep == _steps)
            {
                var left = SamplingPatience - _clock.GetElapsedTime(patience);
                if (left <= TimeSpan.Zero || !((IAsyncResult)task).AsyncWaitHandle.WaitOne(left))
                {
                    break;
                }
            }
        }

        Harvest();
    }

    /// <summary>Feeds the thread policy one step's time (decode and sampling on this thread), and applies a new count.</summary>
    private void ObserveStep(int tokens, TimeSpan elapsed)
    {
        if (StepTimeHook is { } hook)
        {
            elapsed = hook(_threadPool.Threads, elapsed);
        }

        if (_threadPolicy.Observe(tokens, elapsed))
        {
            ApplyThreads();
        }
    }

    /// <summary>Between steps, on the decode thread: the context gets a pool of the policy's count.</summary>
    private void ApplyThreads()
    {
        var previous = _threadPool.Threads;
        var next = _threadPolicy.Threads;
        if (next == previous)
        {
            return;
        }

        _threadPool.Resize(next);
        Volatile.Write(ref _threads, next);
        var medians = string.Join(", ", _threadPolicy.MedianMilliseconds.OrderByDescending(m => m.Key).Select(m => FormattableString.Invariant($"{m.Key}: {m.Value:0.00} ms")));
        LogThreadsChanged(_logger, Id, next, previous, _threadPolicy.Reason, medians);
    }

    /// <summary>How long a step waits for grammar steps before it goes on without them.</summary>
    private static readonly TimeSpan SamplingPatience = TimeSpan.FromMilliseconds(50);

    private ReadOnlySpan<float> Logits(int batchIndex)
    {
        var logits = NativeMethods.llama_get_logits_ith(_context, batchIndex);
        if (logits == null)
        {
            throw new InferenceException($"llama.cpp has no logits for batch position {batchIndex}.");
        }

        return new ReadOnlySpan<float>(logits, _model.VocabularySize);
    }

    private void StartSampling(Slot slot, GenerationSession session)
    {
        slot.LogitsCopy ??= new float[_model.VocabularySize];
        Logits(slot.BatchIndex).CopyTo(slot.LogitsCopy);
        var (sampler, logits, hook, request) = (slot.Sampler!, slot.LogitsCopy, SamplingHook, session.Request);
        slot.SamplingSince = _clock.GetTimestamp();
        slot.SamplingStep = _steps;
        var step = Task.Run(() =>
        {
            hook?.Invoke(request);
            return sampler.Sample(logits);
        });

        // After completion, not in the step's own finally: a loop woken before the task counts as done would sleep again.
        step.ContinueWith(_ => Wake(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        slot.Sampling = step;
    }

    /// <summary>Takes the tokens of finished grammar steps, and ends requests whose step is over the budget.</summary>
    private void Harvest()
    {
        foreach (var slot in _slots)
        {
            if (slot.Sampling is not { } task || slot.Session is null)
            {
                continue;
            }

            if (task.IsCompleted)
            {
                slot.Sampling = null;
                try
                {
                    Accept(slot, task.GetAwaiter().GetResult(), slot.LogitsCopy);
                }
                catch (Exception e)
                {
                    FailSlot(slot, e);
                }
            }
            else if (_clock.GetElapsedTime(slot.SamplingSince) > _samplingBudget)
            {
                LogSamplingOverBudget(_logger, Id, _samplingBudget.TotalSeconds);
                _metrics?.SamplingOverBudget(Id);
                FailSlot(slot, new SamplingBudgetExceededException(Id, _samplingBudget));
            }
        }
    }

    /// <summary>Nothing to decode while grammar steps run: sleep until one ends, a request arrives, or a budget runs out.</summary>
    private void WaitForSampling()
    {
        var running = _slots.Where(s => s.Sampling is not null).ToList();
        if (running.Count == 0)
        {
            return;
        }

        var due = running.Min(s => _samplingBudget - _clock.GetElapsedTime(s.SamplingSince));
        var wait = due < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : due + TimeSpan.FromMilliseconds(1);
        WaitHandle.WaitAny([_wake, _stopping.Token.WaitHandle], wait);
    }

    private void Wake()
    {
        try
        {
            _wake.Set();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// llama_decode failed: the sequences in that batch end with the error and forget their KV; the others go on.
    /// A compute failure (status below -1) may leave the context broken, so it is made anew.
    /// </summary>
    private void DecodeFailed(int status, int tokens)
    {
        var error = new DecodeException(status);
        LogDecodeFailed(_logger, Id, status, tokens);
        if (status == 2 && _stopping.IsCancellationRequested)
        {
            throw new OperationCanceledException();
        }

        foreach (var slot in _slots)
        {
            if (slot.InBatch && slot.Session is not null)
            {
                FailSlot(slot, error);
            }
        }

        if (status < -1)
        {
            EndRunning(error, queuedToo: false);
            RecreateContext();
        }
    }

    /// <summary>A llama_context with a thread pool of the policy's count attached.</summary>
    private (SafeLlamaContextHandle, ContextThreadPool) CreateContext()
    {
        var parameters = _contextParameters;
        parameters.NThreads = parameters.NThreadsBatch = _threadPolicy.Threads;
        var context = NativeMethods.llama_init_from_model(_model.Handle, parameters);
        if (context.IsInvalid)
        {
            context.Dispose();
            throw new ModelLoadException(_model.Path, $"llama.cpp could not create a context of {_contextParameters.NCtx} tokens for {_contextParameters.NSeqMax} slots (not enough memory?). Lower ContextPerSlot or Slots.");
        }

        ContextThreadPool pool;
        try
        {
            pool = new ContextThreadPool(context, _threadPolicy.Threads, _threadPoll);
        }
        catch
        {
            context.Dispose();
            throw;
        }

        Volatile.Write(ref _threads, pool.Threads);
        NativeMethods.llama_set_abort_callback(context, &ShouldAbort, (IntPtr)_abortFlag);
        _memory = NativeMethods.llama_get_memory(context);
        return (context, pool);
    }

    /// <summary>A fresh llama_context in place of one that may be broken; every slot's cache is gone with the old one.</summary>
    private void RecreateContext()
    {
        LogContextRecreated(_logger, Id);
        _memory = IntPtr.Zero;
        _threadPool.Dispose();
        _context.Dispose();
        (_context, _threadPool) = CreateContext();
        foreach (var slot in _slots)
        {
            slot.Cached.Clear();
        }
    }

    private void Accept(Slot slot, int token, ReadOnlySpan<float> logits)
    {
        var session = slot.Session!;
        if (session.Request.Logprobs && (session.Request.IgnoreEos || !_model.IsEndOfGeneration(token)))
        {
            slot.PendingLogprobs.Add(Logprob(logits, token, session.Request.TopLogprobs));
        }

        if (session.FirstTokenAt == default)
        {
            session.FirstTokenAt = _clock.GetUtcNow();
        }

        if (!session.Request.IgnoreEos && _model.IsEndOfGeneration(token))
        {
            Finish(slot, FinishReason.Stop);
            return;
        }

        slot.Generated++;
        var length = _model.TokenToPiece(token, _pieceBuffer, session.RenderSpecialTokens);
        var text = slot.Stops!.Append(slot.Decoder!.Append(_pieceBuffer.AsSpan(0, length)));
        if (text.Length > 0)
        {
            session.Writer.TryWrite(new GenerationChunk(text) { Logprobs = TakeLogprobs(slot), Tokens = slot.Generated - slot.Reported });
            slot.Reported = slot.Generated;
        }

        if (slot.Stops.Stopped)
        {
            Finish(slot, FinishReason.Stop);
        }
        else if (slot.Generated >= session.MaxTokens || slot.Cached.Count >= ContextPerSlot)
        {
            Finish(slot, FinishReason.Length);
        }
        else
        {
            slot.PendingToken = token;
        }
    }

    private void Finish(Slot slot, FinishReason reason)
    {
        var session = slot.Session!;
        var tail = slot.Stops!.Append(slot.Decoder!.Flush());
        if (!slot.Stops.Stopped)
        {
            tail += slot.Stops.Flush();
        }
        else
        {
            reason = FinishReason.Stop;
        }

        var usage = new GenerationUsage(session.PromptTokens, slot.Generated, slot.CachedPromptTokens);
        var finished = _clock.GetUtcNow();
        var first = session.FirstTokenAt == default ? finished : session.FirstTokenAt;
        var timings = new GenerationTimings(session.AdmittedAt - session.QueuedAt, first - session.AdmittedAt, finished - first);
        _metrics?.Finished(Id, usage, timings);
        Trace(session, usage, reason, finished);
        session.Writer.TryWrite(new GenerationChunk(tail, reason, usage, timings) { Logprobs = TakeLogprobs(slot), StopSequence = slot.Stops.Matched, Tokens = slot.Generated - slot.Reported });
        Release(slot, error: null);
    }

    private static List<TokenLogprob>? TakeLogprobs(Slot slot)
    {
        if (slot.PendingLogprobs.Count == 0)
        {
            return null;
        }

        var taken = slot.PendingLogprobs.ToList();
        slot.PendingLogprobs.Clear();
        return taken;
    }

    /// <summary>
    /// The sampled token's log probability under the model's own distribution (log-softmax of the raw logits,
    /// before temperature, penalties or cuts, as OpenAI reports it), and the <paramref name="top"/> likeliest tokens.
    /// </summary>
    private TokenLogprob Logprob(ReadOnlySpan<float> logits, int token, int top)
    {
        var max = float.NegativeInfinity;
        foreach (var l in logits)
        {
            max = Math.Max(max, l);
        }

        double sum = 0;
        foreach (var l in logits)
        {
            sum += Math.Exp(l - max);
        }

        var logZ = max + (float)Math.Log(sum);
        var candidates = new List<TokenCandidate>(top);
        if (top > 0)
        {
            // A small sorted list beats sorting the whole vocabulary.
            var best = new List<(float Logit, int Token)>(top + 1);
            for (var t = 0; t < logits.Length; t++)
            {
                if (best.Count == top && logits[t] <= best[^1].Logit)
                {
                    continue;
                }

                var logit = logits[t];
                var at = best.FindIndex(b => logit > b.Logit);
                best.Insert(at < 0 ? best.Count : at, (logits[t], t));
                if (best.Count > top)
                {
                    best.RemoveAt(top);
                }
            }

            candidates.AddRange(best.Select(b => Candidate(b.Token, b.Logit - logZ)));
        }

        var chosen = Candidate(token, logits[token] - logZ);
        return new TokenLogprob(chosen.Token, chosen.Logprob, chosen.Bytes, candidates);
    }

    private TokenCandidate Candidate(int token, float logprob)
    {
        var length = _model.TokenToPiece(token, _pieceBuffer);
        var bytes = _pieceBuffer.AsSpan(0, length).ToArray();
        return new TokenCandidate(System.Text.Encoding.UTF8.GetString(bytes), logprob, bytes);
    }

    /// <summary>
    /// Records the request as spans below the caller's: the whole generation, and its queue wait, prompt evaluation
    /// and generation, each with its real start and end. Spans are started and stopped here at once, on the decode
    /// thread, so no Activity.Current leaks between requests.
    /// </summary>
    private void Trace(GenerationSession session, GenerationUsage usage, FinishReason reason, DateTimeOffset finished)
    {
        var source = InferenceDiagnostics.ActivitySource;
        if (!source.HasListeners())
        {
            return;
        }

        var first = session.FirstTokenAt == default ? finished : session.FirstTokenAt;
        using var root = source.StartActivity("edgeserver.generate", ActivityKind.Internal, session.Parent, startTime: session.QueuedAt);
        if (root is null)
        {
            return;
        }

        root.SetTag("gen_ai.request.model", Id);
        root.SetTag("gen_ai.usage.input_tokens", usage.PromptTokens);
        root.SetTag("gen_ai.usage.output_tokens", usage.CompletionTokens);
        root.SetTag("edgeserver.prompt.cached_tokens", usage.CachedPromptTokens);
        root.SetTag("gen_ai.response.finish_reasons", reason.Name());
        Child(root, "edgeserver.queue", session.QueuedAt, session.AdmittedAt);
        Child(root, "edgeserver.prompt", session.AdmittedAt, first).SetTag("edgeserver.prompt.evaluated_tokens", usage.PromptTokens - usage.CachedPromptTokens);
        Child(root, "edgeserver.generation", first, finished).SetTag("gen_ai.usage.output_tokens", usage.CompletionTokens);
        root.SetEndTime(finished.UtcDateTime);

        static Activity Child(Activity parent, string name, DateTimeOffset start, DateTimeOffset end)
        {
            var child = InferenceDiagnostics.ActivitySource.StartActivity(name, ActivityKind.Internal, parent.Context, startTime: start)!;
            child.SetEndTime(end.UtcDateTime);
            child.Stop();
            return child;
        }
    }

    private void Release(Slot slot, Exception? error)
    {
        if (slot.Session is { } session)
        {
            session.Writer.TryComplete(error);

            // A grammar step still running keeps counting against admission until it ends, so a client that
            // repeats a costly request meets 429 instead of piling up steps that burn the cores.
            if (slot.Sampling is null)
            {
                ReturnPlaces(1);
            }
            else
            {
                slot.Sampling.ContinueWith(_ => ReturnPlaces(1), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        slot.Session = null;
        slot.PendingToken = -1;
        slot.BatchIndex = -1;
        if (slot.Sampling is { } running)
        {
            // The step cannot be interrupted: its sampler and logits go with it and are freed when it ends.
            var sampler = slot.Sampler;
            Interlocked.Increment(ref _orphans);
            running.ContinueWith(_ =>
            {
                sampler?.Dispose();
                Interlocked.Decrement(ref _orphans);
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            slot.Sampling = null;
            slot.LogitsCopy = null;
        }
        else
        {
            slot.Sampler?.Dispose();
        }

        slot.Sampler = null;
    }

    /// <summary>
    /// Ends one request with <paramref name="error"/> and frees its slot; its KV is dropped, since a failure may
    /// have left it half-written. The other slots go on.
    /// </summary>
    private void FailSlot(Slot slot, Exception error)
    {
        if (error is not SamplingBudgetExceededException)
        {
            LogSlotFailed(_logger, error, Id, slot.Id);
        }

        if (_memory != IntPtr.Zero)
        {
            NativeMethods.llama_memory_seq_rm(_memory, slot.Id, -1, -1);
        }

        slot.Cached.Clear();
        Release(slot, error is InferenceException ? error : new InferenceException($"Generation failed: {error.Message}", error));
    }

    private void Drop(GenerationSession waiting, Exception? error)
    {
        if (waiting.TryDrop(error))
        {
            ReturnPlaces(1);
        }
    }

    private void EndRunning(Exception error, bool queuedToo)
    {
        foreach (var slot in _slots)
        {
            Release(slot, error);
        }

        while (queuedToo && _queue.Reader.TryRead(out var waiting))
        {
            if (!ReferenceEquals(waiting, GenerationSession.Wakeup))
            {
                Drop(waiting, error);
            }
        }
    }

    private void FailAll(Exception error)
    {
        foreach (var slot in _slots)
        {
            Release(slot, error);
        }

        _queue.Writer.TryComplete();
        while (_queue.Reader.TryRead(out var waiting))
        {
            if (!ReferenceEquals(waiting, GenerationSession.Wakeup))
            {
                Drop(waiting, error);
            }
        }
    }

    private static int Add(ref LlamaBatch batch, int token, int position, int sequence, bool logits)
    {
        var i = batch.NTokens;
        batch.Token[i] = token;
        batch.Pos[i] = position;
        batch.NSeqId[i] = 1;
        batch.SeqId[i][0] = sequence;
        batch.Logits[i] = (sbyte)(logits ? 1 : 0);
        batch.NTokens = i + 1;
        return i;
    }

    private static int CommonPrefix(List<int> cached, int[] prompt)
    {
        var n = Math.Min(cached.Count, prompt.Length);
        var i = 0;
        while (i < n && cached[i] == prompt[i])
        {
            i++;
        }

        return i;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte ShouldAbort(IntPtr flag) => (byte)(*(int*)flag != 0 ? 1 : 0);

    /// <summary>
    /// Grammar steps of ended requests that are still running. They hold samplers that read the model's
    /// vocabulary, so the model must outlive them.
    /// </summary>
    public bool HasRunningSteps => Volatile.Read(ref _orphans) > 0;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        *_abortFlag = 1;
        Wake();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }

        _batch.Dispose();
        _threadPool.Dispose();
        _context.Dispose();
        NativeMemory.Free(_abortFlag);
        _stopping.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(EventId = EventIds.SchedulerStarted, Level = LogLevel.Information, Message = "Model {Model}: {Slots} slots of {ContextPerSlot} tokens, batch {BatchSize}, {Threads} threads ({ThreadMode})")]
    private static partial void LogStarted(ILogger logger, string model, int slots, int contextPerSlot, int batchSize, int threads, string threadMode);

    [LoggerMessage(EventId = EventIds.ThreadsChanged, Level = LogLevel.Information, Message = "Model {Model}: decoding with {Threads} threads (was {PreviousThreads}): {Reason}; median step time per count: {StepTimes}")]
    private static partial void LogThreadsChanged(ILogger logger, string model, int threads, int previousThreads, ThreadChangeReason reason, string stepTimes);

    [LoggerMessage(EventId = EventIds.DecodeFailed, Level = LogLevel.Error, Message = "Model {Model}: llama_decode returned {Status} for a batch of {Tokens} tokens")]
    private static partial void LogDecodeFailed(ILogger logger, string model, int status, int tokens);

    [LoggerMessage(EventId = EventIds.DecodeLoopStopped, Level = LogLevel.Critical, Message = "Model {Model}: the decode loop stopped")]
    private static partial void LogLoopFailed(ILogger logger, Exception exception, string model);

    [LoggerMessage(EventId = EventIds.SlotFailed, Level = LogLevel.Error, Message = "Model {Model}: slot {Slot} failed; its request ends, the others go on")]
    private static partial void LogSlotFailed(ILogger logger, Exception exception, string model, int slot);

    [LoggerMessage(EventId = EventIds.DecodeLoopFailed, Level = LogLevel.Error, Message = "Model {Model}: the decode loop failed (attempt {Attempt}); running requests end and the context is made anew")]
    private static partial void LogLoopError(ILogger logger, Exception exception, string model, int attempt);

    [LoggerMessage(EventId = EventIds.ContextRecreated, Level = LogLevel.Warning, Message = "Model {Model}: a new llama_context replaces the old one")]
    private static partial void LogContextRecreated(ILogger logger, string model);

    [LoggerMessage(EventId = EventIds.SamplingOverBudget, Level = LogLevel.Warning, Message = "Model {Model}: sampling one token took longer than {BudgetSeconds} s; that request ends")]
    private static partial void LogSamplingOverBudget(ILogger logger, string model, double budgetSeconds);
}
