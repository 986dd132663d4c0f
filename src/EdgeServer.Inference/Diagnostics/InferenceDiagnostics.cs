using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace EdgeServer.Inference.Diagnostics;

/// <summary>Names of the inference library's meter and activity source, for exporters to subscribe to.</summary>
public static class InferenceDiagnostics
{
    public const string MeterName = "EdgeServer.Inference";
    public const string ActivitySourceName = "EdgeServer.Inference";

    internal static readonly ActivitySource ActivitySource = new(ActivitySourceName);
}

/// <summary>What one finished generation took, measured by the decode loop.</summary>
public sealed record GenerationTimings(TimeSpan Queued, TimeSpan PromptEvaluation, TimeSpan Generation)
{
    /// <summary>
    /// From the moment the request entered its model's queue (prompt already rendered and tokenized) to the moment
    /// its first token was sampled: the wait for a slot (<see cref="Queued"/>) plus <see cref="PromptEvaluation"/>.
    /// Model loading, tokenizing and the host's own admission come before it and are not counted.
    /// </summary>
    public TimeSpan TimeToFirstToken => Queued + PromptEvaluation;

    public TimeSpan Total => Queued + PromptEvaluation + Generation;
}

/// <summary>
/// The engine's instruments: tokens, time to first token and speed per request; queue depth, busy slots,
/// KV cache cells in use and model size per loaded model (observed when collected).
/// </summary>
internal sealed class InferenceMetrics : IDisposable
{
    private readonly Meter _meter;
    private readonly Counter<long> _promptTokens;
    private readonly Counter<long> _cachedPromptTokens;
    private readonly Counter<long> _generatedTokens;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Histogram<double> _tokensPerSecond;

    private readonly Counter<long> _loopRestarts;
    private readonly Counter<long> _samplingOverBudget;

    public InferenceMetrics(IMeterFactory? factory, Func<IEnumerable<SchedulerSnapshot>> snapshot)
    {
        _meter = factory?.Create(InferenceDiagnostics.MeterName) ?? new Meter(InferenceDiagnostics.MeterName);
        _promptTokens = _meter.CreateCounter<long>("edgeserver.tokens.prompt", "{token}", "Prompt tokens of finished requests.");
        _cachedPromptTokens = _meter.CreateCounter<long>("edgeserver.tokens.prompt_cached", "{token}", "Prompt tokens served from the prefix cache.");
        _generatedTokens = _meter.CreateCounter<long>("edgeserver.tokens.generated", "{token}", "Generated tokens.");
        _timeToFirstToken = _meter.CreateHistogram<double>("edgeserver.time_to_first_token", "s", "From entering the model's queue to the first sampled token: the wait for a slot plus prompt evaluation.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        _tokensPerSecond = _meter.CreateHistogram<double>("edgeserver.generation.tokens_per_second", "{token}/s", "Generation speed of each request after its first token.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000] });
        _loopRestarts = _meter.CreateCounter<long>("edgeserver.decode_loop.restarts", "{restart}", "Decode loops that stopped and had their model reloaded.");
        _samplingOverBudget = _meter.CreateCounter<long>("edgeserver.sampling.over_budget", "{request}", "Requests ended because sampling one token took longer than the sampling budget.");
        _meter.CreateObservableGauge("edgeserver.queue.depth", () => snapshot().Select(s => new Measurement<int>(s.Queued, Model(s))), "{request}", "Requests waiting for a slot.");
        _meter.CreateObservableGauge("edgeserver.slots.busy", () => snapshot().Select(s => new Measurement<int>(s.BusySlots, Model(s))), "{slot}", "Slots generating or reading a prompt.");
        _meter.CreateObservableGauge("edgeserver.slots.total", () => snapshot().Select(s => new Measurement<int>(s.Slots, Model(s))), "{slot}", "Slots of each loaded model.");
        _meter.CreateObservableGauge("edgeserver.kv_cache.cells_used", () => snapshot().Select(s => new Measurement<long>(s.KvCellsUsed, Model(s))), "{cell}", "KV cache cells holding tokens, over all slots.");
        _meter.CreateObservableGauge("edgeserver.decode.threads", () => snapshot().Select(s => new Measurement<int>(s.Threads, Model(s))), "{thread}", "CPU threads each loaded model's decode loop runs on now: the configured count, or the one measured fastest under the box's load.");
        _meter.CreateObservableGauge("edgeserver.model.size", () => snapshot().Select(s => new Measurement<long>(s.ModelBytes, Model(s))), "By", "Size of each loaded model's tensors.");
    }

    public void Finished(string model, GenerationUsage usage, GenerationTimings timings)
    {
        var tag = new KeyValuePair<string, object?>("model", model);
        _promptTokens.Add(usage.PromptTokens, tag);
        _cachedPromptTokens.Add(usage.CachedPromptTokens, tag);
        _generatedTokens.Add(usage.CompletionTokens, tag);
        if (usage.CompletionTokens > 0)
        {
            _timeToFirstToken.Record(timings.TimeToFirstToken.TotalSeconds, tag);
        }

        if (usage.CompletionTokens > 1 && timings.Generation > TimeSpan.Zero)
        {
            _tokensPerSecond.Record((usage.CompletionTokens - 1) / timings.Generation.TotalSeconds, tag);
        }
    }

    /// <summary>The pool's instruments: budget and use, loads and their time, unloads by reason, refusals for memory.</summary>
    public void Watch(Pool.ModelPool pool)
    {
        if (pool.Budget is { } budget)
        {
            _meter.CreateObservableGauge("edgeserver.memory.budget", () => budget, "By", "Bytes the loaded models may take together.");
        }

        _meter.CreateObservableGauge("edgeserver.memory.used", () => pool.Used, "By", "Bytes the models loading, loaded or being freed count against the budget.");
        var loads = _meter.CreateCounter<long>("edgeserver.model.loads", "{load}", "Models loaded.");
        var loadTime = _meter.CreateHistogram<double>("edgeserver.model.load_time", "s", "Time to load a model and start its decode loop.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] });
        var unloads = _meter.CreateCounter<long>("edgeserver.model.unloads", "{unload}", "Models unloaded, by reason (idle, evicted, requested, file_changed).");
        var refused = _meter.CreateCounter<long>("edgeserver.model.refused_for_memory", "{request}", "Requests refused because their model can never fit the memory budget.");
        pool.Loaded += (model, took) =>
        {
            var tag = new KeyValuePair<string, object?>("model", model);
            loads.Add(1, tag);
            loadTime.Record(took.TotalSeconds, tag);
        };
        pool.Unloaded += (model, reason) => unloads.Add(1, new KeyValuePair<string, object?>("model", model), new KeyValuePair<string, object?>("reason", reason == Pool.UnloadReason.FileChanged ? "file_changed" : reason.ToString().ToLowerInvariant()));
        pool.RefusedForMemory += model => refused.Add(1, new KeyValuePair<string, object?>("model", model));
    }

    public void LoopRestarted(string model) => _loopRestarts.Add(1, new KeyValuePair<string, object?>("model", model));

    public void SamplingOverBudget(string model) => _samplingOverBudget.Add(1, new KeyValuePair<string, object?>("model", model));

    public void Dispose() => _meter.Dispose();

    private static KeyValuePair<string, object?>[] Model(SchedulerSnapshot s) => [new("model", s.Model)];
}

internal readonly record struct SchedulerSnapshot(string Model, int Slots, int BusySlots, int Queued, long KvCellsUsed, long ModelBytes, int Threads);
