using System.Diagnostics.Metrics;
using EdgeServer.Device;
using EdgeServer.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.Device;

/// <summary>
/// The energy meter on a fake sysfs tree whose counters the test writes, on a fake clock: RAPL packages and their
/// wrap-around, battery power as current times voltage, a power meter's file or command, the split between
/// generations running together, and no number at all where nothing can be read.
/// </summary>
public sealed class EnergyMonitorTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"edgeserver-sysfs-{Guid.NewGuid():N}");
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    public EnergyMonitorTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        _services.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    private void Write(string relative, string text)
    {
        var path = Path.Combine(_root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text + "\n");
    }

    private EnergyMonitor Monitor(Action<EnergySettings>? configure = null)
    {
        var settings = new EnergySettings { SysfsRoot = _root, IntervalMilliseconds = 1000 };
        configure?.Invoke(settings);
        return new EnergyMonitor(
            Microsoft.Extensions.Options.Options.Create(new EdgeServerOptions { Energy = settings }),
            _clock,
            NullLogger<EnergyMonitor>.Instance,
            _services.GetRequiredService<IMeterFactory>());
    }

    /// <summary>One timed reading per second.</summary>
    private void Seconds(int count)
    {
        for (var i = 0; i < count; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(1));
        }
    }

    [Fact]
    public async Task APlatformDomainIsTheWholeBoxAndIsNotAddedToThePackagesItHolds()
    {
        // Laptops and some desktops have psys beside the packages: the platform's power, the package's included.
        Write("class/powercap/intel-rapl:0/name", "package-0");
        Write("class/powercap/intel-rapl:0/energy_uj", "1000000");
        Write("class/powercap/intel-rapl:1/name", "psys");
        Write("class/powercap/intel-rapl:1/energy_uj", "2000000");
        using var monitor = Monitor();
        await monitor.StartAsync(default);
        using var share = monitor.Begin("m")!;
        Write("class/powercap/intel-rapl:0/energy_uj", "11000000");
        Write("class/powercap/intel-rapl:1/energy_uj", "17000000");
        Seconds(1);
        Assert.Equal(15, share.End(1)!.Value, 6);
    }

    [Fact]
    public async Task RaplPackagesAddUpTheirSubDomainsDoNotAndAWrapCountsOnce()
    {
        const string package0 = "class/powercap/intel-rapl:0";
        Write($"{package0}/energy_uj", "999000000");
        Write($"{package0}/max_energy_range_uj", "1000000000");
        Write("class/powercap/intel-rapl:0:0/energy_uj", "5");
        Write("class/powercap/intel-rapl:1/energy_uj", "100");
        Write("class/powercap/intel-rapl:1/max_energy_range_uj", "1000000000");
        using var monitor = Monitor();
        var measurements = new List<(string Name, double Value, object? Model)>();
        using var listener = Listen(measurements);
        await monitor.StartAsync(default);
        Assert.Equal("rapl", monitor.SourceName);

        using var share = monitor.Begin("m")!;
        share.AddTokens(4);
        // Package 0 went past its 1000 J range: 999 J to 2 J is 3 J. The core sub-domain is part of it, not added.
        Write($"{package0}/energy_uj", "2000000");
        Write("class/powercap/intel-rapl:0:0/energy_uj", "900000000");
        Write("class/powercap/intel-rapl:1/energy_uj", "1100");
        Seconds(1);

        Assert.Equal(3.001, share.End(4)!.Value, 6);
        Assert.Equal(3.001, monitor.Consumed!.Value, 6);
        Assert.Contains(measurements, m => m is { Name: "edgeserver.energy.per_token", Model: "m" } && Math.Abs(m.Value - 3.001 / 4) < 1e-9);
        Assert.Contains(measurements, m => m is { Name: "edgeserver.energy.generation", Model: "m" } && Math.Abs(m.Value - 3.001) < 1e-9);
        Assert.Contains(measurements, m => m is { Name: "edgeserver.energy.generated_tokens", Model: "m", Value: 4 });
    }

    [Fact]
    public async Task GenerationsRunningTogetherShareEachIntervalByTheTokensTheyDecodedInIt()
    {
        Write("class/powercap/intel-rapl:0/energy_uj", "0");
        using var monitor = Monitor();
        await monitor.StartAsync(default);
        using var a = monitor.Begin("a")!;
        using var b = monitor.Begin("b")!;

        a.AddTokens(3);
        b.AddTokens(1);
        Write("class/powercap/intel-rapl:0/energy_uj", "8000000");
        Seconds(1);

        // No token decoded (prompts being read): split equally.
        Write("class/powercap/intel-rapl:0/energy_uj", "10000000");
        Seconds(1);
        Assert.Equal(3, b.End(1)!.Value, 6);

        // Alone now: a gets all of the rest, and one that starts later none of what came before.
        a.AddTokens(1);
        Write("class/powercap/intel-rapl:0/energy_uj", "12000000");
        using var c = monitor.Begin("c")!;
        Assert.Equal(9, a.End(4)!.Value, 6);
        Assert.Equal(0, c.End(0)!.Value, 6);
    }

    [Fact]
    public async Task BatteryCurrentTimesVoltageAndPmicPowerAreIntegratedOverTime()
    {
        // 0.5 A (negative while discharging, as some drivers report it) at 4 V, plus a PMIC rail at 1.5 W.
        Write("class/power_supply/BAT0/type", "Battery");
        Write("class/power_supply/BAT0/status", "Discharging");
        Write("class/power_supply/BAT0/current_now", "-500000");
        Write("class/power_supply/BAT0/voltage_now", "4000000");
        Write("class/power_supply/pmic/type", "USB");
        Write("class/power_supply/pmic/power_now", "1500000");
        Write("class/power_supply/AC/online", "1");
        using var monitor = Monitor();
        await monitor.StartAsync(default);
        Assert.Equal("power_supply", monitor.SourceName);

        using var share = monitor.Begin("m")!;
        share.AddTokens(7);
        Seconds(3);
        Assert.Equal(3.5, monitor.Watts!.Value, 6);
        Assert.Equal(10.5, share.End(7)!.Value, 6);
    }

    [Fact]
    public async Task AChargingBatteryIsNoReadingOfTheBox()
    {
        // What a charging battery reports is its charge current, not what the box uses: unavailable, never 0 J.
        Write("class/power_supply/BAT0/type", "Battery");
        Write("class/power_supply/BAT0/status", "Discharging");
        Write("class/power_supply/BAT0/power_now", "6000000");
        using var monitor = Monitor();
        await monitor.StartAsync(default);
        using var share = monitor.Begin("m")!;
        Write("class/power_supply/BAT0/status", "Charging");
        Seconds(2);
        Assert.Null(share.End(3));
    }

    [Fact]
    public async Task ABoxWithoutAReadableSensorMeasuresNothing()
    {
        // A package whose counter only root may read (EACCES since Linux 5.10) looks like this one: no readable energy_uj.
        Directory.CreateDirectory(Path.Combine(_root, "class", "powercap", "intel-rapl:0", "energy_uj"));
        Write("class/power_supply/AC/online", "1");
        using var monitor = Monitor();
        await monitor.StartAsync(default);
        Assert.Null(monitor.SourceName);
        Assert.Null(monitor.Begin("m"));
        Assert.Null(monitor.Consumed);
    }

    [Fact]
    public async Task AnEnergyMonitorThatIsOffMeasuresNothingEvenWithASensor()
    {
        Write("class/powercap/intel-rapl:0/energy_uj", "0");
        using var monitor = Monitor(s => s.Enabled = false);
        await monitor.StartAsync(default);
        Assert.Null(monitor.Begin("m"));
    }

    [Fact]
    public async Task ASensorThatStopsAnsweringLeavesTheGenerationsRunningThroughItUnmeasured()
    {
        Write("class/powercap/intel-rapl:0/energy_uj", "1000000");
        using var monitor = Monitor();
        await monitor.StartAsync(default);
        using var share = monitor.Begin("m")!;
        Write("class/powercap/intel-rapl:0/energy_uj", "EIO");
        Seconds(1);
        Write("class/powercap/intel-rapl:0/energy_uj", "5000000");
        Seconds(1);
        Assert.Null(share.End(2));

        // Once it reads again, a new generation is measured.
        using var next = monitor.Begin("m")!;
        Write("class/powercap/intel-rapl:0/energy_uj", "7000000");
        Seconds(1);
        Assert.Equal(2, next.End(2)!.Value, 6);
    }

    [Fact]
    public async Task APowerMetersFileIsIntegratedAndWinsOverTheSensors()
    {
        Write("class/powercap/intel-rapl:0/energy_uj", "0");
        var meter = Path.Combine(_root, "usb-meter");
        File.WriteAllText(meter, "4.5 W\n");
        using var monitor = Monitor(s => s.PowerFile = meter);
        await monitor.StartAsync(default);
        Assert.Equal("file", monitor.SourceName);
        using var share = monitor.Begin("m")!;
        Seconds(2);
        Assert.Equal(9, share.End(5)!.Value, 6);
    }

    [Fact]
    public async Task APowerCommandIsAskedAtEachTimedReading()
    {
        using var monitor = Monitor(s => s.PowerCommand = "echo 2.5");
        await monitor.StartAsync(default);
        Assert.Equal("command", monitor.SourceName);
        using var share = monitor.Begin("m")!;
        Seconds(2);
        Assert.Equal(5, share.End(5)!.Value, 6);
    }

    [Fact]
    public async Task ASlowPowerCommandDoesNotHoldUpGenerations()
    {
        var started = Path.Combine(_root, "command-started");
        var done = Path.Combine(_root, "command-done");
        // Fast at start-up; from the second run on it takes a while, as a meter on a slow bus might.
        var counter = Path.Combine(_root, "runs");
        using var monitor = Monitor(s => s.PowerCommand = $"echo x >> '{counter}'; if [ $(wc -l < '{counter}') -gt 1 ]; then touch '{started}'; sleep 4; touch '{done}'; fi; echo 2");
        await monitor.StartAsync(default);
        var reading = Task.Run(() => Seconds(1));
        for (var i = 0; i < 600 && !File.Exists(started); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(File.Exists(started), "the timed reading never ran the command");
        // While the command runs, a generation begins and ends at once: neither waits for the reading.
        using (var share = monitor.Begin("m")!)
        {
            share.End(1);
        }

        _ = monitor.Watts;
        Assert.False(File.Exists(done), "a generation waited for the power command to finish");
        await reading;
    }

    [Fact]
    public async Task ACommandThatPrintsNoNumberMeasuresNothing()
    {
        using var monitor = Monitor(s => s.PowerCommand = "echo unplugged");
        await monitor.StartAsync(default);
        Assert.Null(monitor.Begin("m") is { } share ? share.End(1) : null);
    }

    [Fact]
    public void APowerFileAndCommandTogetherOrAMissingPowerFileAreRefusedAtStartUp()
    {
        var validator = new EdgeServerOptionsFileValidator();
        var both = validator.Validate(null, new EdgeServerOptions { Energy = new EnergySettings { PowerFile = Path.Combine(_root, "meter"), PowerCommand = "echo 1" } });
        Assert.Contains(both.Failures!, f => f.Contains("PowerFile and PowerCommand are both set", StringComparison.Ordinal));
        Assert.Contains(both.Failures!, f => f.Contains("EdgeServer:Energy:PowerFile: the file", StringComparison.Ordinal));

        File.WriteAllText(Path.Combine(_root, "meter"), "3.2\n");
        Assert.True(validator.Validate(null, new EdgeServerOptions { Energy = new EnergySettings { PowerFile = Path.Combine(_root, "meter") } }).Succeeded);
    }

    /// <summary>The energy instruments of this test's meter factory only (other tests' servers have their own).</summary>
    private MeterListener Listen(List<(string Name, double Value, object? Model)> measurements)
    {
        var factory = _services.GetRequiredService<IMeterFactory>();
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, factory) && instrument.Name.StartsWith("edgeserver.energy.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            object? model = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "model")
                {
                    model = tag.Value;
                }
            }

            lock (measurements)
            {
                measurements.Add((instrument.Name, value, model));
            }
        }

        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        listener.Start();
        return listener;
    }
}
