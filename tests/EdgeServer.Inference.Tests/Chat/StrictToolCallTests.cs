using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Chat;

/// <summary>Scripted models with Qwen's templates that open a tool call on their own, with arguments no schema allows.</summary>
public sealed class StrictToolModels : IDisposable
{
    /// <summary>Writes text, then opens a call whose marker ends in the token that starts its JSON; the room is not one the schema allows.</summary>
    public const string Caller = "caller";

    public static readonly string[] CallerPieces = ["Let me check.", "\n<tool_", "call>\n{\"", "name\": \"set_light\", \"arguments\": {\"room\":", " \"attic\", \"on\": \"yes\"}}", "\n</tool_call>"];

    /// <summary>Writes the call marker inside its thinking, then calls after it (Qwen 3's template).</summary>
    public const string Thinker = "thinker";

    public static readonly string[] ThinkerPieces = ["<think>", "\nmaybe <tool_call> now", "\n</think>", "\n\n<tool_call>\n{\"", "name\": \"set_light\", \"arguments\": {\"room\":", " \"attic\", \"on\": \"yes\"}}\n</tool_call>"];

    /// <summary>A call whose arguments come a few tokens at a time, for a cut by max_tokens.</summary>
    public const string SlowCaller = "slow-caller";

    public static readonly string[] SlowCallerPieces = ["Let me check.", "\n<tool_call>\n{\"name\":", " \"set_light\",", " \"arguments\": {\"room\":", " \"attic\",", " \"on\": true}}", "\n</tool_call>"];

    /// <summary>Writes past the marker, in the marker's own token, what no call allows.</summary>
    public const string Stray = "stray";

    public static readonly string[] StrayPieces = ["<tool_call> oops", " {\"name\": \"set_light\", \"arguments\": {}}", "\n</tool_call>"];

    public StrictToolModels()
    {
        TestRuntime.Ensure();
        var dir = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), "strict-tools-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        ScriptedModel.WritePieces(Path.Combine(dir, Caller + ".gguf"), CallerPieces, chatTemplate: SuccessorModel.QwenTemplate);
        ScriptedModel.WritePieces(Path.Combine(dir, Thinker + ".gguf"), ThinkerPieces, chatTemplate: SuccessorModel.Qwen3Template);
        ScriptedModel.WritePieces(Path.Combine(dir, SlowCaller + ".gguf"), SlowCallerPieces, chatTemplate: SuccessorModel.QwenTemplate);
        ScriptedModel.WritePieces(Path.Combine(dir, Stray + ".gguf"), StrayPieces, chatTemplate: SuccessorModel.QwenTemplate);
        Engine = new InferenceEngine(
            new EngineOptions
            {
                Models =
                [
                    new ModelSource(Caller, Path.Combine(dir, Caller + ".gguf")),
                    new ModelSource(Thinker, Path.Combine(dir, Thinker + ".gguf")),
                    new ModelSource(SlowCaller, Path.Combine(dir, SlowCaller + ".gguf")),
                    new ModelSource(Stray, Path.Combine(dir, Stray + ".gguf")),
                    new ModelSource("successor", SuccessorModel.SharedPath),
                ],
                Scheduler = new() { Slots = 1, ContextPerSlot = 2048, Threads = 1 },
            },
            NullLoggerFactory.Instance);
    }

    public InferenceEngine Engine { get; }

    public void Dispose() => Engine.Dispose();
}

/// <summary>
/// Strict tools with tool_choice auto: the model answers freely until it opens a call, and from there a grammar makes
/// the call obey the tool's schema. The scripted models would write arguments the schema refuses.
/// </summary>
public sealed class StrictToolCallTests(StrictToolModels models) : IClassFixture<StrictToolModels>
{
    private const string LightSchema = """
        {"type":"object","properties":{"room":{"type":"string","enum":["kitchen","hall"]},"on":{"type":"boolean"}},"required":["room","on"],"additionalProperties":false}
        """;

    [Fact]
    public async Task AStrictCallTheModelOpensObeysTheSchema()
    {
        var (text, final) = await Run(StrictToolModels.Caller, strict: true);

        Assert.Equal("Let me check.", text.TrimEnd());
        Assert.Equal(FinishReason.ToolCalls, final.FinishReason);
        var call = Assert.Single(final.ToolCalls!);
        Assert.Equal("set_light", call.Name);
        AssertObeysSchema(call.Arguments);
    }

    [Fact]
    public async Task WithoutStrictTheSameCallKeepsTheModelsArguments()
    {
        var (text, final) = await Run(StrictToolModels.Caller, strict: false);

        Assert.Equal("Let me check.", text.TrimEnd());
        Assert.Equal(FinishReason.ToolCalls, final.FinishReason);
        Assert.Equal("""{"room":"attic","on":"yes"}""", Assert.Single(final.ToolCalls!).Arguments);
    }

    [Fact]
    public async Task TheMarkerInsideThinkingDoesNotStartTheGrammar()
    {
        var (_, final, reasoning) = await RunWithReasoning(StrictToolModels.Thinker, strict: true);

        Assert.Equal("maybe <tool_call> now", reasoning);
        Assert.Equal(FinishReason.ToolCalls, final.FinishReason);
        AssertObeysSchema(Assert.Single(final.ToolCalls!).Arguments);
    }

    [Fact]
    public async Task ATextReplyStaysUnconstrained()
    {
        // No chat template: the generic syntax, whose call must start the reply; the alphabet does not.
        var (text, final) = await Run("successor", strict: true);

        Assert.Equal(SuccessorModel.ChatReply, text);
        Assert.Equal(FinishReason.Stop, final.FinishReason);
        Assert.Null(final.ToolCalls);
    }

    [Fact]
    public async Task TextPastTheMarkerThatNoCallAllowsIsNeverFedToTheGrammar()
    {
        // llama.cpp aborts the process when its grammar is fed text it refuses: the reply stays free and is text.
        var (text, final) = await Run(StrictToolModels.Stray, strict: true);

        Assert.Equal(string.Concat(StrictToolModels.StrayPieces), text);
        Assert.Equal(FinishReason.Stop, final.FinishReason);
        Assert.Null(final.ToolCalls);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ACallCutOffByMaxTokensIsReadAsAPartialCall(bool strict)
    {
        // Five tokens: the text, the marker with the call's start, the name, the arguments' start, one value.
        var (text, final) = await Run(StrictToolModels.SlowCaller, strict, maxTokens: 5);

        Assert.Equal(FinishReason.Length, final.FinishReason);
        Assert.Null(final.ToolCalls);
        var cut = final.CutOffToolCalls;
        Assert.NotNull(cut);
        Assert.Equal(string.Empty, cut.Content);
        var call = Assert.Single(cut.Calls);
        Assert.Equal("set_light", call.Name);
        if (strict)
        {
            // The grammar took over from the marker: the value is one of the enum's, as far as it got.
            Assert.StartsWith("{\"room\":", call.Arguments, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal("{\"room\": \"attic\",", call.Arguments);
            Assert.Equal("Let me check.\n<tool_call>\n{\"name\": \"set_light\", \"arguments\": {\"room\": \"attic\",", text);
        }
    }

    private static void AssertObeysSchema(string arguments)
    {
        using var args = JsonDocument.Parse(arguments);
        Assert.Equal(["on", "room"], args.RootElement.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Contains(args.RootElement.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(args.RootElement.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
    }

    private async Task<(string Text, GenerationChunk Final)> Run(string model, bool strict, int maxTokens = 200)
    {
        var (text, final, _) = await RunWithReasoning(model, strict, maxTokens);
        return (text, final);
    }

    private async Task<(string Text, GenerationChunk Final, string Reasoning)> RunWithReasoning(string model, bool strict, int maxTokens = 200)
    {
        var request = new GenerationRequest
        {
            Model = model,
            Messages = [new ChatMessage("user", "Light?")],
            Tools = [new ToolDefinition("set_light", "Switch a light", LightSchema, Strict: strict), new ToolDefinition("get_weather", null, """{"type":"object"}""")],
            MaxTokens = maxTokens,
            Sampling = new SamplingParameters { Temperature = 0 },
        };
        var text = new StringBuilder();
        var reasoning = new StringBuilder();
        GenerationChunk final = default;
        await foreach (var chunk in (await models.Engine.StartAsync(request, default)).ReadAllAsync())
        {
            text.Append(chunk.Text);
            reasoning.Append(chunk.Reasoning);
            final = chunk;
        }

        return (text.ToString(), final, reasoning.ToString());
    }
}
