using EdgeServer.Inference.Pool;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Inference.Tests.Pool;

/// <summary>
/// The model pool on real llama.cpp: three models where the budget fits two, eviction of the least recently used idle
/// one, never of a busy one, a model that can never fit, keep-alive on a fake clock, one load for concurrent first
/// requests, and a failed load that is not remembered.
/// </summary>
public sealed class ModelPoolTests : IDisposable
{
    private static readonly SamplingParameters Greedy = new() { Temperature = 0 };
    private static readonly string[] Models = ["a", "b", "c"];
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly List<ManualResetEventSlim> _gates = [];
    private InferenceEngine? _engine;

    public ModelPoolTests() => TestRuntime.Ensure();

    public void Dispose()
    {
        // A gate left shut would hold a decode loop, and the engine's disposal with it.
        _gates.ForEach(g => g.Set());
        _engine?.Dispose();
        _gates.ForEach(g => g.Dispose());
    }

    private static readonly Lazy<long> OneModel = new(() =>
    {
        using var probe = Engine(budget: null);
        return probe.FindModel("a")!.MemoryBytes;
    });

    /// <summary>What one model takes against the budget, as the engine counts it.</summary>
    private static long Footprint() => OneModel.Value;

    private static InferenceEngine Engine(long? budget, TimeSpan? keepAlive = null, TimeProvider? clock = null) => new(
        new EngineOptions
        {
            Models = Models.Select(id => new ModelSource(id, SuccessorModel.SharedPath)).ToList(),
            Scheduler = new() { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = 2, QueueCapacity = 2 },
            MemoryBudget = budget is { } bytes ? new MemoryBudget(bytes, "test") : null,
            KeepAlive = keepAlive ?? TimeSpan.FromMinutes(5),
        },
        NullLoggerFactory.Instance, clock: clock);

    private InferenceEngine Start(double models, TimeSpan? keepAlive = null) =>
        _engine = Engine((long)(Footprint() * models), keepAlive, _clock);

    private static GenerationRequest Ask(string model, string prompt = "Hello j", bool endless = false) =>
        new() { Model = model, Prompt = prompt, Sampling = Greedy, IgnoreEos = endless, MaxTokens = endless ? 200 : null };

    private static async Task<string> Collect(IGenerationSession session)
    {
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        return text.ToString();
    }

    /// <summary>Loads a model and shuts its decode loop behind a gate: a request to it stays busy until the gate opens, however fast this machine decodes.</summary>
    private async Task<ManualResetEventSlim> Hold(InferenceEngine engine, string id)
    {
        await engine.LoadAsync(id);
        var gate = new ManualResetEventSlim();
        _gates.Add(gate);
        engine.GetLoadedScheduler(id)!.LoopHook = () => gate.Wait();
        return gate;
    }

    private ModelStatus Status(string id) => _engine!.FindModel(id)!.Status;

    private async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(20);
        }

        Assert.True(condition());
    }

    [Fact]
    public async Task AThirdModelEvictsTheLeastRecentlyUsedIdleOne()
    {
        var engine = Start(models: 2.5);
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("a"), default)));
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("b"), default)));
        await Until(() => Status("a") == ModelStatus.Loaded && Status("b") == ModelStatus.Loaded);

        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("c"), default)));
        Assert.Equal(ModelStatus.Available, Status("a"));
        Assert.Equal(ModelStatus.Loaded, Status("b"));
        Assert.Equal(ModelStatus.Loaded, Status("c"));
        Assert.True(engine.Memory.UsedBytes <= engine.Memory.BudgetBytes);
    }

    [Fact]
    public async Task ABusyModelIsNeverEvictedAndItsRequestFinishes()
    {
        var engine = Start(models: 2.5);
        await engine.LoadAsync("b");
        _clock.Advance(TimeSpan.FromSeconds(1));

        // "a" is used last, but it is busy: "c" must evict "b".
        var busy = await engine.StartAsync(Ask("a", "Hello 1", endless: true), default);
        var running = Collect(busy);
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("c"), default)));
        Assert.Equal(ModelStatus.Available, Status("b"));
        Assert.Equal(ModelStatus.Loaded, Status("a"));
        Assert.StartsWith("23456789", await running, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithEveryOtherModelBusyARequestWaitsForRoomWithinItsDeadline()
    {
        var engine = Start(models: 1.5);
        var gate = await Hold(engine, "a");
        var busy = await engine.StartAsync(Ask("a", "Hello 1", endless: true), default);
        using var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.StartAsync(Ask("b"), deadline.Token));

        // Once "a" has finished, "b" gets its room.
        var waiting = engine.StartAsync(Ask("b"), default);
        gate.Set();
        Assert.StartsWith("23456789", await Collect(busy), StringComparison.Ordinal);
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await waiting));
        Assert.Equal(ModelStatus.Available, Status("a"));
    }

    [Fact]
    public async Task AModelBiggerThanTheBudgetIsRefusedAtOnceWithTheNumbers()
    {
        var engine = Start(models: 0.5);
        var e = await Assert.ThrowsAsync<ModelTooLargeException>(() => engine.StartAsync(Ask("a"), default));
        Assert.Contains("needs", e.Message, StringComparison.Ordinal);
        Assert.Contains("budget", e.Message, StringComparison.Ordinal);
        Assert.Equal(ModelStatus.Available, Status("a"));
    }

    [Fact]
    public async Task AnIdleModelUnloadsAfterItsKeepAliveAndARequestsOwnKeepAliveWins()
    {
        var engine = Start(models: 3, keepAlive: TimeSpan.FromMinutes(5));
        await Collect(await engine.StartAsync(Ask("a"), default));
        await Collect(await engine.StartAsync(Ask("b") with { KeepAlive = TimeSpan.FromSeconds(10) }, default));
        await Collect(await engine.StartAsync(Ask("c") with { KeepAlive = TimeSpan.FromSeconds(-1) }, default));
        await Until(() => engine.FindModel("b")!.ExpiresAt is not null);

        _clock.Advance(TimeSpan.FromSeconds(11));
        await Until(() => Status("b") == ModelStatus.Available);
        Assert.Equal(ModelStatus.Loaded, Status("a"));

        _clock.Advance(TimeSpan.FromMinutes(5));
        await Until(() => Status("a") == ModelStatus.Available);
        Assert.Equal(ModelStatus.Loaded, Status("c"));
        Assert.Null(engine.FindModel("c")!.ExpiresAt);
    }

    [Fact]
    public async Task KeepAliveZeroUnloadsRightAfterTheRequest()
    {
        var engine = Start(models: 3);
        await Collect(await engine.StartAsync(Ask("a") with { KeepAlive = TimeSpan.Zero }, default));
        await Until(() => Status("a") == ModelStatus.Available);
        Assert.Equal(0, engine.Memory.UsedBytes);
    }

    [Fact]
    public async Task ConcurrentFirstRequestsLoadTheModelOnce()
    {
        var engine = Start(models: 3);
        var loads = 0;
        engine.BeforeLoad = _ =>
        {
            Interlocked.Increment(ref loads);
            Thread.Sleep(200);
        };
        var replies = await Task.WhenAll(Enumerable.Range(0, 3).Select(async _ => await Collect(await engine.StartAsync(Ask("a"), default))));
        Assert.All(replies, r => Assert.Equal("klmnopqrstuvwxyzé€", r));
        Assert.Equal(1, loads);
    }

    [Fact]
    public async Task AFailedLoadIsToldToEveryWaiterAndTriedAgainNextTime()
    {
        var engine = Start(models: 3);
        var fail = true;
        engine.BeforeLoad = _ =>
        {
            Thread.Sleep(100);
            if (fail)
            {
                throw new InferenceException("injected load failure");
            }
        };
        var waiters = Enumerable.Range(0, 2).Select(_ => engine.StartAsync(Ask("a"), default)).ToList();
        foreach (var waiter in waiters)
        {
            var e = await Assert.ThrowsAsync<ModelUnavailableException>(() => waiter);
            Assert.Contains("injected load failure", e.Message, StringComparison.Ordinal);
        }

        Assert.Equal(ModelStatus.Available, Status("a"));
        Assert.Contains("injected load failure", engine.FindModel("a")!.Error, StringComparison.Ordinal);
        fail = false;
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("a"), default)));
        Assert.Null(engine.FindModel("a")!.Error);
    }

    [Fact]
    public async Task AnEmbeddingContextThatCannotFitBesideItsModelIsRefusedAndTheModelStillGenerates()
    {
        var embedding = EdgeServer.Inference.Models.MemoryEstimator.EstimateEmbedding(EdgeServer.Inference.Gguf.GgufReader.Read(SuccessorModel.SharedPath), new() { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = 2, QueueCapacity = 2 });
        var engine = _engine = Engine(Footprint() + embedding.Total / 2, clock: _clock);
        var e = await Assert.ThrowsAsync<ModelTooLargeException>(() => engine.EmbedAsync("a", [new EmbeddingInput("hello")], default));
        Assert.Contains("embedding context", e.Message, StringComparison.Ordinal);
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("a"), default)));

        // With room for it, the embedding context counts against the budget.
        using var roomy = Engine(Footprint() + embedding.Total * 2, clock: _clock);
        await roomy.EmbedAsync("a", [new EmbeddingInput("hello")], default);
        Assert.Equal(Footprint() + embedding.Total, roomy.Memory.UsedBytes);
    }

    [Fact]
    public async Task UnloadWhenIdleReturnsAtOnceForABusyModelAndFreesItWhenItsRequestEnds()
    {
        var engine = Start(models: 3);
        var gate = await Hold(engine, "a");
        var busy = await engine.StartAsync(Ask("a", "Hello 1", endless: true), default);

        // The decode loop is held: a call that waited for the request would not return.
        Assert.True(await engine.UnloadWhenIdleAsync("a", default).WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(ModelStatus.Loaded, Status("a"));

        gate.Set();
        Assert.StartsWith("23456789", await Collect(busy), StringComparison.Ordinal);
        await Until(() => Status("a") == ModelStatus.Available);

        // An idle model is freed before the call returns; one not loaded is a false.
        await engine.LoadAsync("b");
        Assert.True(await engine.UnloadWhenIdleAsync("b", default));
        Assert.Equal(ModelStatus.Available, Status("b"));
        Assert.False(await engine.UnloadWhenIdleAsync("c", default));
    }

    [Fact]
    public async Task UnloadWaitsForABusyModelOrRefusesWhenAskedNotToWait()
    {
        var engine = Start(models: 3);
        var gate = await Hold(engine, "a");
        var busy = await engine.StartAsync(Ask("a", "Hello 1", endless: true), default);
        await Assert.ThrowsAsync<ModelBusyException>(() => engine.UnloadAsync("a", wait: false, default));
        var unloading = engine.UnloadAsync("a", wait: true, default);
        gate.Set();
        Assert.StartsWith("23456789", await Collect(busy), StringComparison.Ordinal);
        Assert.True(await unloading);
        Assert.Equal(ModelStatus.Available, Status("a"));
        Assert.False(await engine.UnloadAsync("a", wait: false, default));
    }
}
