using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Tests.Gguf;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Scheduling;

/// <summary>One engine over generated models, shared by the generation tests.</summary>
public sealed class EngineFixture : IDisposable
{
    public const string Model = "successor";
    public const string Broken = "broken";

    public EngineFixture()
    {
        TestRuntime.Ensure();
        var broken = GgufReaderTests.Temp("broken.gguf", File.ReadAllBytes(SuccessorModel.SharedPath)[..4096]);
        Engine = new InferenceEngine(
            new EngineOptions
            {
                Models = [new ModelSource(Model, SuccessorModel.SharedPath), new ModelSource(Broken, broken)],
                Scheduler = new() { Slots = 2, ContextPerSlot = 256, BatchSize = 64, Threads = 2, QueueCapacity = 4 },
            },
            NullLoggerFactory.Instance);
    }

    public InferenceEngine Engine { get; }

    public void Dispose() => Engine.Dispose();
}

public class GenerationTests(EngineFixture fixture) : IClassFixture<EngineFixture>
{
    private static readonly SamplingParameters Greedy = new() { Temperature = 0 };
    private InferenceEngine Engine => fixture.Engine;

    [Theory]
    [InlineData("Hello j")]
    [InlineData("count 3")]
    [InlineData("x")]
    public async Task GreedyOutputIsExactlyWhatTheModelWasBuiltToSay(string prompt)
    {
        var (text, final) = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = prompt, Sampling = Greedy });
        Assert.Equal(SuccessorModel.ExpectedAfter(prompt[^1]), text);
        Assert.Equal(FinishReason.Stop, final.FinishReason);
    }

    [Fact]
    public async Task ChatUsesTheChatMLFallbackAndTheReplyFollowsItsFinalNewline()
    {
        Assert.Equal("chatml (fallback: the model has no chat template)", (await LoadedDescriptor()).ChatTemplate);
        var (text, final) = await Run(new GenerationRequest
        {
            Model = EngineFixture.Model,
            Messages = [new ChatMessage("system", "Be brief."), new ChatMessage("user", "Say the alphabet")],
            Sampling = Greedy,
        });
        Assert.Equal(SuccessorModel.ChatReply, text);
        // 26 letters + 5 byte tokens ("é" is 2 bytes, "€" is 3); the end-of-text token is not counted.
        Assert.Equal(31, final.Usage!.CompletionTokens);
        Assert.Equal(final.Usage.PromptTokens + 31, final.Usage.TotalTokens);
    }

    [Fact]
    public async Task MaxTokensEndsWithLength()
    {
        var (text, final) = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = "a", MaxTokens = 5, Sampling = Greedy });
        Assert.Equal("bcdef", text);
        Assert.Equal(FinishReason.Length, final.FinishReason);
        Assert.Equal(5, final.Usage!.CompletionTokens);
    }

    [Fact]
    public async Task AStopSequenceSpanningTokensEndsTheTextBeforeIt()
    {
        var (text, final) = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = "a", Stop = ["fgh", "zzz"], Sampling = Greedy });
        Assert.Equal("bcde", text);
        Assert.Equal(FinishReason.Stop, final.FinishReason);
    }

    [Fact]
    public async Task MultiByteCharactersMadeOfSeveralTokensAreNeverSplit()
    {
        var chunks = new List<string>();
        var session = await Engine.StartAsync(new GenerationRequest { Model = EngineFixture.Model, Prompt = "x", Sampling = Greedy }, default);
        await foreach (var chunk in session.ReadAllAsync())
        {
            chunks.Add(chunk.Text);
        }

        Assert.Equal("yzé€", string.Concat(chunks));
        Assert.Contains("é", chunks);
        Assert.Contains("€", chunks);
        Assert.All(chunks, c => Assert.DoesNotContain('\uFFFD', c));
    }

    [Fact]
    public async Task TokenizeAndDetokenizeRoundTrip()
    {
        await Engine.LoadAsync(EngineFixture.Model);
        var model = Engine.GetLoadedScheduler(EngineFixture.Model)!.Model;
        const string text = "hello wörld 42 €";
        var tokens = model.Tokenize(text, addSpecial: true, parseSpecial: false);
        Assert.Equal(SpmVocabulary.Bos, tokens[0]);
        Assert.Equal(SuccessorModel.Vocabulary["▁h"], tokens[1]);
        Assert.Contains(SpmVocabulary.ByteToken(0xC3), tokens); // ö falls back to bytes
        Assert.Equal(text, model.Detokenize(tokens.AsSpan(1)).TrimStart());
    }

    [Fact]
    public async Task APromptThatDoesNotFitIsRefusedBeforeAnyWork()
    {
        var before = Engine.PromptTokensEvaluated(EngineFixture.Model);
        var e = await Assert.ThrowsAsync<ContextLengthExceededException>(() =>
            Engine.StartAsync(new GenerationRequest { Model = EngineFixture.Model, Prompt = new string('a', 300), Sampling = Greedy }, default));
        Assert.Equal(256, e.ContextLength);
        await Assert.ThrowsAsync<ContextLengthExceededException>(() =>
            Engine.StartAsync(new GenerationRequest { Model = EngineFixture.Model, Prompt = "abc", MaxTokens = 300, Sampling = Greedy }, default));
        Assert.Equal(before, Engine.PromptTokensEvaluated(EngineFixture.Model));
    }

    [Fact]
    public async Task GenerationThatReachesTheEndOfTheContextFinishesWithLength()
    {
        // "1" leads to "23456789" then end of text; IgnoreEos keeps going until the 256-token context is full.
        var (_, final) = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = new string('x', 200) + " 1", IgnoreEos = true, Sampling = Greedy });
        Assert.Equal(FinishReason.Length, final.FinishReason);
        Assert.Equal(256, final.Usage!.PromptTokens + final.Usage.CompletionTokens);
    }

    [Fact]
    public async Task AnUnknownModelAndABrokenFileGiveTypedErrors()
    {
        await Assert.ThrowsAsync<ModelNotFoundException>(() => Engine.StartAsync(new GenerationRequest { Model = "nope", Prompt = "a" }, default));
        var e = await Assert.ThrowsAsync<ModelUnavailableException>(() => Engine.StartAsync(new GenerationRequest { Model = EngineFixture.Broken, Prompt = "a" }, default));
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
        var broken = Engine.FindModel(EngineFixture.Broken)!;
        Assert.Equal(ModelStatus.Unavailable, broken.Status);
        Assert.Contains("broken.gguf", broken.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("temperature")]
    [InlineData("top_p")]
    [InlineData("min_p")]
    [InlineData("presence_penalty")]
    public async Task OutOfRangeSamplingIsRefused(string parameter)
    {
        var sampling = parameter switch
        {
            "temperature" => new SamplingParameters { Temperature = 3 },
            "top_p" => new SamplingParameters { TopP = 0 },
            "min_p" => new SamplingParameters { MinP = float.NaN },
            _ => new SamplingParameters { PresencePenalty = 2.5f },
        };
        var e = await Assert.ThrowsAsync<InvalidGenerationParameterException>(() =>
            Engine.StartAsync(new GenerationRequest { Model = EngineFixture.Model, Prompt = "a", Sampling = sampling }, default));
        Assert.Equal(parameter, e.Parameter);
    }

    [Fact]
    public async Task SampledOutputWithASeedIsReproducible()
    {
        var sampling = new SamplingParameters { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = 42 };
        var a = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = "g", Sampling = sampling, MaxTokens = 12 });
        var b = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = "g", Sampling = sampling, MaxTokens = 12 });
        Assert.Equal(a.Text, b.Text);
    }

    [Fact]
    public async Task ConcurrentRequestsGetTheSameOutputAsAlone()
    {
        string[] prompts = ["Hello j", "count 3", "a", "x", "q"];
        var results = await Task.WhenAll(prompts.Select(p =>
            Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = p, Sampling = Greedy })));
        for (var i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(SuccessorModel.ExpectedAfter(prompts[i][^1]), results[i].Text);
        }
    }

    [Fact]
    public async Task ASecondTurnReusesTheCachedPrefix()
    {
        var history = new List<ChatMessage> { new("user", "first question about the alphabet") };
        var (reply, first) = await Run(new GenerationRequest { Model = EngineFixture.Model, Messages = history, Sampling = Greedy });
        history.Add(new ChatMessage("assistant", reply));
        history.Add(new ChatMessage("user", "again"));
        var before = Engine.PromptTokensEvaluated(EngineFixture.Model);
        var (_, second) = await Run(new GenerationRequest { Model = EngineFixture.Model, Messages = history, Sampling = Greedy });
        var evaluated = Engine.PromptTokensEvaluated(EngineFixture.Model) - before;
        Assert.True(second.Usage!.CachedPromptTokens >= first.Usage!.PromptTokens - 1, $"cached {second.Usage.CachedPromptTokens} of the first prompt's {first.Usage.PromptTokens}");
        Assert.Equal(second.Usage.PromptTokens - second.Usage.CachedPromptTokens, evaluated);
    }

    [Fact]
    public async Task ACancelledStreamFreesItsSlot()
    {
        using var cts = new CancellationTokenSource();
        // Fill both slots with endless generations, then cancel one: a new request must get its slot.
        var endless = new GenerationRequest { Model = EngineFixture.Model, Prompt = "1", IgnoreEos = true, MaxTokens = 200, Sampling = Greedy };
        var a = await Engine.StartAsync(endless, cts.Token);
        var b = await Engine.StartAsync(endless, default);
        await using var readerA = a.ReadAllAsync(cts.Token).GetAsyncEnumerator();
        Assert.True(await readerA.MoveNextAsync());
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => { while (await readerA.MoveNextAsync()) { } });

        var (text, _) = await Run(new GenerationRequest { Model = EngineFixture.Model, Prompt = "w", Sampling = Greedy }).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("xyzé€", text);
        await foreach (var _ in b.ReadAllAsync())
        {
        }
    }

    private async Task<ModelDescriptor> LoadedDescriptor()
    {
        await Engine.LoadAsync(EngineFixture.Model);
        return Engine.FindModel(EngineFixture.Model)!;
    }

    private async Task<(string Text, GenerationChunk Final)> Run(GenerationRequest request)
    {
        var session = await Engine.StartAsync(request, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
            if (chunk.IsFinal)
            {
                return (text.ToString(), chunk);
            }
        }

        throw new InvalidOperationException("No final chunk.");
    }
}

public class TrainedModelSmokeTests
{
    [SkippableFact]
    public async Task OnceUponATimeContinuesAsAStory()
    {
        var path = SharedPaths.Stories260K;
        Skip.If(SharedPaths.MissingReason(path) is not null, SharedPaths.MissingReason(path));
        TestRuntime.Ensure();
        using var engine = new InferenceEngine(new EngineOptions { Models = [new ModelSource("stories", path)], Scheduler = new() { Slots = 1, Threads = 1, ContextPerSlot = 512 } }, NullLoggerFactory.Instance);
        var session = await engine.StartAsync(new GenerationRequest { Model = "stories", Prompt = "Once upon a time", MaxTokens = 60, Sampling = new SamplingParameters { Temperature = 0 } }, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        // The model's README records llama.cpp's own greedy continuation of this prompt.
        Assert.StartsWith(", there was a little girl named Lily. She loved to play outside in the park.", text.ToString(), StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData(0f)]
    [InlineData(0.8f)]
    public async Task AStoryModelForcedToCallAToolReturnsAValidCall(float temperature)
    {
        var path = SharedPaths.Stories260K;
        Skip.If(SharedPaths.MissingReason(path) is not null, SharedPaths.MissingReason(path));
        TestRuntime.Ensure();
        using var engine = new InferenceEngine(new EngineOptions { Models = [new ModelSource("stories", path)], Scheduler = new() { Slots = 1, Threads = 1, ContextPerSlot = 1024 } }, NullLoggerFactory.Instance);
        var request = new GenerationRequest
        {
            Model = "stories",
            Messages = [new ChatMessage("user", "Turn on the kitchen light")],
            Tools = [new ToolDefinition("set_light", "Switch a light", """{"type":"object","properties":{"room":{"enum":["kitchen","hall"]},"on":{"type":"boolean"}},"required":["room","on"]}""")],
            ToolChoice = new ToolChoice(ToolChoiceMode.Required),
            MaxTokens = 300,
            Sampling = new SamplingParameters { Temperature = temperature, Seed = 7 },
        };

        GenerationChunk final = default;
        await foreach (var chunk in (await engine.StartAsync(request, default)).ReadAllAsync())
        {
            final = chunk;
        }

        // A 260K-parameter story model knows nothing of tools; the grammar makes the reply a call all the same.
        Assert.Equal(FinishReason.ToolCalls, final.FinishReason);
        var call = Assert.Single(final.ToolCalls!);
        Assert.Equal("set_light", call.Name);
        using var args = System.Text.Json.JsonDocument.Parse(call.Arguments);
        Assert.Contains(args.RootElement.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(args.RootElement.GetProperty("on").ValueKind, new[] { System.Text.Json.JsonValueKind.True, System.Text.Json.JsonValueKind.False });
    }
}

public class ModelFolderTests
{
    [Fact]
    public async Task BrokenAndUnsupportedFilesAreListedUnavailableWithTheirReasonAndTheGoodOneServes()
    {
        TestRuntime.Ensure();
        var dir = Path.Combine(Path.GetDirectoryName(GgufReaderTests.TempPath("x"))!, "folder");
        Directory.CreateDirectory(dir);
        File.Copy(SuccessorModel.SharedPath, Path.Combine(dir, "good.gguf"), overwrite: true);
        File.WriteAllBytes(Path.Combine(dir, "truncated.gguf"), File.ReadAllBytes(SuccessorModel.SharedPath)[..3000]);
        File.WriteAllText(Path.Combine(dir, "readme.gguf"), "these are my notes, not a model file");
        new GgufWriter()
            .Add("general.architecture", "edgeserver-imaginary")
            .Add("general.name", "alien")
            .AddTensor("x.weight", [32], GgmlType.F32, s => GgmlEncoding.Write(s, new float[32], GgmlType.F32))
            .Write(Path.Combine(dir, "alien.gguf"));

        using var engine = new InferenceEngine(new EngineOptions { Models = ModelCatalog.Discover([], dir) }, NullLoggerFactory.Instance);
        var models = engine.ListModels().ToDictionary(m => m.Id);
        Assert.Equal(["alien", "good", "readme", "truncated"], models.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(ModelStatus.Available, models["good"].Status);
        Assert.Equal(ModelStatus.Unavailable, models["truncated"].Status);
        Assert.Contains("truncated", models["truncated"].Error, StringComparison.Ordinal);
        Assert.Equal(ModelStatus.Unavailable, models["readme"].Status);
        Assert.Contains("not a GGUF file", models["readme"].Error, StringComparison.Ordinal);
        Assert.Equal(ModelStatus.Unavailable, models["alien"].Status);
        Assert.Contains("edgeserver-imaginary", models["alien"].Error, StringComparison.Ordinal);

        var session = await engine.StartAsync(new GenerationRequest { Model = "good", Prompt = "w", Sampling = new SamplingParameters { Temperature = 0 } }, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        Assert.Equal("xyzé€", text.ToString());
    }
}
