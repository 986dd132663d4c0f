using EdgeServer.Inference.Scheduling;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Models;

/// <summary>
/// Settings of one model (slots, context, KV cache type, flash attention, aliases, default sampling) beside models
/// on the engine's settings, on real llama.cpp.
/// </summary>
public sealed class ModelSettingsTests
{
    private static readonly SchedulerOptions Engine = new() { Slots = 2, ContextPerSlot = 512, BatchSize = 64, Threads = 2, QueueCapacity = 2 };

    public ModelSettingsTests() => TestRuntime.Ensure();

    private static InferenceEngine Start(params ModelSource[] models) =>
        new(new EngineOptions { Models = models, Scheduler = Engine }, NullLoggerFactory.Instance);

    private static async Task<string> Complete(InferenceEngine engine, string model, string prompt = "Hello j")
    {
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in (await engine.StartAsync(new GenerationRequest { Model = model, Prompt = prompt, Sampling = new() { Temperature = 0 } }, default)).ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        return text.ToString();
    }

    [Fact]
    public async Task EachModelRunsWithItsOwnSlotsContextAndKvCache()
    {
        using var engine = Start(
            new ModelSource("plain", SuccessorModel.SharedPath),
            new ModelSource("tuned", SuccessorModel.SharedPath) { Settings = new() { Slots = 1, ContextPerSlot = 256, KvCacheType = KvCacheType.Q8_0 } });

        Assert.Equal("klmnopqrstuvwxyzé€", await Complete(engine, "plain"));
        Assert.Equal("klmnopqrstuvwxyzé€", await Complete(engine, "tuned"));

        var plain = engine.GetLoadedScheduler("plain")!;
        var tuned = engine.GetLoadedScheduler("tuned")!;
        Assert.Equal(512, plain.ContextPerSlot);
        Assert.Equal(256, tuned.ContextPerSlot);
        Assert.Equal(2, plain.Snapshot().Slots);
        Assert.Equal(1, tuned.Snapshot().Slots);
        Assert.Equal(256, engine.FindModel("tuned")!.ContextLength);

        // One slot of half the context in a q8_0 cache: its estimate is the smaller one.
        Assert.True(engine.FindModel("tuned")!.MemoryBytes < engine.FindModel("plain")!.MemoryBytes);
    }

    [Fact]
    public async Task AnAliasReachesTheSameModel()
    {
        using var engine = Start(new ModelSource("successor", SuccessorModel.SharedPath) { Settings = new() { Aliases = ["gpt-4o-mini", "successor:latest"] } });

        Assert.Equal("klmnopqrstuvwxyzé€", await Complete(engine, "gpt-4o-mini"));
        var byAlias = engine.FindModel("successor:latest")!;
        Assert.Equal("successor", byAlias.Id);
        Assert.Equal(["gpt-4o-mini", "successor:latest"], byAlias.Aliases);
        Assert.Equal(ModelStatus.Loaded, byAlias.Status);
        Assert.Single(engine.ListModels());

        Assert.True(await engine.UnloadAsync("gpt-4o-mini", wait: true, default));
        Assert.Equal(ModelStatus.Available, engine.FindModel("successor")!.Status);
        Assert.Null(engine.FindModel("gpt-4o"));
        await Assert.ThrowsAsync<ModelNotFoundException>(() => Complete(engine, "gpt-4o"));
    }

    [Fact]
    public void AnAliasThatIsAnotherModelsNameIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => Start(
            new ModelSource("a", SuccessorModel.SharedPath),
            new ModelSource("b", SuccessorModel.SharedPath) { Settings = new() { Aliases = ["a"] } }));
        Assert.Contains("'a'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AQuantizedKvCacheWithoutFlashAttentionIsRefusedBeforeLlamaCppSeesIt()
    {
        var e = Assert.Throws<ArgumentException>(() => Start(
            new ModelSource("a", SuccessorModel.SharedPath) { Settings = new() { KvCacheType = KvCacheType.Q4_0, FlashAttention = FlashAttention.Off } }));
        Assert.Contains("q4_0 KV cache needs flash attention", e.Message, StringComparison.Ordinal);
        Assert.Contains("'a'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AModelsDefaultSamplingIsInItsDescription()
    {
        var sampling = SamplingParameters.Default with { Temperature = 0.2f, TopK = 5 };
        using var engine = Start(
            new ModelSource("plain", SuccessorModel.SharedPath),
            new ModelSource("tuned", SuccessorModel.SharedPath) { Settings = new() { Sampling = sampling } });
        Assert.Equal(sampling, engine.FindModel("tuned")!.Sampling);
        Assert.Equal(SamplingParameters.Default, engine.FindModel("plain")!.Sampling);
    }

    [Fact]
    public async Task FlashAttentionOffStillGenerates()
    {
        using var engine = Start(new ModelSource("a", SuccessorModel.SharedPath) { Settings = new() { FlashAttention = FlashAttention.Off } });
        Assert.Equal("klmnopqrstuvwxyzé€", await Complete(engine, "a"));
    }
}
