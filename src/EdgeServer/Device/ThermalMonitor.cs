using System.Diagnostics.Metrics;
using System.Globalization;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.Device;

/// <summary>One thermal zone's reading: its sysfs name (thermal_zone0), its type (cpu-thermal) and °C.</summary>
public sealed record ThermalReading(string Zone, string Type, double Celsius);

/// <summary>What the monitor last read and did, for health and metrics.</summary>
public sealed record ThermalStatus(IReadOnlyList<ThermalReading> Zones, int Level, int? ThreadCeiling)
{
    public ThermalReading? Hottest => Zones.Count == 0 ? null : Zones.MaxBy(z => z.Celsius);
}

/// <summary>
/// Backs decoding off when the board gets hot. Every <c>IntervalSeconds</c> it reads the thermal zones
/// (<c>/sys/class/thermal/thermal_zone*/temp</c>, millidegrees); while the hottest is at or above
/// <c>SlowDownAt</c> it sets the engine's decode-thread ceiling one below the most threads any model uses now (down
/// to one), and once it is at or below <c>SlowDownAt - Hysteresis</c>, or no zone can be read any more, it raises the
/// ceiling by one per reading until it is gone. The ceiling is the knob the adaptive thread count also works under.
/// A box without thermal zones is left alone.
/// </summary>
internal sealed partial class ThermalMonitor : IHostedService, IDisposable
{
    private readonly IInferenceEngine _engine;
    private readonly ThermalSettings _settings;
    private readonly TimeProvider _clock;
    private readonly ILogger<ThermalMonitor> _logger;
    private readonly Lock _lock = new();
    private ITimer? _timer;
    private ThermalStatus _status = new([], 0, null);
    private bool _toldNoZones;

    public ThermalMonitor(IInferenceEngine engine, IOptions<EdgeServerOptions> options, TimeProvider clock, ILogger<ThermalMonitor> logger, IMeterFactory meters)
    {
        _engine = engine;
        _settings = options.Value.Thermal;
        _clock = clock;
        _logger = logger;
        var meter = meters.Create(Telemetry.HostMetrics.MeterName);
        meter.CreateObservableGauge("edgeserver.thermal.temperature", () => Status.Zones.Select(z => new Measurement<double>(z.Celsius,
            new KeyValuePair<string, object?>("zone", z.Zone), new KeyValuePair<string, object?>("type", z.Type))), "Cel", "Temperature of each thermal zone at the last reading.");
        meter.CreateObservableGauge("edgeserver.thermal.backoff", () => Status.Level, "{thread}", "Decode threads held back because the board is hot: the most a model may use less the ceiling (0: none).");
    }

    /// <summary>The last reading and the back-off in force.</summary>
    public ThermalStatus Status
    {
        get
        {
            lock (_lock)
            {
                return _status;
            }
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_settings.Enabled)
        {
            // One-shot, armed again after each reading: a sensor read that blocks cannot pile readings up.
            _timer = _clock.CreateTimer(_ => CheckSafely(), null, TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _timer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        return Task.CompletedTask;
    }

    public void Dispose() => _timer?.Dispose();

    /// <summary>A timer callback must not throw: that would end the process.</summary>
    private void CheckSafely()
    {
        try
        {
            Check();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            LogCheckFailed(_logger, e);
        }

        try
        {
            _timer?.Change(TimeSpan.FromSeconds(_settings.IntervalSeconds), Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // Stopped meanwhile.
        }
    }

    /// <summary>One reading and, if it calls for one, one step of back-off or recovery.</summary>
    internal void Check()
    {
        var zones = ReadZones(_settings.SysfsRoot);
        lock (_lock)
        {
            var hottest = zones.MaxBy(z => z.Celsius);
            var ceiling = _engine.ThreadCeiling;
            var (inUse, limit) = _engine.DecodeThreads;
            int? next = ceiling;
            if (hottest is null && !_toldNoZones)
            {
                _toldNoZones = true;
                LogNoZones(_logger, _settings.SysfsRoot);
            }

            if (hottest is { } hot && hot.Celsius >= _settings.SlowDownAt)
            {
                // One thread fewer than the most any model uses now, never below one.
                next = Math.Max(1, Math.Min(ceiling ?? int.MaxValue, inUse) - 1);
            }
            else if (ceiling is { } held && (hottest is null || hottest.Celsius <= _settings.SlowDownAt - _settings.Hysteresis))
            {
                // Cool again, or the sensors can no longer be read: give one thread back.
                next = held + 1 >= limit ? null : held + 1;
            }

            if (next != ceiling)
            {
                _engine.ThreadCeiling = next;
                var cap = next is { } c ? c.ToString(CultureInfo.InvariantCulture) : "none (each model's own count)";
                LogBackoff(_logger, hottest?.Celsius ?? double.NaN, hottest?.Type ?? "no readable zone", hottest?.Zone ?? "-", cap);
            }

            _status = new ThermalStatus(zones, next is { } n ? Math.Max(0, limit - n) : 0, next);
        }
    }

    /// <summary>
    /// The zones under <paramref name="root"/>/class/thermal. A zone whose temp cannot be read or is not a plausible
    /// temperature (sysfs gives EIO for some sensors; a file could hold anything) is left out.
    /// </summary>
    internal static List<ThermalReading> ReadZones(string root)
    {
        var result = new List<ThermalReading>();
        var folder = Path.Combine(root, "class", "thermal");
        string[] zones;
        try
        {
            zones = Directory.Exists(folder) ? Directory.GetDirectories(folder, "thermal_zone*") : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return result;
        }

        foreach (var zone in zones.Order(StringComparer.Ordinal).Take(MaxZones))
        {
            if (Sysfs.ReadSmall(Path.Combine(zone, "temp")) is { } text
                && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var milli)
                && milli is > -100_000 and < 250_000)
            {
                var type = Sysfs.ReadSmall(Path.Combine(zone, "type")) is { Length: > 0 } t ? t : "unknown";
                result.Add(new ThermalReading(Path.GetFileName(zone), type, milli / 1000.0));
            }
        }

        return result;
    }

    /// <summary>Real boards have a handful of zones; a tree with thousands is not read in full every few seconds.</summary>
    private const int MaxZones = 64;


    [LoggerMessage(EventId = EventIds.ThermalBackoff, Level = LogLevel.Warning, Message = "Thermal: {Celsius:0.0} °C in {ZoneType} ({Zone}); decode threads capped at {Ceiling}")]
    private static partial void LogBackoff(ILogger logger, double celsius, string zoneType, string zone, string ceiling);

    [LoggerMessage(EventId = EventIds.ThermalCheckFailed, Level = LogLevel.Warning, Message = "Thermal: the reading failed")]
    private static partial void LogCheckFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = EventIds.ThermalNoZones, Level = LogLevel.Information, Message = "Thermal: no readable thermal zone in {SysfsRoot}/class/thermal; no heat back-off on this box")]
    private static partial void LogNoZones(ILogger logger, string sysfsRoot);
}
