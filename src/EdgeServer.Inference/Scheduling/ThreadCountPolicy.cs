namespace EdgeServer.Inference.Scheduling;

/// <summary>Why a decode loop's thread count changed.</summary>
public enum ThreadChangeReason
{
    /// <summary>Trying another count while measuring.</summary>
    Measuring,

    /// <summary>Measuring ended: this count decoded fastest.</summary>
    Fastest,

    /// <summary>The periodic re-check began.</summary>
    Recheck,

    /// <summary>Step time drifted beyond the margin (the box's load changed): measuring again.</summary>
    LoadChanged,

    /// <summary>The most threads allowed (<see cref="ModelScheduler.MaxThreads"/>) changed.</summary>
    Ceiling,
}

/// <summary>How the adaptive thread count measures. The defaults suit decode steps of milliseconds to a second.</summary>
internal sealed record ThreadTuning
{
    /// <summary>Steps left out after a change (the new pool's threads start, caches refill).</summary>
    public int WarmupSteps { get; init; } = 2;

    /// <summary>Steps measured per count; the median counts.</summary>
    public int Samples { get; init; } = 8;

    /// <summary>A count whose first this-many steps are all slower than the best by <see cref="Margin"/> is given up early.</summary>
    public int EarlySamples { get; init; } = 3;

    /// <summary>Relative change of step time that counts as a different load (and as clearly slower).</summary>
    public double Margin { get; init; } = 0.2;

    /// <summary>Steps per drift check once settled: their median is compared with the settled one.</summary>
    public int DriftWindow { get; init; } = 16;

    /// <summary>Counts are measured again after this long, since a load that went away leaves the step time of a smaller count unchanged.</summary>
    public TimeSpan RecheckInterval { get; init; } = TimeSpan.FromSeconds(30);

    public static ThreadTuning Default { get; } = new();
}

/// <summary>
/// Picks the CPU thread count of a decode loop. Fixed: the configured count. Adaptive: fed the time of each decode
/// step, it tries counts from the most allowed downwards and keeps the one whose steps were fastest; so on a box
/// where another process holds a core, it stops using a thread that would straggle and stall every step. It measures
/// again periodically and when the step time drifts beyond a margin. Steps are compared only with steps of the same
/// batch size (a step of two streams costs more than one of one). <see cref="Ceiling"/> caps the count from outside
/// (a thermal back-off). A pure class: no clock but the one given, no threads; the decode loop calls it.
/// </summary>
internal sealed class ThreadCountPolicy
{
    private readonly int _limit;
    private readonly TimeProvider _clock;
    private readonly ThreadTuning _tuning;

    private bool _measuring;
    private int _candidate;
    private int _warmup;
    private int _size;
    private int _mismatched;
    private readonly List<double> _samples = [];
    private readonly Dictionary<int, double> _medians = [];

    private double _baseline;
    private long _settledAt;
    private int _windowSize;
    private readonly List<double> _window = [];

    private ThreadCountPolicy(bool adaptive, int limit, TimeProvider clock, ThreadTuning tuning)
    {
        IsAdaptive = adaptive;
        _limit = limit;
        _clock = clock;
        _tuning = tuning;
        Ceiling = limit;
        Threads = limit;
    }

    /// <summary>Always <paramref name="threads"/> (or the ceiling, if lower).</summary>
    public static ThreadCountPolicy Fixed(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        return new ThreadCountPolicy(false, threads, TimeProvider.System, ThreadTuning.Default);
    }

    /// <summary>Measures counts from 1 to <paramref name="maxThreads"/> (the cores this process may use).</summary>
    public static ThreadCountPolicy Adaptive(int maxThreads, TimeProvider clock, ThreadTuning? tuning = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxThreads, 1);
        var policy = new ThreadCountPolicy(true, maxThreads, clock, tuning ?? ThreadTuning.Default);
        policy.Measure(ThreadChangeReason.Measuring);
        return policy;
    }

    public bool IsAdaptive { get; }

    /// <summary>The count to decode with now.</summary>
    public int Threads { get; private set; }

    /// <summary>The most threads allowed: the configured or detected count, or less when lowered.</summary>
    public int Ceiling { get; private set; }

    /// <summary>Why <see cref="Threads"/> last changed.</summary>
    public ThreadChangeReason Reason { get; private set; } = ThreadChangeReason.Measuring;

    /// <summary>Median step time per count of the last measuring (or the one under way).</summary>
    public IReadOnlyDictionary<int, double> MedianMilliseconds => _medians;

    /// <summary>True while counts are being tried.</summary>
    public bool Measuring => _measuring;

    /// <summary>Caps the count at <paramref name="ceiling"/> (at least 1; no more than the configured or detected count). True when <see cref="Threads"/> changed.</summary>
    public bool SetCeiling(int ceiling)
    {
        ceiling = Math.Clamp(ceiling, 1, _limit);
        if (ceiling == Ceiling)
        {
            return false;
        }

        var raised = ceiling > Ceiling;
        Ceiling = ceiling;
        var before = Threads;
        if (IsAdaptive && (raised || Threads > ceiling))
        {
            // Raised: more threads may be faster again. Lowered below the count in use: measure from the new top.
            Measure(ThreadChangeReason.Ceiling);
        }
        else if (IsAdaptive)
        {
            // Lowered, still above the count in use: keep it (a thermal back-off must never add threads).
            foreach (var above in _medians.Keys.Where(k => k > ceiling).ToList())
            {
                _medians.Remove(above);
            }

            return false;
        }
        else
        {
            Threads = Math.Min(_limit, ceiling);
        }

        Reason = ThreadChangeReason.Ceiling;
        return Threads != before;
    }

    /// <summary>
    /// One decode step of <paramref name="batchTokens"/> tokens (no prompt tokens in it) took <paramref name="elapsed"/>
    /// at the current count. True when <see cref="Threads"/> changed: apply it before the next step.
    /// </summary>
    public bool Observe(int batchTokens, TimeSpan elapsed)
    {
        if (!IsAdaptive || Ceiling == 1)
        {
            return false;
        }

        var before = Threads;
        if (_measuring)
        {
            Try(batchTokens, elapsed.TotalMilliseconds);
        }
        else
        {
            Watch(batchTokens, elapsed.TotalMilliseconds);
        }

        return Threads != before;
    }

    private void Measure(ThreadChangeReason reason)
    {
        _medians.Clear();
        _size = 0;
        Reason = reason;
        if (Ceiling == 1)
        {
            _measuring = false;
            Threads = 1;
            return;
        }

        _measuring = true;
        Switch(Ceiling);
    }

    private void Switch(int candidate)
    {
        _candidate = candidate;
        Threads = candidate;
        _warmup = _tuning.WarmupSteps;
        _samples.Clear();
        _mismatched = 0;
    }

    private void Try(int size, double milliseconds)
    {
        if (_warmup > 0)
        {
            _warmup--;
            return;
        }

        _size = _size == 0 ? size : _size;
        if (size != _size)
        {
            // Another batch size for a while (streams came or went): what was measured no longer compares.
            if (++_mismatched >= _tuning.Samples * 2)
            {
                Measure(Reason);
            }

            return;
        }

        _mismatched = 0;
        _samples.Add(milliseconds);
        if (_samples.Count < _tuning.Samples && !(_samples.Count >= _tuning.EarlySamples && ClearlySlower()))
        {
            return;
        }

        var median = Median(_samples);
        _medians[_candidate] = median;
        var fastest = Fastest();

        // Fewer threads than the fastest so far only get slower once one is clearly slower.
        var next = _candidate - 1;
        if (next >= 1 && !(median > _medians[fastest] * (1 + _tuning.Margin) && _candidate < fastest))
        {
            Reason = ThreadChangeReason.Measuring;
            Switch(next);
            return;
        }

        _measuring = false;
        _baseline = _medians[fastest];
        _settledAt = _clock.GetTimestamp();
        _window.Clear();
        _windowSize = _size;
        Reason = ThreadChangeReason.Fastest;
        Threads = fastest;
    }

    private void Watch(int size, double milliseconds)
    {
        if (_clock.GetElapsedTime(_settledAt) >= _tuning.RecheckInterval)
        {
            Measure(ThreadChangeReason.Recheck);
            return;
        }

        if (size != _windowSize)
        {
            _window.Clear();
            _windowSize = size;
        }

        _window.Add(milliseconds);
        if (_window.Count < _tuning.DriftWindow)
        {
            return;
        }

        var median = Median(_window);
        _window.Clear();
        if (_windowSize != _size)
        {
            // A lasting new batch size: its step time at this count is the new reference.
            _size = _windowSize;
            _baseline = median;
            return;
        }

        if (median > _baseline * (1 + _tuning.Margin) || median * (1 + _tuning.Margin) < _baseline)
        {
            Measure(ThreadChangeReason.LoadChanged);
        }
    }

    /// <summary>Every step of the count under test so far is slower than the best median by more than the margin.</summary>
    private bool ClearlySlower()
    {
        if (_medians.Count == 0)
        {
            return false;
        }

        var limit = _medians[Fastest()] * (1 + _tuning.Margin);
        foreach (var sample in _samples)
        {
            if (sample <= limit)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The count with the lowest median; on a tie the fewer threads.</summary>
    private int Fastest()
    {
        var best = 0;
        foreach (var (count, median) in _medians)
        {
            if (best == 0 || median < _medians[best] || (median == _medians[best] && count < best))
            {
                best = count;
            }
        }

        return best;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.ToArray();
        Array.Sort(sorted);
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
