using EdgeServer.Inference.Scheduling;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Scheduling;

/// <summary>
/// One request must never stop or freeze a model: a failure in one slot ends that request only, a grammar
/// llama.cpp refuses is the request's own error before it is queued, and a costly grammar step never holds the
/// other slots. Each test has an engine of its own, since some break its decode loop on purpose.
/// </summary>
public sealed class IsolationTests : IDisposable
{
    private const string Model = "successor";
    private static readonly SamplingParameters Greedy = new() { Temperature = 0 };
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly InferenceEngine _engine;

    public IsolationTests()
    {
        TestRuntime.Ensure();
        _engine = new InferenceEngine(
            new EngineOptions
            {
                Models = [new ModelSource(Model, SuccessorModel.SharedPath)],
                Scheduler = new() { Slots = 2, ContextPerSlot = 256, BatchSize = 64, Threads = 2, QueueCapacity = 4, SamplingBudget = TimeSpan.FromSeconds(1) },
            },
            NullLoggerFactory.Instance);
    }

    public void Dispose() => _engine.Dispose();

    private static GenerationRequest Plain(string prompt) => new() { Model = Model, Prompt = prompt, Sampling = Greedy };

    private static GenerationRequest WithSchema(string schema) => new()
    {
        Model = Model,
        Messages = [new ChatMessage("user", "give json")],
        Sampling = Greedy,
        MaxTokens = 24,
        ResponseFormat = new ResponseFormat(ResponseFormatKind.JsonSchema, schema),
    };

    private async Task<ModelScheduler> Scheduler()
    {
        await _engine.LoadAsync(Model);
        return _engine.GetLoadedScheduler(Model)!;
    }

    private static async Task<string> Collect(IGenerationSession session)
    {
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        return text.ToString();
    }

    private async Task<string> Generate(GenerationRequest request) => await Collect(await _engine.StartAsync(request, default)).WaitAsync(Patience);

    private async Task ServesNormally()
    {
        Assert.Equal(SuccessorModel.ExpectedAfter('j'), await Generate(Plain("Hello j")));
        Assert.True(_engine.CheckHealth().Healthy, string.Join("; ", _engine.CheckHealth().Problems));
    }

    [Theory]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/a"}}}""")]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"string"}]}}}""")]
    public async Task ASchemaLlamaCppRefusesIsTheRequestsOwnErrorAndTheModelKeepsServing(string schema)
    {
        await ServesNormally();
        var error = await Assert.ThrowsAnyAsync<InvalidGenerationParameterException>(() => _engine.StartAsync(WithSchema(schema), default));
        Assert.Equal("response_format.json_schema.schema", error.Parameter);
        await ServesNormally();
    }

    [Fact]
    public async Task ASelfReferencingToolSchemaWithARequiredCallIsTheRequestsOwnError()
    {
        var request = new GenerationRequest
        {
            Model = Model,
            Messages = [new ChatMessage("user", "call it")],
            Sampling = Greedy,
            Tools = [new ToolDefinition("loop", null, """{"type":"object","properties":{"x":{"$ref":"#/$defs/a"}},"required":["x"],"$defs":{"a":{"$ref":"#/$defs/a"}}}""")],
            ToolChoice = new ToolChoice(ToolChoiceMode.Required),
        };
        var error = await Assert.ThrowsAnyAsync<InvalidGenerationParameterException>(() => _engine.StartAsync(request, default));
        Assert.StartsWith("tools", error.Parameter, StringComparison.Ordinal);
        await ServesNormally();
    }

    [Fact]
    public async Task AFailureWhileSamplingOneSlotEndsThatRequestOnly()
    {
        var scheduler = await Scheduler();
        scheduler.SamplingHook = r => { if (r.Prompt == "boom a") { throw new InvalidOperationException("injected sampling failure"); } };
        var doomed = _engine.StartAsync(Plain("boom a"), default);
        var fine = Generate(Plain("Hello j"));
        var error = await Assert.ThrowsAnyAsync<InferenceException>(async () => await Collect(await doomed));
        Assert.Contains("injected sampling failure", error.Message, StringComparison.Ordinal);
        Assert.Equal(SuccessorModel.ExpectedAfter('j'), await fine);
        scheduler.SamplingHook = null;
        await ServesNormally();
        Assert.Same(scheduler, _engine.GetLoadedScheduler(Model));
    }

    [Fact]
    public async Task AFailedDecodeEndsTheSequencesOfThatBatchAndTheLoopGoesOn()
    {
        var scheduler = await Scheduler();
        var fail = 1;
        scheduler.DecodeHook = () => Interlocked.Exchange(ref fail, 0) == 1 ? -3 : 0;
        var error = await Assert.ThrowsAsync<DecodeException>(() => Generate(Plain("Hello a")));
        Assert.Equal(-3, error.Status);
        await ServesNormally();
        Assert.Same(scheduler, _engine.GetLoadedScheduler(Model));
    }

    [Fact]
    public async Task ALoopThatKeepsFailingIsReportedAndTheModelIsReloaded()
    {
        var scheduler = await Scheduler();
        var running = await _engine.StartAsync(Plain("Hello a"), default);
        scheduler.LoopHook = () => throw new InvalidOperationException("injected loop failure");
        await Assert.ThrowsAnyAsync<InferenceException>(() => Collect(running).WaitAsync(Patience));

        // Three failed recoveries in a row stop the loop; the engine says so, then loads the model anew.
        var deadline = DateTime.UtcNow + Patience;
        while (_engine.GetLoadedScheduler(Model) is { } current && current == scheduler && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.NotNull(scheduler.Fault);
        while (_engine.CheckHealth() is { Healthy: false } health && DateTime.UtcNow < deadline)
        {
            Assert.Contains(health.Problems, p => p.Contains("decode loop of model 'successor' stopped", StringComparison.Ordinal));
            await Task.Delay(20);
        }

        await ServesNormally();
        Assert.NotSame(scheduler, _engine.GetLoadedScheduler(Model));
    }

    [Fact]
    public async Task AGrammarStepOverTheBudgetEndsItsRequestWhileTheOtherSlotGoesOn()
    {
        var scheduler = await Scheduler();
        using var release = new ManualResetEventSlim(false);
        scheduler.SamplingHook = r => { if (r.ResponseFormat.Kind == ResponseFormatKind.JsonObject) { release.Wait(Patience); } };
        var slow = _engine.StartAsync(WithSchema("{}") with { ResponseFormat = new ResponseFormat(ResponseFormatKind.JsonObject) }, default);
        try
        {
            // While the grammar step is stuck, the other slot generates its whole reply.
            Assert.Equal(SuccessorModel.ExpectedAfter('j'), await Generate(Plain("Hello j")));
            var error = await Assert.ThrowsAsync<SamplingBudgetExceededException>(async () => await Collect(await slow).WaitAsync(Patience));
            Assert.Contains("budget of 1 s", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            release.Set();
        }

        scheduler.SamplingHook = null;
        await ServesNormally();
    }

    [Fact]
    public async Task ShutdownEndsWhileAGrammarStepIsStuck()
    {
        var scheduler = await Scheduler();
        using var release = new ManualResetEventSlim(false);
        using var entered = new ManualResetEventSlim(false);
        scheduler.SamplingHook = _ =>
        {
            entered.Set();
            release.Wait(Patience);
        };
        var stuck = await _engine.StartAsync(WithSchema("""{"type":"object","properties":{"a":{"type":"string"}}}"""), default);
        var reading = Collect(stuck);
        Assert.True(entered.Wait(Patience));
        var disposing = Task.Run(_engine.Dispose);
        try
        {
            // Dispose returns although the grammar step still runs; it keeps the model alive rather than free it under the step.
            await disposing.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(scheduler.HasRunningSteps);
            await Assert.ThrowsAnyAsync<InferenceException>(() => reading.WaitAsync(Patience));
        }
        finally
        {
            release.Set();
        }
    }
}
