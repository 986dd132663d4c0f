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
    private readonly SafeLlamaContextHandle _context;
    private readonly SafeLlamaBatchHandle _batch;
    private readonly IntPtr _memory;
    private readonly Slot[] _slots;
    private readonly Channel<GenerationSession> _queue;
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stopping = new();
    private readonly int* _abortFlag;
    private readonly byte[] _pieceBuffer = new byte[256];
    private readonly int _admissionLimit;
    private int _inFlight; // queued + running; admission refuses beyond slots + queue capacity
    private long _promptTokensEvaluated;
    private int _disposed;

    private readonly InferenceMetrics? _metrics;
    private readonly TimeProvider _clock;

    public ModelScheduler(string id, LlamaModel model, SchedulerOptions options, ILogger logger, InferenceMetrics? metrics = null, TimeProvider? clock = null)
    {
        Id = id;
        _model = model;
        _logger = logger;
        _metrics = metrics;
        _clock = clock ?? TimeProvider.System;
        var perSlot = Math.Min(options.ContextPerSlot, Math.Max(model.TrainingContextLength, 256));
        var parameters = NativeMethods.llama_context_default_params();
        parameters.NCtx = (uint)(perSlot * options.Slots);
        parameters.NSeqMax = (uint)options.Slots;
        parameters.NBatch = (uint)options.BatchSize;
        parameters.NUbatch = (uint)Math.Min(options.BatchSize, 512);
        var threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        parameters.NThreads = threads;
        parameters.NThreadsBatch = threads;
        parameters.KvUnified = 0;
        _context = NativeMethods.llama_init_from_model(model.Handle, parameters);
        if (_context.IsInvalid)
        {
            _context.Dispose();
            throw new ModelLoadException(model.Path, $"llama.cpp could not create a context of {parameters.NCtx} tokens for {options.Slots} slots (not enough memory?). Lower ContextPerSlot or Slots.");
        }

        _abortFlag = (int*)NativeMemory.AllocZeroed(sizeof(int));
        NativeMethods.llama_set_abort_callback(_context, &ShouldAbort, (IntPtr)_abortFlag);
        _memory = NativeMethods.llama_get_memory(_context);
        ContextPerSlot = (int)NativeMethods.llama_n_ctx_seq(_context);
        BatchCapacity = (int)NativeMethods.llama_n_batch(_context);
        _batch = SafeLlamaBatchHandle.Create(BatchCapacity, 1);
        _slots = Enumerable.Range(0, options.Slots).Select(i => new Slot(i)).ToArray();
        _admissionLimit = options.Slots + Math.Max(0, options.QueueCapacity);
        _queue = Channel.CreateUnbounded<GenerationSession>(new UnboundedChannelOptions { SingleReader = true });
        _thread = new Thread(Run) { IsBackground = true, Name = $"decode:{id}" };
        _thread.Start();
        LogStarted(logger, id, options.Slots, ContextPerSlot, BatchCapacity, threads);
    }

    public string Id { get; }

    public LlamaModel Model => _model;

    public int ContextPerSlot { get; }

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

        return new SchedulerSnapshot(Id, _slots.Length, busy, Math.Max(0, Volatile.Read(ref _inFlight) - busy), cells, (long)_model.SizeBytes);
    }

    /// <summary>Queues a tokenized request; throws <see cref="ServerBusyException"/> when the queue is full.</summary>
    public GenerationSession Enqueue(GenerationRequest request, int[] prompt, CancellationToken cancellationToken, string? grammar = null, bool renderSpecialTokens = false)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0 || _stopping.IsCancellationRequested, this);
        if (prompt.Length == 0)
        {
            throw new InvalidGenerationParameterException("messages", "The prompt is empty after tokenization.");
        }

        var room = ContextPerSlot - prompt.Length;
        if (request.MaxTokens is { } requested ? requested > room : room < 1)
        {
            throw new ContextLengthExceededException(prompt.Length, request.MaxTokens ?? 1, ContextPerSlot);
        }

        if (Interlocked.Increment(ref _inFlight) > _admissionLimit)
        {
            Interlocked.Decrement(ref _inFlight);
            throw new ServerBusyException(Id, TimeSpan.FromSeconds(1));
        }

        var session = new GenerationSession(Id, request, prompt, request.MaxTokens ?? room, cancellationToken) { QueuedAt = _clock.GetUtcNow(), Grammar = grammar, RenderSpecialTokens = renderSpecialTokens };
        if (!_queue.Writer.TryWrite(session))
        {
            Interlocked.Decrement(ref _inFlight);
            throw new ObjectDisposedException(nameof(ModelScheduler), $"The model '{Id}' is shutting down.");
        }

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
    }

    private readonly Lock _endLock = new();
    private Exception? _endRequested;

    private void Run()
    {
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                if (!_slots.Any(s => s.Session is not null))
                {
                    // Idle: block until a request arrives.
                    if (!_queue.Reader.WaitToReadAsync(_stopping.Token).AsTask().GetAwaiter().GetResult())
                    {
                        break;
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
                    EndRunning(end);
                }

                Admit();
                Step();
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            LogLoopFailed(_logger, e, Id);
            FailAll(new InferenceException($"The decode loop of '{Id}' stopped: {e.Message}", e));
            return;
        }

        FailAll(new InferenceException($"The model '{Id}' is shutting down."));
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
                session.Writer.TryComplete();
                Interlocked.Decrement(ref _inFlight);
                continue;
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
        // At least the last prompt token is evaluated again, to get logits for the first sampled token.
        common = Math.Min(common, session.Prompt.Length - 1);
        if (!NativeMethods.llama_memory_seq_rm(_memory, slot.Id, common, -1))
        {
            NativeMethods.llama_memory_seq_rm(_memory, slot.Id, -1, -1);
            common = 0;
        }

        slot.Cached.RemoveRange(common, slot.Cached.Count - common);
        slot.Session = session;
        session.AdmittedAt = _clock.GetUtcNow();
        slot.PromptPosition = common;
        slot.CachedPromptTokens = common;
        slot.Generated = 0;
        slot.PendingToken = -1;
        slot.Decoder = new Utf8StreamDecoder();
        slot.Stops = new StopSequenceMatcher(session.Request.Stop);
        slot.PendingLogprobs.Clear();
        slot.Sampler = new TokenSampler(session.Request.Sampling, session.Request.LogitBias, session.Grammar, _model.Vocab, _model.VocabularySize, ContextPerSlot);
    }

    private void Step()
    {
        ref var batch = ref _batch.Batch;
        batch.NTokens = 0;
        foreach (var slot in _slots)
        {
            slot.BatchIndex = -1;
            if (slot.Session is { IsCancelled: true })
            {
                Release(slot, error: null);
            }
        }

        // One token for each generating slot first, so running streams keep flowing.
        foreach (var slot in _slots)
        {
            if (slot.Session is not null && slot.PendingToken >= 0)
            {
                slot.BatchIndex = Add(ref batch, slot.PendingToken, slot.Cached.Count, slot.Id, logits: true);
                slot.Cached.Add(slot.PendingToken);
                slot.PendingToken = -1;
            }
        }

        // Then prompt chunks, as far as the batch allows.
        foreach (var slot in _slots)
        {
            if (slot.Session is not { } session || slot.PromptPosition >= session.Prompt.Length)
            {
                continue;
            }

            var take = Math.Min(BatchCapacity - batch.NTokens, session.Prompt.Length - slot.PromptPosition);
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
            return;
        }

        var status = NativeMethods.llama_decode(_context, batch);
        if (status != 0)
        {
            var error = new DecodeException(status);
            LogDecodeFailed(_logger, Id, status, batch.NTokens);
            foreach (var slot in _slots)
            {
                if (slot.Session is not null)
                {
                    // The KV of a failed batch is undefined: forget what this slot cached.
                    NativeMethods.llama_memory_seq_rm(_memory, slot.Id, -1, -1);
                    slot.Cached.Clear();
                    Release(slot, error);
                }
            }

            if (status == 2)
            {
                throw new OperationCanceledException();
            }

            return;
        }

        foreach (var slot in _slots)
        {
            if (slot.BatchIndex >= 0 && slot.Session is not null)
            {
                var token = slot.Sampler!.Sample(_context, slot.BatchIndex);
                if (slot.Session.Request.Logprobs && (slot.Session.Request.IgnoreEos || !_model.IsEndOfGeneration(token)))
                {
                    slot.PendingLogprobs.Add(Logprob(slot.BatchIndex, token, slot.Session.Request.TopLogprobs));
                }

                Accept(slot, token);
            }
        }
    }

    private void Accept(Slot slot, int token)
    {
        var session = slot.Session!;
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
            session.Writer.TryWrite(new GenerationChunk(text) { Logprobs = TakeLogprobs(slot) });
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
        session.Writer.TryWrite(new GenerationChunk(tail, reason, usage, timings) { Logprobs = TakeLogprobs(slot) });
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
    private TokenLogprob Logprob(int batchIndex, int token, int top)
    {
        var logits = new ReadOnlySpan<float>(NativeMethods.llama_get_logits_ith(_context, batchIndex), _model.VocabularySize);
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
        root.SetTag("gen_ai.response.finish_reasons", reason == FinishReason.Length ? "length" : "stop");
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
            Interlocked.Decrement(ref _inFlight);
        }

        slot.Session = null;
        slot.PendingToken = -1;
        slot.BatchIndex = -1;
        slot.Sampler?.Dispose();
        slot.Sampler = null;
    }

    private void EndRunning(Exception error)
    {
        foreach (var slot in _slots)
        {
            Release(slot, error);
        }

        while (_queue.Reader.TryRead(out var waiting))
        {
            if (!ReferenceEquals(waiting, GenerationSession.Wakeup))
            {
                waiting.Writer.TryComplete(error);
                Interlocked.Decrement(ref _inFlight);
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
                waiting.Writer.TryComplete(error);
                Interlocked.Decrement(ref _inFlight);
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

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        *_abortFlag = 1;
        _stopping.Cancel();
        _thread.Join();
        _batch.Dispose();
        _context.Dispose();
        NativeMemory.Free(_abortFlag);
        _stopping.Dispose();
    }

    private sealed class Slot(int id)
    {
        public int Id { get; } = id;

        public GenerationSession? Session { get; set; }

        /// <summary>Tokens whose KV this slot's sequence holds, in order.</summary>
        public List<int> Cached { get; } = [];

        public int PromptPosition { get; set; }

        public int CachedPromptTokens { get; set; }

        public int Generated { get; set; }

        /// <summary>The last sampled token, to be decoded in the next step; -1 when none.</summary>
        public int PendingToken { get; set; } = -1;

        public int BatchIndex { get; set; } = -1;

        public TokenSampler? Sampler { get; set; }

        public Utf8StreamDecoder? Decoder { get; set; }

        public StopSequenceMatcher? Stops { get; set; }

        /// <summary>Log probabilities of tokens whose text has not been written yet.</summary>
        public List<TokenLogprob> PendingLogprobs { get; } = [];
    }

    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Model {Model}: {Slots} slots of {ContextPerSlot} tokens, batch {BatchSize}, {Threads} threads")]
    private static partial void LogStarted(ILogger logger, string model, int slots, int contextPerSlot, int batchSize, int threads);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Error, Message = "Model {Model}: llama_decode returned {Status} for a batch of {Tokens} tokens")]
    private static partial void LogDecodeFailed(ILogger logger, string model, int status, int tokens);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Critical, Message = "Model {Model}: the decode loop failed")]
    private static partial void LogLoopFailed(ILogger logger, Exception exception, string model);
}
