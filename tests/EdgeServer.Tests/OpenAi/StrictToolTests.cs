using System.ClientModel;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeServer.TestSupport;
using OpenAI;
using OpenAI.Chat;

namespace EdgeServer.Tests.OpenAi;

/// <summary>
/// A server of scripted models with Qwen 2.5's template that open a tool call on their own (tool_choice auto), with
/// arguments no schema of the tests allows: the reply's pieces are its tokens, so a test knows where max_tokens cuts.
/// </summary>
public sealed class StrictToolServerFixture : InProcessServer
{
    /// <summary>Writes text, then a call whose marker ends in the token that starts its JSON; the room is not one the schema allows.</summary>
    public const string Caller = "tool-caller";

    public static readonly string[] CallerPieces = ["Let me check.", "\n<tool_", "call>\n{\"", "name\": \"set_light\", \"arguments\": {\"room\":", " \"attic\", \"on\": \"yes\"}}", "\n</tool_call>"];

    /// <summary>A call whose arguments come a few tokens at a time.</summary>
    public const string SlowCaller = "slow-tool-caller";

    public static readonly string[] SlowCallerPieces = ["Let me check.", "\n<tool_call>\n{\"name\":", " \"set_light\",", " \"arguments\": {\"room\":", " \"attic\",", " \"on\": true}}", "\n</tool_call>"];

    public override async Task InitializeAsync()
    {
        var models = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), "strict-tools-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(models);
        ScriptedModel.WritePieces(Path.Combine(models, Caller + ".gguf"), CallerPieces, chatTemplate: SuccessorModel.QwenTemplate);
        ScriptedModel.WritePieces(Path.Combine(models, SlowCaller + ".gguf"), SlowCallerPieces, chatTemplate: SuccessorModel.QwenTemplate);
        Scratch = models;
        await StartAsync(
        [
            "--models-dir", models,
            "--threads", "1",
            "--slots", "1",
            "--ctx-size", "2048",
            "--Logging:LogLevel:Default=Warning",
        ]);
    }
}

[CollectionDefinition(Name)]
public sealed class StrictToolGroup : ICollectionFixture<StrictToolServerFixture>
{
    public const string Name = "strict-tools";
}

/// <summary>
/// Strict tools with tool_choice auto (the OpenAI JS SDK's zodFunction default): the model answers freely until it
/// opens a call, then a grammar makes the call obey the schema. And a call cut off by max_tokens comes back as a
/// call with partial arguments and finish_reason length, as OpenAI returns it.
/// </summary>
[Collection(StrictToolGroup.Name)]
public sealed class StrictToolTests(StrictToolServerFixture server)
{
    private const string LightSchema = """
        {"type":"object","properties":{"room":{"type":"string","enum":["kitchen","hall"]},"on":{"type":"boolean"}},"required":["room","on"],"additionalProperties":false}
        """;

    private const string Tools = $$$"""
        "tools":[{"type":"function","function":{"name":"set_light","parameters":{{{LightSchema}}}}}]
        """;

    private ChatClient Chat(string model) => new(model, new ApiKeyCredential("no-key-needed"),
        new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    [Fact]
    public async Task AStrictToolWithAutoChoiceGetsACallThatObeysItsSchema()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 200 };
        options.Tools.Add(ChatTool.CreateFunctionTool("set_light", "Switch a light", BinaryData.FromString(LightSchema), functionSchemaIsStrict: true));

        ClientResult<ChatCompletion> result = await Chat(StrictToolServerFixture.Caller).CompleteChatAsync([new UserChatMessage("Kitchen light on")], options);

        server.AssertMatchesSchema("CreateChatCompletionResponse", result.GetRawResponse().Content.ToString());
        var completion = result.Value;
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Equal("Let me check.", completion.Content.Single().Text.TrimEnd());
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("set_light", call.FunctionName);
        AssertObeysSchema(call.FunctionArguments.ToString());

        // Streamed the same: the text first, then the call.
        var text = new StringBuilder();
        var arguments = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in Chat(StrictToolServerFixture.Caller).CompleteChatStreamingAsync([new UserChatMessage("Kitchen light on")], options))
        {
            text.Append(string.Concat(update.ContentUpdate.Select(p => p.Text)));
            arguments.Append(string.Concat(update.ToolCallUpdates.Select(c => c.FunctionArgumentsUpdate?.ToString())));
            finish ??= update.FinishReason;
        }

        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.Equal("Let me check.", text.ToString().TrimEnd());
        Assert.Equal(call.FunctionArguments.ToString(), arguments.ToString());
    }

    [Fact]
    public async Task WithoutStrictTheModelsOwnArgumentsComeBack()
    {
        var body = await server.PostOkAsync("/v1/chat/completions", $$"""
            {"model":"{{StrictToolServerFixture.Caller}}","messages":[{"role":"user","content":"Kitchen light on"}],"temperature":0,"max_tokens":200,{{Tools}}}
            """);
        var call = JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls")[0];
        Assert.Equal("""{"room":"attic","on":"yes"}""", call.GetProperty("function").GetProperty("arguments").GetString());
    }

    [Fact]
    public async Task ACallCutOffByMaxTokensIsReturnedAsAPartialCall()
    {
        // Five tokens: the text, the marker with the call's start, the name, the arguments' start, one value.
        var request = $$"""
            {"model":"{{StrictToolServerFixture.SlowCaller}}","messages":[{"role":"user","content":"Kitchen light on"}],"temperature":0,"max_tokens":5,{{Tools}}
            """;
        var whole = await server.PostOkAsync("/v1/chat/completions", request + "}");
        server.AssertMatchesSchema("CreateChatCompletionResponse", whole);
        var choice = JsonDocument.Parse(whole).RootElement.GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var message = choice.GetProperty("message");
        Assert.Equal("Let me check.", message.GetProperty("content").GetString()!.TrimEnd());
        var call = Assert.Single(message.GetProperty("tool_calls").EnumerateArray().ToList());
        Assert.StartsWith("call_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("set_light", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("{\"room\": \"attic\",", call.GetProperty("function").GetProperty("arguments").GetString());

        var streamed = await server.PostOkAsync("/v1/chat/completions", request + ""","stream":true}""");
        var content = new StringBuilder();
        var arguments = new StringBuilder();
        string? name = null, finish = null;
        foreach (var data in ServerFixture.SseData(streamed))
        {
            server.AssertMatchesSchema("CreateChatCompletionStreamResponse", data);
            var streamedChoice = JsonDocument.Parse(data).RootElement.GetProperty("choices")[0];
            var delta = streamedChoice.GetProperty("delta");
            content.Append(delta.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null);
            if (delta.TryGetProperty("tool_calls", out var calls))
            {
                var function = calls[0].GetProperty("function");
                name ??= function.TryGetProperty("name", out var n) ? n.GetString() : null;
                arguments.Append(function.TryGetProperty("arguments", out var a) ? a.GetString() : null);
            }

            finish = streamedChoice.GetProperty("finish_reason").ValueKind == JsonValueKind.String ? streamedChoice.GetProperty("finish_reason").GetString() : finish;
        }

        Assert.Equal("length", finish);
        Assert.Equal("Let me check.", content.ToString().TrimEnd());
        Assert.Equal("set_light", name);
        Assert.Equal("{\"room\": \"attic\",", arguments.ToString());
    }

    private static void AssertObeysSchema(string arguments)
    {
        using var args = JsonDocument.Parse(arguments);
        Assert.Equal(["on", "room"], args.RootElement.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Contains(args.RootElement.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(args.RootElement.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
    }
}
