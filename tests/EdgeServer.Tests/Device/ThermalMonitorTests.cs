using System.Diagnostics.Metrics;
using EdgeServer.Device;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.TestSupport;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.Device;

/// <summary>
/// The heat back-off on a fake sysfs tree whose temperature the test sets, on a fake clock, against the real engine:
/// threads are taken away one reading at a time above SlowDownAt, given back below it by the hysteresis, and
/// requests are served throughout.
/// </summary>
public sealed class ThermalMonitorTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"edgeserver-sysfs-{Guid.NewGuid():N}");
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    public ThermalMonitorTests() => Directory.CreateDirectory(Path.Combine(_root, "class", "thermal"));

    public void Dispose()
    {
        _services.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    private void Zone(int index, string? temp, string type = "cpu-thermal")
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root, "class", "thermal", $"thermal_zone{index}")).FullName;
        File.WriteAllText(Path.Combine(folder, "type"), type + "\n");
        if (temp is not null)
        {
            File.WriteAllText(Path.Combine(folder, "temp"), temp + "\n");
        }
    }

    private ThermalMonitor Monitor(IInferenceEngine engine) => new(
        engine,
        Microsoft.Extensions.Options.Options.Create(new EdgeServerOptions { Thermal = new ThermalSettings { SysfsRoot = _root, SlowDownAt = 75, Hysteresis = 5, IntervalSeconds = 5 } }),
        _clock,
        NullLogger<ThermalMonitor>.Instance,
        _services.GetRequiredService<IMeterFactory>());

    private static InferenceEngine Engine(int threads = 3) => new(
        new EngineOptions
        {
            Models = [new ModelSource("m", SuccessorModel.SharedPath)],
            Scheduler = new() { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = threads },
        },
        NullLoggerFactory.Instance);

    private static async Task<string> Generate(InferenceEngine engine)
    {
        var session = await engine.StartAsync(new GenerationRequest { Model = "m", Prompt = "Hello j", Sampling = new() { Temperature = 0 }, MaxTokens = 4 }, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        return text.ToString();
    }

    [Fact]
    public async Task AHotBoardLosesThreadsOneReadingAtATimeAndGetsThemBackBelowTheHysteresis()
    {
        using var engine = Engine();
        await engine.LoadAsync("m");
        var scheduler = engine.GetLoadedScheduler("m")!;
        Zone(0, "45000");
        using var monitor = Monitor(engine);

        // The timer reads at start and every interval.
        await monitor.StartAsync(default);
        _clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(45.0, Assert.Single(monitor.Status.Zones).Celsius);
        Assert.Null(engine.ThreadCeiling);

        Zone(0, "80000");
        monitor.Check();
        Assert.Equal(2, engine.ThreadCeiling);
        Assert.Equal(2, scheduler.MaxThreads);
        Assert.Equal(2, scheduler.Threads);
        monitor.Check();
        Assert.Equal(1, engine.ThreadCeiling);
        Assert.Equal(1, scheduler.Threads);

        // It never goes below one thread, and requests are served on it.
        monitor.Check();
        Assert.Equal(1, engine.ThreadCeiling);
        Assert.Equal("klmn", await Generate(engine));
        Assert.Equal(1, scheduler.Threads);

        var readiness = new ReadinessCheck(engine, _clock, monitor);
        var ready = await readiness.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Healthy, ready.Status);
        Assert.Contains("Hot: 80.0 °C in cpu-thermal; decode threads capped at 1.", ready.Description, StringComparison.Ordinal);
        Assert.Equal(2, monitor.Status.Level);

        // Between SlowDownAt - Hysteresis and SlowDownAt nothing changes.
        Zone(0, "72000");
        monitor.Check();
        Assert.Equal(1, engine.ThreadCeiling);

        // Cool: one thread back per reading, until none is held back.
        Zone(0, "70000");
        monitor.Check();
        Assert.Equal(2, engine.ThreadCeiling);
        monitor.Check();
        Assert.Null(engine.ThreadCeiling);
        Assert.Equal(3, scheduler.MaxThreads);
        Assert.Equal("klmn", await Generate(engine));
        Assert.Equal(3, scheduler.Threads);
        Assert.DoesNotContain("Hot", (await readiness.CheckHealthAsync(new HealthCheckContext())).Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AModelUsingFewerThreadsThanTheCeilingLosesOneFromWhatItUses()
    {
        // Two of three allowed threads in use: the first step caps at one, not at two (which would take nothing).
        using var engine = Engine(threads: 3);
        await engine.LoadAsync("m");
        engine.ThreadCeiling = 2;
        Zone(0, "80000");
        using var monitor = Monitor(engine);
        monitor.Check();
        Assert.Equal(1, engine.ThreadCeiling);
    }

    [Fact]
    public async Task SensorsThatStopAnsweringGiveTheThreadsBackStepByStep()
    {
        using var engine = Engine(threads: 3);
        await engine.LoadAsync("m");
        Zone(0, "90000");
        using var monitor = Monitor(engine);
        monitor.Check();
        monitor.Check();
        Assert.Equal(1, engine.ThreadCeiling);

        File.WriteAllText(Path.Combine(_root, "class", "thermal", "thermal_zone0", "temp"), "EIO\n");
        monitor.Check();
        Assert.Equal(2, engine.ThreadCeiling);
        var ready = await new ReadinessCheck(engine, _clock, monitor).CheckHealthAsync(new HealthCheckContext());
        Assert.Contains("decode threads capped at 2", ready.Description, StringComparison.Ordinal);
        monitor.Check();
        Assert.Null(engine.ThreadCeiling);
    }

    [Fact]
    public async Task AModelLoadedWhileHotStartsUnderTheCeiling()
    {
        using var engine = Engine();
        Zone(0, "90000");
        using var monitor = Monitor(engine);
        monitor.Check();
        Assert.Equal(2, engine.ThreadCeiling);

        await engine.LoadAsync("m");
        var scheduler = engine.GetLoadedScheduler("m")!;
        Assert.Equal(2, scheduler.MaxThreads);
        Assert.Equal(2, scheduler.Threads);
    }

    [Fact]
    public void UnreadableOrImplausibleZonesAreLeftOutAndTheHottestReadableOneCounts()
    {
        Zone(0, "not a number");
        Zone(1, "999999999");
        Zone(2, null);
        Zone(3, "-5000", "battery");
        Zone(4, "61500", "gpu-thermal");
        File.WriteAllText(Path.Combine(_root, "class", "thermal", "thermal_zone5"), "a file, not a folder");

        var zones = ThermalMonitor.ReadZones(_root);
        Assert.Equal(["thermal_zone3", "thermal_zone4"], zones.Select(z => z.Zone));
        Assert.Equal(61.5, new ThermalStatus(zones, 0, null).Hottest!.Celsius);
    }

    [Fact]
    public void ABoxWithoutThermalZonesIsLeftAlone()
    {
        using var engine = Engine();
        Directory.Delete(Path.Combine(_root, "class", "thermal"));
        using var monitor = Monitor(engine);
        monitor.Check();
        Assert.Empty(monitor.Status.Zones);
        Assert.Null(engine.ThreadCeiling);
    }
}
