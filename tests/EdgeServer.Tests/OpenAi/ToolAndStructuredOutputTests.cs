using System.ClientModel;
using System.Text;
using System.Text.Json;
using EdgeServer.TestSupport;
using OpenAI;
using OpenAI.Chat;

namespace EdgeServer.Tests.OpenAi;

/// <summary>
/// Function calling, structured output, log probabilities and several choices, through the official OpenAI SDK.
/// The successor model would write the alphabet; only the grammar can make it write a call or JSON, so these
/// tests show the constraint is enforced, not merely requested. Every raw body is validated against OpenAI's spec.
/// </summary>
[Collection(ServerGroup.Name)]
public class ToolAndStructuredOutputTests(ServerFixture server)
{
    private const string LightSchema = """
        {"type":"object","properties":{"room":{"type":"string","enum":["kitchen","hall"]},"on":{"type":"boolean"}},"required":["room","on"],"additionalProperties":false}
        """;

    private static readonly ChatTool Light = ChatTool.CreateFunctionTool("set_light", "Switch a light", BinaryData.FromString(LightSchema));

    private static readonly ChatTool Weather = ChatTool.CreateFunctionTool("get_weather", "Weather for a city",
        BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","maxLength":8}},"required":["city"]}"""));

    private ChatClient Chat(string model) => new(model, new ApiKeyCredential("no-key-needed"),
        new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    [Theory]
    [InlineData(ServerFixture.Model)] // no template: tools described in the system prompt, generic JSON syntax
    [InlineData(ServerFixture.HermesModel)] // Qwen 2.5's template: <tool_call> syntax
    public async Task RequiredToolChoiceReturnsAValidCall(string model)
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 200, ToolChoice = ChatToolChoice.CreateRequiredChoice(), AllowParallelToolCalls = false };
        options.Tools.Add(Light);
        options.Tools.Add(Weather);

        ClientResult<ChatCompletion> result = await Chat(model).CompleteChatAsync([new UserChatMessage("Turn on the kitchen light")], options);
        var completion = result.Value;

        server.AssertMatchesSchema("CreateChatCompletionResponse", result.GetRawResponse().Content.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        var call = Assert.Single(completion.ToolCalls);
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);
        Assert.Equal(ChatToolCallKind.Function, call.Kind);
        AssertValidArguments(call.FunctionName, call.FunctionArguments.ToString());
        Assert.Empty(completion.Content);
    }

    [Fact]
    public async Task NamedFunctionIsCalledWhenStreamed()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 200, ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather") };
        options.Tools.Add(Light);
        options.Tools.Add(Weather);

        string? id = null, name = null;
        var arguments = new StringBuilder();
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in Chat(ServerFixture.HermesModel).CompleteChatStreamingAsync([new UserChatMessage("Weather in Oslo?")], options))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            foreach (var call in update.ToolCallUpdates)
            {
                Assert.Equal(0, call.Index);
                id ??= call.ToolCallId;
                name ??= call.FunctionName;
                arguments.Append(call.FunctionArgumentsUpdate?.ToString());
            }

            finish ??= update.FinishReason;
        }

        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.StartsWith("call_", id, StringComparison.Ordinal);
        Assert.Equal("get_weather", name);
        AssertValidArguments(name!, arguments.ToString());
        Assert.Equal(string.Empty, text.ToString());
    }

    [SkippableFact]
    public async Task StreamedToolCallChunksMatchTheSpec()
    {
        Skip.If(server.Schema is null, SharedPaths.MissingReason(SharedPaths.OpenApiSpec));
        var body = await server.PostOkAsync("/v1/chat/completions", $$$"""
            {"model":"{{{ServerFixture.HermesModel}}}","messages":[{"role":"user","content":"lights"}],"temperature":0,"max_tokens":200,"stream":true,
             "tools":[{"type":"function","function":{"name":"set_light","parameters":{{{LightSchema}}}}}],"tool_choice":"required","parallel_tool_calls":false}
            """);
        var chunks = ServerFixture.SseData(body);
        foreach (var chunk in chunks)
        {
            server.AssertMatchesSchema("CreateChatCompletionStreamResponse", chunk);
        }

        var deltas = chunks.Select(c => JsonDocument.Parse(c).RootElement.GetProperty("choices")[0]).ToList();
        var calls = deltas.Where(d => d.GetProperty("delta").TryGetProperty("tool_calls", out _)).Select(d => d.GetProperty("delta").GetProperty("tool_calls")[0]).ToList();
        Assert.Equal("set_light", calls[0].GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("function", calls[0].GetProperty("type").GetString());
        Assert.Equal("tool_calls", deltas[^1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task AutoToolChoiceLetsTheModelAnswerInText()
    {
        var options = new ChatCompletionOptions { Temperature = 0 };
        options.Tools.Add(Light);
        ChatCompletion completion = await Chat(ServerFixture.HermesModel).CompleteChatAsync([new UserChatMessage("Say the alphabet")], options);

        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Empty(completion.ToolCalls);
        Assert.Equal(SuccessorModel.ChatReply, completion.Content.Single().Text);
    }

    [Theory]
    [InlineData(ServerFixture.Model)] // generic syntax: a call would have to start the reply
    [InlineData(ServerFixture.HermesModel)] // <tool_call> anywhere
    public async Task AStrictToolWithAutoChoiceLetsTheModelAnswerInText(string model)
    {
        // The OpenAI JS SDK's zodFunction sends strict tools with tool_choice auto.
        var options = new ChatCompletionOptions { Temperature = 0 };
        options.Tools.Add(ChatTool.CreateFunctionTool("set_light", "Switch a light", BinaryData.FromString(LightSchema), functionSchemaIsStrict: true));
        ClientResult<ChatCompletion> result = await Chat(model).CompleteChatAsync([new UserChatMessage("Say the alphabet")], options);

        server.AssertMatchesSchema("CreateChatCompletionResponse", result.GetRawResponse().Content.ToString());
        Assert.Equal(ChatFinishReason.Stop, result.Value.FinishReason);
        Assert.Empty(result.Value.ToolCalls);
        Assert.Equal(SuccessorModel.ChatReply, result.Value.Content.Single().Text);
    }

    [Theory]
    [InlineData(ServerFixture.Model)]
    [InlineData(ServerFixture.HermesModel)]
    public async Task ToolCallsAndResultsInTheHistoryAreAccepted(string model)
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 };
        options.Tools.Add(Light);
        List<ChatMessage> history =
        [
            new SystemChatMessage("You control lights."),
            new UserChatMessage("Kitchen on"),
            new AssistantChatMessage([ChatToolCall.CreateFunctionToolCall("call_1", "set_light", BinaryData.FromString("""{"room":"kitchen","on":true}"""))]),
            new ToolChatMessage("call_1", """{"ok":true}"""),
        ];

        ChatCompletion completion = await Chat(model).CompleteChatAsync(history, options);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(5, completion.Usage.OutputTokenCount);
    }

    [SkippableFact]
    public async Task JsonSchemaOutputParsesAndValidates()
    {
        const string schema = """
            {"type":"object","properties":{
              "color":{"type":"string","enum":["red","green","blue"]},
              "count":{"type":"integer"},
              "ok":{"type":"boolean"},
              "tags":{"type":"array","items":{"type":"string","maxLength":5},"maxItems":2},
              "note":{"anyOf":[{"type":"null"},{"type":"string","maxLength":4}]}
            },"required":["color","count","ok","tags","note"],"additionalProperties":false}
            """;
        var options = new ChatCompletionOptions
        {
            Temperature = 0,
            MaxOutputTokenCount = 300,
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("thing", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
        };
        ClientResult<ChatCompletion> result = await Chat(ServerFixture.Model).CompleteChatAsync([new UserChatMessage("Describe a thing")], options);

        Assert.Equal(ChatFinishReason.Stop, result.Value.FinishReason);
        using var output = JsonDocument.Parse(result.Value.Content.Single().Text);
        var root = output.RootElement;
        Assert.Contains(root.GetProperty("color").GetString(), new[] { "red", "green", "blue" });
        Assert.Equal(JsonValueKind.Number, root.GetProperty("count").ValueKind);
        Assert.True(root.GetProperty("count").TryGetInt64(out _));
        Assert.Contains(root.GetProperty("ok").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        Assert.InRange(root.GetProperty("tags").GetArrayLength(), 0, 2);
        Assert.All(root.GetProperty("tags").EnumerateArray(), t => Assert.InRange(t.GetString()!.Length, 0, 5));
        Assert.True(root.GetProperty("note").ValueKind == JsonValueKind.Null || root.GetProperty("note").GetString()!.Length <= 4);
        Assert.Equal(5, root.EnumerateObject().Count());

        // The spec's own validator agrees, when the spec is present.
        server.AssertMatchesSchema("CreateChatCompletionResponse", result.GetRawResponse().Content.ToString());
    }

    [Theory]
    [InlineData(0f, 1)]
    [InlineData(1.5f, 1)]
    [InlineData(1.5f, 2)]
    [InlineData(1.5f, 3)]
    public async Task ZodBoundsAndFormatsAreEnforced(float temperature, int seed)
    {
        // What zod writes for .int(), .int().min(1).max(5), .positive(), .regex() and .email(), as the OpenAI JS SDK sends it.
        const string schema = """
            {"type":"object","properties":{
              "age":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991},
              "rating":{"type":"integer","minimum":1,"maximum":5},
              "score":{"type":"number","exclusiveMinimum":0,"maximum":1},
              "sku":{"type":"string","pattern":"^[A-Z]{3}-\\d{2}$"},
              "email":{"type":"string","format":"email","maxLength":20}
            },"required":["age","rating","score","sku","email"],"additionalProperties":false}
            """;
        var json = await server.PostOkAsync("/v1/chat/completions", $$$"""
            {"model":"{{{ServerFixture.Model}}}","messages":[{"role":"user","content":"Rate it"}],"temperature":{{{temperature.ToString(System.Globalization.CultureInfo.InvariantCulture)}}},
             "top_k":0,"top_p":1,"min_p":0,"seed":{{{seed}}},"max_tokens":300,
             "response_format":{"type":"json_schema","json_schema":{"name":"review","strict":true,"schema":
            """ + schema + "}}}");
        server.AssertMatchesSchema("CreateChatCompletionResponse", json);
        var choice = JsonDocument.Parse(json).RootElement.GetProperty("choices")[0];
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());

        using var output = JsonDocument.Parse(choice.GetProperty("message").GetProperty("content").GetString()!);
        var root = output.RootElement;
        Assert.InRange(root.GetProperty("age").GetInt64(), -9007199254740991, 9007199254740991);
        Assert.InRange(root.GetProperty("rating").GetInt32(), 1, 5);
        var score = decimal.Parse(root.GetProperty("score").GetRawText(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(score is > 0 and <= 1, $"score {score}");
        Assert.Matches(@"^[A-Z]{3}-[0-9]{2}$", root.GetProperty("sku").GetString());
        var email = root.GetProperty("email").GetString()!;
        Assert.InRange(email.Length, 3, 20);
        Assert.Single(email, c => c == '@');
    }

    [Fact]
    public async Task BoundsNoValueCanMeetAreA400SayingSo()
    {
        using var response = await server.PostAsync("/v1/chat/completions", """
            {"model":"successor","messages":[{"role":"user","content":"hi"}],
             "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"n":{"type":"integer","minimum":10,"maximum":5}}}}}}
            """);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", body);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("response_format.json_schema.schema", error.GetProperty("param").GetString());
        var message = error.GetProperty("message").GetString();
        Assert.Contains("'maximum'", message, StringComparison.Ordinal);
        Assert.Contains("/properties/n", message, StringComparison.Ordinal);
        Assert.Contains("no value can match", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0f)] // greedy: the model's favourite is mostly refused, so the grammar re-picks
    [InlineData(1.5f)] // sampled: the draw happens before and after the grammar's check
    public async Task JsonObjectOutputIsAnObject(float temperature)
    {
        var options = new ChatCompletionOptions { Temperature = temperature, MaxOutputTokenCount = 100, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        ChatCompletion completion = await Chat(ServerFixture.Model).CompleteChatAsync([new UserChatMessage("JSON please")], options);

        if (completion.FinishReason == ChatFinishReason.Stop)
        {
            using var doc = JsonDocument.Parse(completion.Content.Single().Text);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
        else
        {
            // Cut off by max_tokens: still the start of an object, never free text.
            Assert.StartsWith("{", completion.Content.Single().Text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task LogprobsDescribeEachGeneratedToken()
    {
        var options = new ChatCompletionOptions { Temperature = 0, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        ClientResult<ChatCompletion> result = await Chat(ServerFixture.Model).CompleteChatAsync([new UserChatMessage("Say the alphabet")], options);
        var completion = result.Value;
        server.AssertMatchesSchema("CreateChatCompletionResponse", result.GetRawResponse().Content.ToString());

        var tokens = completion.ContentTokenLogProbabilities;
        Assert.Equal(completion.Usage.OutputTokenCount, tokens.Count);
        var bytes = tokens.SelectMany(t => t.Utf8Bytes!.Value.ToArray()).ToArray();
        Assert.Equal(SuccessorModel.ChatReply, Encoding.UTF8.GetString(bytes));
        Assert.All(tokens, t =>
        {
            Assert.InRange(t.LogProbability, float.MinValue, 0f);
            Assert.Equal(3, t.TopLogProbabilities.Count);
            // Greedy: the chosen token is the likeliest one.
            Assert.Equal(t.TopLogProbabilities[0].Token, t.Token);
            Assert.Equal(t.TopLogProbabilities[0].LogProbability, t.LogProbability, 4);
            Assert.True(t.TopLogProbabilities[0].LogProbability >= t.TopLogProbabilities[1].LogProbability);
        });
        Assert.Equal("a", tokens[0].Token);
        Assert.True(tokens[0].LogProbability > -0.01f, $"The successor model is sure of 'a': {tokens[0].LogProbability}");
    }

    [Fact]
    public async Task StreamedLogprobsComeWithTheirTokens()
    {
        var body = await server.PostOkAsync("/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"go"}],"temperature":0,"max_tokens":30,"stream":true,"logprobs":true,"top_logprobs":1}""");
        var bytes = new List<byte>();
        var text = new StringBuilder();
        foreach (var chunk in ServerFixture.SseData(body))
        {
            server.AssertMatchesSchema("CreateChatCompletionStreamResponse", chunk);
            var choice = JsonDocument.Parse(chunk).RootElement.GetProperty("choices")[0];
            if (choice.GetProperty("delta").TryGetProperty("content", out var content))
            {
                text.Append(content.GetString());
            }

            if (choice.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            {
                foreach (var token in choice.GetProperty("logprobs").GetProperty("content").EnumerateArray())
                {
                    bytes.AddRange(token.GetProperty("bytes").EnumerateArray().Select(b => (byte)b.GetInt32()));
                }
            }
        }

        // Every generated byte is accounted for by exactly one token's logprobs entry, in order.
        Assert.Equal(text.ToString(), Encoding.UTF8.GetString(bytes.ToArray()));
        Assert.Equal(SuccessorModel.ChatReply[..26], text.ToString()[..26]);
    }

    [SkippableFact]
    public async Task LegacyCompletionLogprobsMatchTheSpec()
    {
        var json = await server.PostOkAsync("/v1/completions", """{"model":"successor","prompt":"Hello w","temperature":0,"max_tokens":3,"logprobs":2}""");
        server.AssertMatchesSchema("CreateCompletionResponse", json);
        var lp = JsonDocument.Parse(json).RootElement.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(["x", "y", "z"], lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal([0, 1, 2], lp.GetProperty("text_offset").EnumerateArray().Select(t => t.GetInt32()));
        Assert.All(lp.GetProperty("top_logprobs").EnumerateArray(), t => Assert.Equal(2, t.EnumerateObject().Count()));
    }

    [Fact]
    public async Task LogitBiasBansAToken()
    {
        var b = SuccessorModel.Vocabulary["b"];
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 3 };
        options.LogitBiases[b] = -100;
        ChatCompletion completion = await Chat(ServerFixture.Model).CompleteChatAsync([new UserChatMessage("go")], options);

        var text = completion.Content.Single().Text;
        Assert.StartsWith("a", text, StringComparison.Ordinal);
        Assert.DoesNotContain('b', text);
    }

    [Fact]
    public async Task SeveralChoicesAreGeneratedSideBySide()
    {
        var json = await server.PostOkAsync("/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"go"}],"temperature":0,"n":3,"max_tokens":4}""");
        server.AssertMatchesSchema("CreateChatCompletionResponse", json);
        var root = JsonDocument.Parse(json).RootElement;
        var choices = root.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(choices, c => Assert.Equal("abcd", c.GetProperty("message").GetProperty("content").GetString()));
        Assert.Equal(12, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var streamed = await server.PostOkAsync("/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"go"}],"temperature":0,"n":2,"max_tokens":4,"stream":true}""");
        var texts = new Dictionary<int, StringBuilder>();
        var finishes = 0;
        foreach (var chunk in ServerFixture.SseData(streamed))
        {
            server.AssertMatchesSchema("CreateChatCompletionStreamResponse", chunk);
            var choice = JsonDocument.Parse(chunk).RootElement.GetProperty("choices")[0];
            var index = choice.GetProperty("index").GetInt32();
            if (choice.GetProperty("delta").TryGetProperty("content", out var content))
            {
                (texts.TryGetValue(index, out var sb) ? sb : texts[index] = new StringBuilder()).Append(content.GetString());
            }

            finishes += choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String ? 1 : 0;
        }

        Assert.Equal(2, finishes);
        Assert.Equal(["abcd", "abcd"], texts.OrderBy(t => t.Key).Select(t => t.Value.ToString()));
    }

    [Fact]
    public async Task TheSameSeedGivesTheSameSample()
    {
        const string body = """{"model":"successor","prompt":"x","temperature":2,"top_k":0,"top_p":1,"min_p":0,"max_tokens":12,"seed":1234}""";
        var first = JsonDocument.Parse(await server.PostOkAsync("/v1/completions", body)).RootElement.GetProperty("choices")[0].GetProperty("text").GetString();
        var second = JsonDocument.Parse(await server.PostOkAsync("/v1/completions", body)).RootElement.GetProperty("choices")[0].GetProperty("text").GetString();
        Assert.Equal(first, second);
    }

    private static void AssertValidArguments(string function, string arguments)
    {
        using var doc = JsonDocument.Parse(arguments);
        var args = doc.RootElement;
        if (function == "set_light")
        {
            Assert.Contains(args.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
            Assert.Contains(args.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
            Assert.Equal(2, args.EnumerateObject().Count());
        }
        else
        {
            Assert.Equal("get_weather", function);
            Assert.InRange(args.GetProperty("city").GetString()!.Length, 0, 8);
        }
    }
}
