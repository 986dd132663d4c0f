using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using EdgeServer.Inference.Diagnostics;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Scheduling;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference;

/// <summary>
/// The in-process engine: a catalog of models, each probed at start-up (<see cref="ModelProber"/>: in a child
/// process when the host gives a <see cref="EngineOptions.ProbeCommand"/>) and loaded on first use into its own
/// <see cref="ModelScheduler"/>. Thread-safe.
/// </summary>
public sealed partial class InferenceEngine : IInferenceEngine, IDisposable
{
    private readonly EngineOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, ModelDescriptor> _descriptors = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ModelSource> _sources = new(StringComparer.Ordinal);
    private readonly ModelProber _prober;
    private readonly Pool.ModelPool _pool;
    private readonly SemaphoreSlim _embeddingRoom = new(1, 1);
    private readonly ConcurrentDictionary<ModelScheduler, Lazy<Embedder>> _embedders = new();
    private readonly Lock _catalogLock = new();
    private readonly Lock _rescanLock = new();
    private readonly HashSet<string> _fromFolder = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long Length, DateTime Written)> _stamps = new(StringComparer.Ordinal);
    private readonly HashSet<string> _clashesTold = new(StringComparer.Ordinal);
    private readonly Models.ModelsFolderWatcher? _watcher;
    private volatile string[] _order;
    private volatile Dictionary<string, string> _names;
    private readonly InferenceMetrics _metrics;
    private readonly ConcurrentDictionary<string, string> _faults = new(StringComparer.Ordinal);
    private int _disposed;
    private volatile bool _shuttingDown;

    public InferenceEngine(EngineOptions options, ILoggerFactory loggerFactory, IMeterFactory? meterFactory = null, TimeProvider? clock = null)
    {
        ContextParameters.CheckThreads(options.Scheduler);
        _options = options;
        _metrics = new InferenceMetrics(meterFactory, LoadedSnapshots);
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<InferenceEngine>();
        Runtime = LlamaRuntime.Initialize(options.NativeDirectory, loggerFactory.CreateLogger("EdgeServer.Inference.LlamaCpp"));
        _prober = new ModelProber(options, loggerFactory.CreateLogger<ModelProber>());
        var models = options.ModelsDirectory is null ? options.Models : ModelCatalog.Discover(options.Models, directory: null);
        _names = Names(models);
        if (options.ModelsDirectory is { } folder)
        {
            // The folder's files after the named models; one whose name is taken is not served, as in a rescan.
            var configured = models.Select(m => Path.GetFullPath(m.Path)).ToHashSet(StringComparer.Ordinal);
            var found = new List<ModelSource>(models);
            foreach (var path in ModelCatalog.FolderFiles(folder).Where(p => !configured.Contains(p)))
            {
                var id = ModelCatalog.IdFromPath(path);
                if (!_names.TryAdd(id, id))
                {
                    _clashesTold.Add(path);
                    LogNameTaken(_logger, path, id);
                    continue;
                }

                found.Add(new ModelSource(id, path));
                _fromFolder.Add(id);
            }

            models = found;
        }

        foreach (var source in models)
        {
            _sources[source.Id] = source;
        }

        foreach (var source in models)
        {
            if (SchedulerFor(source).Problem() is { } problem)
            {
                throw new ArgumentException($"Model '{source.Id}': {problem}.", nameof(options));
            }
        }

        // Probe children are mostly process start-up; a few at a time keep start-up short on small boards.
        var descriptors = new ModelDescriptor[models.Count];
        Parallel.For(0, descriptors.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Clamp(Environment.ProcessorCount, 1, 4) },
            i => descriptors[i] = Check(models[i]));
        foreach (var descriptor in descriptors)
        {
            _descriptors[descriptor.Id] = descriptor;
            if (descriptor.Status == ModelStatus.Unavailable)
            {
                LogModelUnavailable(_logger, descriptor.Id, descriptor.Path, descriptor.Error ?? "unknown");
            }
            else
            {
                LogModelFound(_logger, descriptor.Id, descriptor.Path, descriptor.Architecture ?? "?", descriptor.Quantization ?? "?");
            }
        }

        _order = models.Select(m => m.Id).ToArray();
        _pool = new Pool.ModelPool(_order, options.MemoryBudget?.Bytes, options.KeepAlive, Footprint, Load, Unload, clock ?? TimeProvider.System, loggerFactory.CreateLogger<Pool.ModelPool>());
        _metrics.Watch(_pool);

        // A ceiling set while a model loaded may have missed it: the loaded model is visible to the setter from now.
        _pool.Loaded += (id, _) =>
        {
            if (GetLoadedScheduler(id) is { } scheduler)
            {
                ApplyCeiling(scheduler);
            }
        };
        if (options.MemoryBudget is { } budget)
        {
            LogBudget(_logger, budget.Derivation);
        }

        if (options.ModelsDirectory is { } watched && options.WatchModelsDirectory)
        {
            _watcher = new Models.ModelsFolderWatcher(watched, RescanModelsDirectory, clock ?? TimeProvider.System, loggerFactory.CreateLogger<Models.ModelsFolderWatcher>());
        }
    }

    /// <summary>Probes a model file and remembers which version of the file the verdict is for.</summary>
    private ModelDescriptor Check(ModelSource source)
    {
        var file = new FileInfo(source.Path);
        var stamp = file.Exists ? (file.Length, file.LastWriteTimeUtc) : (-1L, DateTime.MinValue);
        var descriptor = _prober.Check(source);
        lock (_catalogLock)
        {
            _stamps[source.Id] = stamp;
        }

        return descriptor;
    }

    /// <inheritdoc/>
    public void RescanModelsFolder() => RescanModelsDirectory();

    /// <summary>
    /// Brings the catalog in line with the models folder: a new *.gguf is probed and served; a model whose file is
    /// gone leaves the catalog (new requests get 404) and is freed once its requests have finished; a file that
    /// changed is taken out the same way and probed again as a new model. Models named in the configuration are
    /// never touched. Runs one at a time (the watcher calls it after the folder has been quiet for a moment).
    /// </summary>
    internal void RescanModelsDirectory()
    {
        if (_options.ModelsDirectory is not { } folder || _disposed != 0)
        {
            return;
        }

        lock (_rescanLock)
        {
            var present = ModelCatalog.FolderFiles(folder).ToHashSet(StringComparer.Ordinal);
            string[] folderModels;
            lock (_catalogLock)
            {
                folderModels = _fromFolder.ToArray();
            }

            foreach (var id in folderModels)
            {
                var path = Path.GetFullPath(_sources[id].Path);
                var file = new FileInfo(path);
                bool changed;
                lock (_catalogLock)
                {
                    changed = file.Exists && _stamps.TryGetValue(id, out var stamp) && stamp != (file.Length, file.LastWriteTimeUtc);
                }

                if (!present.Contains(path))
                {
                    Retire(id);
                }
                else if (changed)
                {
                    Replace(id, _sources[id]);
                }

                present.Remove(path);
            }

            var configured = _options.Models.Select(m => Path.GetFullPath(m.Path)).ToHashSet(StringComparer.Ordinal);
            foreach (var path in present.Where(p => !configured.Contains(p)).Order(StringComparer.Ordinal))
            {
                if (_disposed != 0)
                {
                    return;
                }

                var id = ModelCatalog.IdFromPath(path);
                if (_names.ContainsKey(id))
                {
                    if (_clashesTold.Add(path))
                    {
                        LogNameTaken(_logger, path, id);
                    }

                    continue;
                }

                var source = new ModelSource(id, path);
                var descriptor = Check(source);

                // In the pool before its name is known, so a request that finds the name finds the entry.
                _pool.Add(id);
                lock (_catalogLock)
                {
                    _descriptors[id] = descriptor;
                    _sources[id] = source;
                    _fromFolder.Add(id);
                    _names = new Dictionary<string, string>(_names, StringComparer.Ordinal) { [id] = id };
                    _order = [.. _order, id];
                }

                if (descriptor.Status == ModelStatus.Unavailable)
                {
                    LogModelUnavailable(_logger, id, path, descriptor.Error ?? "unknown");
                }
                else
                {
                    LogModelAdded(_logger, id, path, descriptor.Architecture ?? "?", descriptor.Quantization ?? "?");
                }
            }

            _clashesTold.IntersectWith(present);
        }
    }

    /// <summary>
    /// A folder model whose file changed: probed again and served as a new model under the same name, with no moment
    /// in which the name is unknown; the old one is freed once its requests have finished.
    /// </summary>
    private void Replace(string id, ModelSource old)
    {
        // A new instance: a load of the old file still under way must not publish over the new description.
        var source = old with { };
        var descriptor = Check(source);
        lock (_catalogLock)
        {
            _sources[id] = source;
            _descriptors[id] = descriptor;
        }

        _pool.Replace(id);
        LogModelReplaced(_logger, id, source.Path, descriptor.Status == ModelStatus.Unavailable ? descriptor.Error ?? "unavailable" : "servable");
    }

    /// <summary>Takes a folder model out of the catalog; the pool frees it once its requests have finished.</summary>
    private void Retire(string id)
    {
        // Out of the pool first: a load starting now finds no entry rather than a half-removed catalog.
        _pool.Remove(id);
        lock (_catalogLock)
        {
            _fromFolder.Remove(id);
            _stamps.Remove(id);
            var names = new Dictionary<string, string>(_names, StringComparer.Ordinal);
            names.Remove(id);
            _names = names;
            _order = _order.Where(o => o != id).ToArray();
            _descriptors.TryRemove(id, out _);
            _sources.TryRemove(id, out _);
        }

        // A stopped decode loop of this model is not reloaded: it is no longer the server's to serve.
        _faults.TryRemove(id, out _);
        LogModelRemoved(_logger, id);
    }

    public LlamaRuntimeInfo Runtime { get; }

    public string RuntimeVersion => Runtime.Version;

    public IReadOnlyList<ModelDescriptor> ListModels() => _order.Select(TryDescribe).OfType<ModelDescriptor>().ToArray();

    public ModelDescriptor? FindModel(string id) => Resolve(id) is { } known ? TryDescribe(known) : null;

    /// <summary>The model's description, or null when it left the catalog meanwhile.</summary>
    private ModelDescriptor? TryDescribe(string id)
    {
        try
        {
            return _descriptors.ContainsKey(id) ? Describe(id) : null;
        }
        catch (Exception e) when (e is KeyNotFoundException or ModelNotFoundException)
        {
            return null;
        }
    }

    /// <summary>The model a name stands for: its id, or an alias of it; null when none.</summary>
    private string? Resolve(string name) => _names.GetValueOrDefault(name);

    /// <summary>Ids and aliases; an alias may not be another model's id or alias.</summary>
    private static Dictionary<string, string> Names(IEnumerable<ModelSource> sources)
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var source in sources)
        {
            foreach (var name in source.Settings.Aliases.Prepend(source.Id))
            {
                if (!names.TryAdd(name, source.Id) && names[name] != source.Id)
                {
                    throw new ArgumentException($"The name '{name}' is used by both '{names[name]}' and '{source.Id}'; give each model its own names.");
                }
            }
        }

        return names;
    }

    /// <summary>The engine's scheduler settings with the model's own.</summary>
    private SchedulerOptions SchedulerFor(ModelSource source) => source.Settings.Apply(_options.Scheduler);

    private SchedulerOptions SchedulerFor(string id) => SchedulerFor(_sources[id]);

    private MmapMode MmapFor(string id) => _sources[id].Settings.UseMmap ?? _options.UseMmap;

    // 0: none. An int, not an int?, so that reads are whole on a 32-bit runtime too.
    private int _threadCeiling;

    public int? ThreadCeiling
    {
        get => Volatile.Read(ref _threadCeiling) is > 0 and var ceiling ? ceiling : null;
        set
        {
            if (value is < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "A thread ceiling is at least 1.");
            }

            Volatile.Write(ref _threadCeiling, value ?? 0);
            foreach (var scheduler in _pool.LoadedSchedulers())
            {
                ApplyCeiling(scheduler);
            }
        }
    }

    public (int InUse, int Limit) DecodeThreads
    {
        get
        {
            var loaded = _pool.LoadedSchedulers();
            var limit = loaded.Count == 0 ? ContextParameters.ThreadLimit(_options.Scheduler) : loaded.Max(s => s.ThreadLimit);
            var inUse = loaded.Count == 0 ? Math.Min(limit, ThreadCeiling ?? limit) : loaded.Max(s => s.Threads);
            return (inUse, limit);
        }
    }

    /// <summary>The ceiling as it is now onto one scheduler (also called when a model has just loaded, so none is missed).</summary>
    private void ApplyCeiling(ModelScheduler scheduler) => scheduler.MaxThreads = ThreadCeiling ?? int.MaxValue;

    public MemoryStatus Memory => new(_pool.Budget, _pool.Used, _options.MemoryBudget?.Derivation);

    /// <summary>The catalog's view of a model with its state in the pool.</summary>
    private ModelDescriptor Describe(string id)
    {
        var descriptor = _descriptors[id];
        if (descriptor.Status == ModelStatus.Unavailable)
        {
            return _sources.TryGetValue(id, out var unavailable) ? descriptor with { Aliases = unavailable.Settings.Aliases } : descriptor;
        }

        var state = _pool.State(id);
        var footprint = Footprint(id);
        var settings = _sources[id].Settings;
        return descriptor with
        {
            Aliases = settings.Aliases,
            Sampling = settings.Sampling ?? SamplingParameters.Default,
            Status = state.State switch
            {
                Pool.PoolModelState.Loaded => ModelStatus.Loaded,
                Pool.PoolModelState.Loading or Pool.PoolModelState.Unloading => ModelStatus.Loading,
                _ => ModelStatus.Available,
            },
            Error = state.State == Pool.PoolModelState.Unloaded && state.LastError is { } error ? $"The last load failed: {error}" : descriptor.Error,
            MemoryBytes = state.Bytes > 0 ? state.Bytes : footprint.Bytes,
            MemoryParts = footprint.Parts,
            ExpiresAt = state.ExpiresAt,
            Requests = state.State == Pool.PoolModelState.Loaded ? GetLoadedScheduler(id)?.InFlight ?? 0 : 0,
        };
    }

    /// <summary>Loads a model now (it would otherwise load on first use); its keep-alive starts when this returns.</summary>
    public async Task LoadAsync(string id, TimeSpan? keepAlive = null, CancellationToken cancellationToken = default)
    {
        using var lease = await AcquireAsync(id, keepAlive, cancellationToken);
    }

    public Task<bool> UnloadAsync(string id, bool wait, CancellationToken cancellationToken) =>
        Resolve(id) is { } known ? _pool.UnloadAsync(known, wait, cancellationToken) : throw new ModelNotFoundException(id);

    public Task<bool> UnloadWhenIdleAsync(string id, CancellationToken cancellationToken) =>
        Resolve(id) is { } known ? _pool.UnloadWhenIdleAsync(known, cancellationToken) : throw new ModelNotFoundException(id);

    /// <summary>The running scheduler of a loaded model, or null; for counters and diagnostics.</summary>
    internal ModelScheduler? GetLoadedScheduler(string id) => _pool.LoadedSchedulers().FirstOrDefault(s => s.Id == id);

    /// <summary>Prompt tokens a model has run through llama_decode so far (prefix-cache hits excluded).</summary>
    public long PromptTokensEvaluated(string id) => GetLoadedScheduler(id)?.PromptTokensEvaluated ?? 0;

    /// <summary>For the gauges, which a listener may read while the constructor has not made the pool yet.</summary>
    private List<SchedulerSnapshot> LoadedSnapshots() => (Pool.ModelPool?)_pool is { } pool ? pool.LoadedSchedulers().Select(s => s.Snapshot()).ToList() : [];

    public async Task<IGenerationSession> StartAsync(GenerationRequest request, CancellationToken cancellationToken)
    {
        ThrowIfShuttingDown();
        GenerationRequestValidator.Validate(request, _options.Limits);

        // The lease keeps the model loaded until the choices are queued; from then on the queue does.
        using var lease = await AcquireAsync(request.Model, request.KeepAlive, cancellationToken);
        var scheduler = lease.Scheduler;
        GenerationRequestValidator.ForModel(request, scheduler.Model.VocabularySize);

        // Places first: a request the model has no room for costs no template rendering or grammar building.
        using var reservation = scheduler.Reserve(request.Choices);
        var prepared = Chat.PromptBuilder.Prepare(scheduler.Model, request, _options.Limits.MaxSchemaAlternatives);
        var sessions = new List<IGenerationSession>(request.Choices);
        var queued = new List<Scheduling.GenerationSession>(request.Choices);
        try
        {
            for (var i = 0; i < request.Choices; i++)
            {
                // Each choice samples on its own; a given seed s becomes s, s+1, ...
                var choice = i == 0 || request.Sampling.Seed is not { } seed ? request : request with { Sampling = request.Sampling with { Seed = unchecked(seed + (uint)i) } };
                var sampler = CreateSampler(scheduler, choice, prepared);
                Scheduling.GenerationSession session;
                try
                {
                    // After the grammar: a grammar llama.cpp refuses is named before the prompt's length.
                    var maxTokens = GenerationRequestValidator.ForContext(request, prepared.Tokens.Length, scheduler.ContextPerSlot, _options.Limits);
                    session = scheduler.Enqueue(reservation, choice, prepared.Tokens, maxTokens, sampler, cancellationToken, prepared.RenderSpecialTokens);
                }
                catch
                {
                    sampler.Dispose();
                    throw;
                }

                queued.Add(session);

                // Thinking is split off first, so calls are read from the answer alone.
                IGenerationSession read = prepared.Reasoning is { } reasoning ? new Chat.ReasoningSession(session, reasoning, prepared.ReasoningOpen) : session;
                sessions.Add(prepared.ToolSyntax is { } syntax ? new Chat.ToolCallSession(read, syntax, request.Tools) : read);
            }
        }
        catch
        {
            // Queued choices of a request that cannot start whole are cancelled; the loop frees their places.
            foreach (var session in queued)
            {
                session.Cancel();
            }

            throw;
        }

        return sessions.Count == 1 ? sessions[0] : new Scheduling.ChoicesSession(sessions);
    }

    public async Task<int> CountPromptTokensAsync(GenerationRequest request, CancellationToken cancellationToken)
    {
        ThrowIfShuttingDown();
        GenerationRequestValidator.Validate(request, _options.Limits);
        using var lease = await AcquireAsync(request.Model, request.KeepAlive, cancellationToken);
        GenerationRequestValidator.ForModel(request, lease.Scheduler.Model.VocabularySize);
        return Chat.PromptBuilder.Prepare(lease.Scheduler.Model, request, _options.Limits.MaxSchemaAlternatives).Tokens.Length;
    }

    /// <summary>
    /// The request's sampler chain and grammar, built here on the request's thread: a grammar llama.cpp refuses
    /// is this request's 400, never the decode loop's failure.
    /// </summary>
    private static TokenSampler CreateSampler(ModelScheduler scheduler, GenerationRequest request, Chat.PreparedPrompt prepared)
    {
        var model = scheduler.Model;
        try
        {
            return new TokenSampler(request.Sampling, request.LogitBias, prepared.Grammar, model.Vocab, model.VocabularySize, scheduler.ContextPerSlot, prepared.Trigger);
        }
        catch (GrammarRefusedException e)
        {
            var source = prepared.GrammarSource ?? GenerationField.ResponseFormat;
            throw new InvalidGenerationParameterException(source,
                n => $"The output grammar derived from '{n.Name(source)}' cannot be used: {e.Message}. A schema that refers to itself without consuming any text (e.g. a $ref to itself, or an anyOf whose first option is that $ref) cannot be enforced.");
        }
    }

    public async Task<EmbeddingResult> EmbedAsync(string model, IReadOnlyList<EmbeddingInput> inputs, CancellationToken cancellationToken)
    {
        ThrowIfShuttingDown();
        GenerationRequestValidator.ValidateEmbedding(inputs, _options.Limits);
        using var lease = await AcquireAsync(model, keepAlive: null, cancellationToken);
        var scheduler = lease.Scheduler;

        // An embedding takes a place among the model's slots and queue like a generation: one admission for both.
        using var reservation = scheduler.Reserve(1);
        if (!_embedders.ContainsKey(scheduler))
        {
            // The embedding context is made on first use; its memory counts against the budget from then on.
            await _embeddingRoom.WaitAsync(cancellationToken);
            try
            {
                if (!_embedders.ContainsKey(scheduler))
                {
                    var extra = MemoryEstimator.EstimateEmbedding(ReadLoadedFile(scheduler), scheduler.Options);
                    await _pool.GrowAsync(lease, extra.Total, "its embedding context", cancellationToken);
                    _embedders.TryAdd(scheduler, new Lazy<Embedder>(() => NewEmbedder(scheduler)));
                }
            }
            finally
            {
                _embeddingRoom.Release();
            }
        }

        var embedder = _embedders.GetOrAdd(scheduler, _ => new Lazy<Embedder>(() => NewEmbedder(scheduler))).Value;
        var tokens = new List<int[]>(inputs.Count);
        for (var i = 0; i < inputs.Count; i++)
        {
            var input = inputs[i];
            if (input.Tokens is { } given)
            {
                GenerationRequestValidator.Tokens(given, new FieldRef(GenerationField.EmbeddingInput, i), scheduler.Model.VocabularySize);
                tokens.Add(given.ToArray());
            }
            else
            {
                tokens.Add(scheduler.Model.Tokenize(input.Text ?? string.Empty, addSpecial: true, parseSpecial: false));
            }
        }

        var vectors = await embedder.EmbedAsync(tokens, cancellationToken);
        return new EmbeddingResult(vectors, tokens.Sum(t => t.Length), embedder.Dimensions);
    }

    public async Task<IReadOnlyList<TokenPiece>> TokenizeAsync(string model, string text, bool addSpecial, bool parseSpecial, CancellationToken cancellationToken)
    {
        using var lease = await AcquireAsync(model, keepAlive: null, cancellationToken);
        var m = lease.Scheduler.Model;
        var buffer = new byte[256];
        return m.Tokenize(text, addSpecial, parseSpecial)
            .Select(t => new TokenPiece(t, System.Text.Encoding.UTF8.GetString(buffer, 0, m.TokenToPiece(t, buffer, special: true))))
            .ToList();
    }

    public async Task<string> DetokenizeAsync(string model, IReadOnlyList<int> tokens, CancellationToken cancellationToken)
    {
        using var lease = await AcquireAsync(model, keepAlive: null, cancellationToken);
        var m = lease.Scheduler.Model;
        GenerationRequestValidator.Tokens(tokens, GenerationField.Tokens, m.VocabularySize);
        return m.Detokenize(tokens.ToArray());
    }

    /// <summary>Embeddings decode with the model's context size and the thread count its decode loop uses at the time.</summary>
    private static Embedder NewEmbedder(ModelScheduler scheduler) =>
        new(scheduler.Model, scheduler.Options.ContextPerSlot, () => scheduler.Threads, scheduler.Options.ThreadPoll);

    /// <summary>The header of a loaded model's file; the file may have left the models folder since the load.</summary>
    private static Gguf.GgufFile ReadLoadedFile(ModelScheduler scheduler)
    {
        try
        {
            return Gguf.GgufReader.Read(scheduler.Model.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or GgufFormatException)
        {
            throw new ModelUnavailableException(scheduler.Id, "its file was removed or changed while the request was on its way");
        }
    }

    private void ThrowIfShuttingDown()
    {
        if (_shuttingDown || _disposed != 0)
        {
            throw new ShuttingDownException();
        }
    }

    /// <summary>The model, loaded if needed within the memory budget, held in memory until the lease is disposed.</summary>
    private Task<Pool.ModelPool.Lease> AcquireAsync(string name, TimeSpan? keepAlive, CancellationToken cancellationToken)
    {
        if (Resolve(name) is not { } id || !_descriptors.TryGetValue(id, out var descriptor))
        {
            throw new ModelNotFoundException(name);
        }

        if (descriptor.Status == ModelStatus.Unavailable)
        {
            throw new ModelUnavailableException(id, descriptor.Error ?? "it could not be loaded");
        }

        return _pool.AcquireAsync(id, keepAlive, cancellationToken);
    }

    /// <summary>What a model will take in memory, from its file and this engine's settings (before it is loaded).</summary>
    private Pool.ModelFootprint Footprint(string id)
    {
        if (!_descriptors.TryGetValue(id, out var descriptor) || !_sources.TryGetValue(id, out var source))
        {
            throw new ModelNotFoundException(id); // it left the catalog meanwhile
        }

        var estimate = _estimates.GetOrAdd((source.Settings, descriptor.Path, descriptor.FileSize, descriptor.Created), key => new Lazy<MemoryEstimate?>(() =>
        {
            try
            {
                // Mapped or read as the load will do it, and repacked only when repacking is on.
                var file = Gguf.GgufReader.Read(key.Path);
                var mapped = WeightLoading.Plan(file, key.Settings.UseMmap ?? _options.UseMmap, _options.Repack, Runtime.CpuFeatures).Mmap;
                var cpu = new CpuRepackFeatures(Runtime.CpuFeatures);
                cpu = cpu with { Repack = cpu.Repack && _options.Repack };
                return MemoryEstimator.Estimate(file, key.Settings.Apply(_options.Scheduler), mapped, cpu);
            }
            catch (Exception e) when (e is InferenceException or IOException or UnauthorizedAccessException)
            {
                return null; // unreadable now (or gone): the load will say why
            }
        })).Value;
        return estimate is null
            ? new Pool.ModelFootprint(descriptor.FileSize, $"file {Pool.Sizes.Describe(descriptor.FileSize)}")
            : new Pool.ModelFootprint(estimate.Total, estimate.ToString());
    }

    private readonly ConcurrentDictionary<(ModelSettings Settings, string Path, long Length, DateTimeOffset Created), Lazy<MemoryEstimate?>> _estimates = new();

    /// <summary>Frees an idle model: its embedder, decode loop and weights.</summary>
    private void Unload(string id, ModelScheduler scheduler)
    {
        if (_embedders.TryRemove(scheduler, out var embedder) && embedder.IsValueCreated)
        {
            embedder.Value.Dispose();
        }

        scheduler.Dispose();
        scheduler.Model.Dispose();

        // Without this, the buffers just freed stay in malloc's arenas and each switch leaves the process larger.
        CAllocator.Trim();
    }

    private ModelScheduler Load(string id)
    {
        // The model as the catalog has it now; it may leave the catalog (its file removed) while it loads.
        if (!_sources.TryGetValue(id, out var source))
        {
            throw new ModelNotFoundException(id);
        }

        // The file may have changed since start-up: then it is checked again before llama.cpp loads it.
        var descriptor = _prober.Check(source);
        if (descriptor.Status == ModelStatus.Unavailable)
        {
            Publish(source, descriptor);
            LogModelUnavailable(_logger, id, descriptor.Path, descriptor.Error ?? "unknown");
            throw new ModelUnavailableException(id, descriptor.Error ?? "it could not be loaded");
        }

        var started = TimeProvider.System.GetTimestamp();
        LlamaModel? model = null;
        try
        {
            BeforeLoad?.Invoke(id);
            model = LlamaModel.Load(descriptor.Path, source.Settings.UseMmap ?? _options.UseMmap, _options.Repack);
            var scheduler = new ModelScheduler(id, model, SchedulerFor(source), _loggerFactory.CreateLogger<ModelScheduler>(), _metrics, faulted: OnFaulted);
            ApplyCeiling(scheduler);
            Publish(source, descriptor with
            {
                ContextLength = scheduler.ContextPerSlot,
                ParameterCount = model.ParameterCount,
                ChatTemplate = model.ChatTemplateName,
                Reasoning = model.Template.Reasoning,
            });
            var elapsedMs = TimeProvider.System.GetElapsedTime(started).TotalMilliseconds;
            LogModelLoaded(_logger, id, elapsedMs, model.Description, model.ChatTemplateName, model.Loading.Mmap, model.Loading.RepackedTensors);
            return scheduler;
        }
        catch (InferenceException e)
        {
            // Not sticky (the file passed its checks; memory or the system may be what failed): every request
            // waiting for this load hears why, and the next one tries again.
            model?.Dispose();
            LogModelUnavailable(_logger, id, descriptor.Path, e.Message);
            throw new ModelUnavailableException(id, e.Message);
        }
        catch
        {
            model?.Dispose();
            throw;
        }
    }

    /// <summary>A model's description, unless the model has left the catalog or been replaced meanwhile.</summary>
    private void Publish(ModelSource source, ModelDescriptor descriptor)
    {
        lock (_catalogLock)
        {
            if (_sources.TryGetValue(source.Id, out var current) && ReferenceEquals(current, source))
            {
                _descriptors[source.Id] = descriptor;
            }
        }
    }

    /// <summary>What stops this engine from serving as it should: decode loops that stopped and were not reloaded yet.</summary>
    public EngineHealth CheckHealth() => new(_faults.Values.Order(StringComparer.Ordinal).ToArray());

    /// <summary>
    /// A decode loop stopped (it recovers from one failure by itself, so this is rare): take the model out of
    /// service, free it, and load it anew. Until the new one runs, <see cref="CheckHealth"/> reports it, so the
    /// container's or systemd's health check sees a process that cannot recover.
    /// </summary>
    private void OnFaulted(ModelScheduler scheduler, Exception error)
    {
        var id = scheduler.Id;
        _faults[id] = $"The decode loop of model '{id}' stopped ({error.Message}); reloading it.";
        _metrics.LoopRestarted(id);
        _ = Task.Run(async () =>
        {
            // Its memory is freed once no request thread holds the model (they may still be tokenizing with it) and
            // no grammar step reads its vocabulary; the reload below waits for that.
            scheduler.Dispose();
            _pool.Forget(id, scheduler);

            if (BeforeReload is { } gate)
            {
                await gate();
            }

            if (_shuttingDown || _disposed != 0)
            {
                return;
            }

            try
            {
                await LoadAsync(id, cancellationToken: CancellationToken.None);
                _faults.TryRemove(id, out _);
                LogModelReloaded(_logger, id);
            }
            catch (ModelNotFoundException)
            {
                _faults.TryRemove(id, out _); // it left the catalog meanwhile
            }
            catch (InferenceException e)
            {
                _faults[id] = $"The decode loop of model '{id}' stopped and reloading it failed: {e.Message}";
            }
        });
    }

    /// <summary>For tests: runs on the loading thread before llama.cpp loads a model; may throw or block.</summary>
    internal Action<string>? BeforeLoad { get; set; }

    /// <summary>For tests: awaited before a model whose decode loop stopped is loaded again.</summary>
    internal Func<Task>? BeforeReload { get; set; }

    /// <summary>From now on new requests are refused with <see cref="ShuttingDownException"/>; running ones go on.</summary>
    public void BeginShutdown() => _shuttingDown = true;

    /// <summary>Ends every running and queued generation now, each with a shutting-down error its reader sees.</summary>
    public void EndGenerations()
    {
        _shuttingDown = true;
        foreach (var scheduler in _pool.LoadedSchedulers())
        {
            scheduler.EndAll(new ShuttingDownException());
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _watcher?.Dispose();
        var loaded = _pool.LoadedSchedulers();
        _pool.Dispose();
        foreach (var embedder in _embedders.Values.Where(e => e.IsValueCreated))
        {
            embedder.Value.Dispose();
        }

        foreach (var scheduler in loaded)
        {
            scheduler.Dispose();
            if (!scheduler.HasRunningSteps)
            {
                scheduler.Model.Dispose();
            }
        }

        _metrics.Dispose();
    }

    [LoggerMessage(EventId = EventIds.ModelFound, Level = LogLevel.Information, Message = "Model {Model} found at {Path} ({Architecture}, {Quantization})")]
    private static partial void LogModelFound(ILogger logger, string model, string path, string architecture, string quantization);

    [LoggerMessage(EventId = EventIds.ModelUnavailable, Level = LogLevel.Warning, Message = "Model {Model} ({Path}) is unavailable: {Reason}")]
    private static partial void LogModelUnavailable(ILogger logger, string model, string path, string reason);

    [LoggerMessage(EventId = EventIds.ModelReloaded, Level = LogLevel.Warning, Message = "Model {Model}: reloaded after its decode loop stopped")]
    private static partial void LogModelReloaded(ILogger logger, string model);

    [LoggerMessage(EventId = EventIds.ModelAdded, Level = LogLevel.Information, Message = "Model {Model} appeared at {Path} ({Architecture}, {Quantization}) and is served")]
    private static partial void LogModelAdded(ILogger logger, string model, string path, string architecture, string quantization);

    [LoggerMessage(EventId = EventIds.ModelRemoved, Level = LogLevel.Information, Message = "Model {Model} left the catalog: its file was removed; it is freed once its requests have finished")]
    private static partial void LogModelRemoved(ILogger logger, string model);

    [LoggerMessage(EventId = EventIds.ModelReplaced, Level = LogLevel.Information, Message = "Model {Model}: its file {Path} changed and was checked again ({Verdict}); the old one is freed once its requests have finished")]
    private static partial void LogModelReplaced(ILogger logger, string model, string path, string verdict);

    [LoggerMessage(EventId = EventIds.ModelNameTaken, Level = LogLevel.Warning, Message = "The model file {Path} is not served: the name {Model} is already another model's. Rename the file or name it in EdgeServer:Models")]
    private static partial void LogNameTaken(ILogger logger, string path, string model);

    [LoggerMessage(EventId = EventIds.MemoryBudget, Level = LogLevel.Information, Message = "Memory budget for models: {Derivation}")]
    private static partial void LogBudget(ILogger logger, string derivation);

    [LoggerMessage(EventId = EventIds.ModelLoaded, Level = LogLevel.Information, Message = "Model {Model} loaded in {ElapsedMs:0} ms: {Description}; chat template: {ChatTemplate}; mapped: {Mapped}, repacked matrices: {RepackedTensors}")]
    private static partial void LogModelLoaded(ILogger logger, string model, double elapsedMs, string description, string chatTemplate, bool mapped, int repackedTensors);
}
