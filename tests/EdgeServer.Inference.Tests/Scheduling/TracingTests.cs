using System.Collections.Concurrent;
using System.Diagnostics;
using EdgeServer.Inference.Diagnostics;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Scheduling;

public class TracingTests
{
    [Fact]
    public async Task AGenerationIsTracedBelowTheCallersSpanWithQueuePromptAndGenerationChildren()
    {
        TestRuntime.Ensure();
        var spans = new ConcurrentBag<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is InferenceDiagnostics.ActivitySourceName or "test",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(listener);
        using var testSource = new ActivitySource("test");
        using var engine = new InferenceEngine(new EngineOptions { Models = [new ModelSource("m", SuccessorModel.SharedPath)], Scheduler = new() { Slots = 1, ContextPerSlot = 256, Threads = 1 } }, NullLoggerFactory.Instance);

        GenerationChunk final = default;
        ActivityTraceId trace;
        using (var request = testSource.StartActivity("request")!)
        {
            trace = request.TraceId;
            var session = await engine.StartAsync(new GenerationRequest { Model = "m", Prompt = "u", Sampling = new SamplingParameters { Temperature = 0 } }, default);
            await foreach (var chunk in session.ReadAllAsync())
            {
                final = chunk;
            }
        }

        // Other tests' engines trace on the same source at the same time: look at this trace only.
        var mine = spans.Where(s => s.TraceId == trace).ToList();
        var requestSpan = Assert.Single(mine, s => s.OperationName == "request");
        var generate = Assert.Single(mine, s => s.OperationName == "edgeserver.generate");
        Assert.Equal(requestSpan.SpanId, generate.ParentSpanId);
        Assert.Equal(requestSpan.TraceId, generate.TraceId);
        Assert.Equal("m", generate.GetTagItem("gen_ai.request.model"));
        Assert.Equal(final.Usage!.CompletionTokens, generate.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal("stop", generate.GetTagItem("gen_ai.response.finish_reasons"));
        string[] children = ["edgeserver.queue", "edgeserver.prompt", "edgeserver.generation"];
        var parts = children.Select(name => Assert.Single(mine, s => s.OperationName == name)).ToList();
        Assert.All(parts, p => Assert.Equal(generate.SpanId, p.ParentSpanId));
        // They follow each other and stay inside the whole.
        Assert.True(parts[0].StartTimeUtc >= generate.StartTimeUtc);
        Assert.True(parts[1].StartTimeUtc >= parts[0].StartTimeUtc + parts[0].Duration - TimeSpan.FromMilliseconds(1));
        Assert.True(parts[2].StartTimeUtc + parts[2].Duration <= generate.StartTimeUtc + generate.Duration + TimeSpan.FromMilliseconds(1));
        Assert.Equal(final.Timings!.TimeToFirstToken, parts[0].Duration + parts[1].Duration);
    }
}
