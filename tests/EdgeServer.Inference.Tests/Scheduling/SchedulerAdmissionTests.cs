using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Scheduling;

public class SchedulerAdmissionTests
{
    [Fact]
    public async Task BeyondSlotsPlusQueueANewRequestIsRefusedAsBusyAndRunningOnesAreUndisturbed()
    {
        TestRuntime.Ensure();
        using var engine = new InferenceEngine(
            new EngineOptions
            {
                Models = [new ModelSource("m", SuccessorModel.SharedPath)],
                Scheduler = new() { Slots = 1, QueueCapacity = 1, ContextPerSlot = 256, BatchSize = 64, Threads = 1 },
            },
            NullLoggerFactory.Instance);
        var greedy = new SamplingParameters { Temperature = 0 };
        var running = await engine.StartAsync(new GenerationRequest { Model = "m", Prompt = "1", IgnoreEos = true, MaxTokens = 100, Sampling = greedy }, default);
        var waiting = await engine.StartAsync(new GenerationRequest { Model = "m", Prompt = "w", Sampling = greedy }, default);

        var busy = await Assert.ThrowsAsync<ServerBusyException>(() => engine.StartAsync(new GenerationRequest { Model = "m", Prompt = "a", Sampling = greedy }, default));
        Assert.True(busy.RetryAfter > TimeSpan.Zero);

        var first = await Collect(running);
        Assert.Equal(100, first.Usage!.CompletionTokens);
        Assert.Equal("xyzé€", (await Collect(waiting)).Text);

        // Once they are done, there is room again.
        var after = await engine.StartAsync(new GenerationRequest { Model = "m", Prompt = "a", MaxTokens = 2, Sampling = greedy }, default);
        Assert.Equal("bc", (await Collect(after)).Text);
    }

    private static async Task<(string Text, GenerationUsage? Usage)> Collect(IGenerationSession session)
    {
        var text = new System.Text.StringBuilder();
        GenerationUsage? usage = null;
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
            usage ??= chunk.Usage;
        }

        return (text.ToString(), usage);
    }
}
