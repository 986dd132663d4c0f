#pragma warning disable OPENAI001 // the SDK marks its Responses client experimental
using System.ClientModel;
using System.Net;
using System.Text.Json;
using EdgeServer.TestSupport;
using OpenAI;
using OpenAI.Responses;

namespace EdgeServer.Tests.OpenAi;

/// <summary>
/// /v1/responses with function tools (calls forced by a grammar on the generated model, so they are enforced, not
/// hoped for), function_call and function_call_output input items, and stored responses: previous_response_id, GET,
/// DELETE, store false, unknown ids. Through the official SDK, and raw bodies and events against OpenAI's spec.
/// </summary>
[Collection(ServerGroup.Name)]
public class ResponsesToolsAndStoreTests(ServerFixture server)
{
    private const string LightSchema = """
        {"type":"object","properties":{"room":{"type":"string","enum":["kitchen","hall"]},"on":{"type":"boolean"}},"required":["room","on"],"additionalProperties":false}
        """;

    private const string Tools = $$$"""
        [{"type":"function","name":"set_light","description":"Switch a light","parameters":{{{LightSchema}}},"strict":false},
         {"type":"function","name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":8}},"required":["city"]},"strict":false}]
        """;

    private ResponsesClient Client() => new(new ApiKeyCredential("no-key-needed"),
        new ResponsesClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    private static CreateResponseOptions Options(params ResponseItem[] input)
    {
        var options = new CreateResponseOptions { Model = ServerFixture.HermesModel, Temperature = 0, MaxOutputTokenCount = 200 };
        foreach (var item in input)
        {
            options.InputItems.Add(item);
        }

        return options;
    }

    [Fact]
    public async Task SdkRoundTripCallsAFunctionAndContinuesFromItsOutput()
    {
        var client = Client();
        var options = Options(ResponseItem.CreateUserMessageItem("Turn on the kitchen light"));
        options.Tools.Add(ResponseTool.CreateFunctionTool("set_light", BinaryData.FromString(LightSchema), strictModeEnabled: false, functionDescription: "Switch a light"));
        options.ToolChoice = ResponseToolChoice.CreateRequiredChoice();

        ClientResult<ResponseResult> first = await client.CreateResponseAsync(options);
        server.AssertMatchesSchema("Response", first.GetRawResponse().Content.ToString());
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(first.Value.OutputItems));
        Assert.Equal("set_light", call.FunctionName);
        Assert.StartsWith("call_", call.CallId, StringComparison.Ordinal);
        Assert.StartsWith("fc_", call.Id, StringComparison.Ordinal);
        AssertLightArguments(call.FunctionArguments.ToString());
        Assert.Equal(ResponseStatus.Completed, first.Value.Status);

        // The follow-up sends only the call's output: the call itself comes from the stored response.
        var next = Options(ResponseItem.CreateFunctionCallOutputItem(call.CallId, """{"ok":true}"""));
        next.PreviousResponseId = first.Value.Id;
        next.Tools.Add(options.Tools[0]); // tools are not carried over, as with OpenAI
        next.MaxOutputTokenCount = 5;
        ClientResult<ResponseResult> second = await client.CreateResponseAsync(next);
        server.AssertMatchesSchema("Response", second.GetRawResponse().Content.ToString());
        Assert.Equal(first.Value.Id, second.Value.PreviousResponseId);
        Assert.Equal("abcde", second.Value.GetOutputText());
        Assert.True(second.Value.Usage.InputTokenCount > first.Value.Usage.InputTokenCount);

        ResponseResult fetched = await client.GetResponseAsync(first.Value.Id);
        Assert.Equal(call.CallId, Assert.IsType<FunctionCallResponseItem>(Assert.Single(fetched.OutputItems)).CallId);
    }

    [Fact]
    public async Task SdkStreamsANamedFunctionCall()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("Weather in Oslo?"));
        options.Tools.Add(ResponseTool.CreateFunctionTool("set_light", BinaryData.FromString(LightSchema), strictModeEnabled: false));
        options.Tools.Add(ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","maxLength":8}},"required":["city"]}"""), strictModeEnabled: false));
        options.ToolChoice = ResponseToolChoice.CreateFunctionChoice("get_weather");
        options.StreamingEnabled = true;

        var arguments = new System.Text.StringBuilder();
        string? done = null;
        ResponseResult? completed = null;
        await foreach (var update in await Client().CreateResponseStreamingAsync(options))
        {
            switch (update)
            {
                case StreamingResponseFunctionCallArgumentsDeltaUpdate delta:
                    arguments.Append(delta.Delta.ToString());
                    break;
                case StreamingResponseFunctionCallArgumentsDoneUpdate end:
                    done = end.FunctionArguments.ToString();
                    break;
                case StreamingResponseCompletedUpdate c:
                    completed = c.Response;
                    break;
            }
        }

        Assert.NotNull(completed);
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(completed.OutputItems));
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal(done, arguments.ToString());
        Assert.Equal(done, call.FunctionArguments.ToString());
        var city = JsonDocument.Parse(done!).RootElement.GetProperty("city").GetString()!;
        Assert.InRange(city.Length, 0, 8);
    }

    [SkippableFact]
    public async Task StreamedCallEventsMatchTheSpecInOrder()
    {
        Skip.If(server.Schema is null, SharedPaths.MissingReason(SharedPaths.OpenApiSpec));
        var body = await server.PostOkAsync("/v1/responses", $$$"""
            {"model":"{{{ServerFixture.HermesModel}}}","input":"lights","temperature":0,"max_output_tokens":200,"stream":true,
             "tools":{{{Tools}}},"tool_choice":{"type":"function","name":"set_light"}}
            """);
        var events = Events(body);
        Assert.Equal(
            ["response.created", "response.in_progress", "response.output_item.added", "response.function_call_arguments.delta",
             "response.function_call_arguments.done", "response.output_item.done", "response.completed"],
            events.Select(e => e.GetProperty("type").GetString()));
        var added = events[2].GetProperty("item");
        var itemId = added.GetProperty("id").GetString();
        Assert.Equal("function_call", added.GetProperty("type").GetString());
        Assert.Equal("in_progress", added.GetProperty("status").GetString());
        Assert.Equal(string.Empty, added.GetProperty("arguments").GetString());
        Assert.All(events.Skip(2).Take(4), e => Assert.Equal(0, e.GetProperty("output_index").GetInt32()));
        Assert.Equal(itemId, events[3].GetProperty("item_id").GetString());
        var arguments = events[4].GetProperty("arguments").GetString()!;
        Assert.Equal(events[3].GetProperty("delta").GetString(), arguments);
        Assert.Equal("set_light", events[4].GetProperty("name").GetString());
        AssertLightArguments(arguments);
        var item = events[5].GetProperty("item");
        Assert.Equal("completed", item.GetProperty("status").GetString());
        Assert.Equal(arguments, item.GetProperty("arguments").GetString());
        var response = events[6].GetProperty("response");
        Assert.Equal(itemId, Assert.Single(response.GetProperty("output").EnumerateArray()).GetProperty("id").GetString());
        Assert.Equal("set_light", response.GetProperty("tool_choice").GetProperty("name").GetString());
        Assert.Equal(2, response.GetProperty("tools").GetArrayLength());

        // The stored response is the one the stream completed with.
        var stored = await server.Http.GetStringAsync($"/v1/responses/{response.GetProperty("id").GetString()}");
        server.AssertMatchesSchema("Response", stored);
        Assert.Equal(response.GetProperty("output").GetRawText(), JsonDocument.Parse(stored).RootElement.GetProperty("output").GetRawText());
    }

    /// <summary>function_call and function_call_output items render as chat's assistant tool_calls and tool messages do: the same prompt.</summary>
    [Fact]
    public async Task CallItemsRenderAsChatToolMessages()
    {
        var chat = await server.PostOkAsync("/v1/chat/completions", $$$"""
            {"model":"{{{ServerFixture.HermesModel}}}","max_tokens":1,"tools":[{"type":"function","function":{"name":"set_light","parameters":{{{LightSchema}}} } }],
             "messages":[{"role":"user","content":"Turn on the kitchen light"},
                         {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"set_light","arguments":"{\"room\":\"kitchen\",\"on\":true}"}}]},
                         {"role":"tool","tool_call_id":"call_1","content":"done"}]}
            """);
        var responses = await server.PostOkAsync("/v1/responses", $$$"""
            {"model":"{{{ServerFixture.HermesModel}}}","max_output_tokens":1,"tools":[{"type":"function","name":"set_light","parameters":{{{LightSchema}}},"strict":false}],
             "input":[{"role":"user","content":"Turn on the kitchen light"},
                      {"type":"function_call","call_id":"call_1","name":"set_light","arguments":"{\"room\":\"kitchen\",\"on\":true}"},
                      {"type":"function_call_output","call_id":"call_1","output":[{"type":"input_text","text":"done"}]}]}
            """);
        server.AssertMatchesSchema("Response", responses);
        var withoutCalls = await server.PostOkAsync("/v1/responses", $$$"""
            {"model":"{{{ServerFixture.HermesModel}}}","max_output_tokens":1,"tools":[{"type":"function","name":"set_light","parameters":{{{LightSchema}}},"strict":false}],
             "input":[{"role":"user","content":"Turn on the kitchen light"}]}
            """);
        var promptTokens = JsonDocument.Parse(chat).RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(promptTokens, InputTokens(responses));
        Assert.True(InputTokens(responses) > InputTokens(withoutCalls) + 10);
    }

    /// <summary>The follow-up's prompt is the stored input and output and the new input, without the first request's instructions.</summary>
    [Fact]
    public async Task PreviousResponseIdContinuesWithoutTheEarlierInstructions()
    {
        var first = JsonDocument.Parse(await server.PostOkAsync("/v1/responses",
            """{"model":"successor","instructions":"Recite.","input":"Say the alphabet","temperature":0,"max_output_tokens":31}""")).RootElement;
        Assert.Equal(SuccessorModel.ChatReply, Text(first));
        var second = await server.PostOkAsync("/v1/responses",
            $$$"""{"model":"successor","previous_response_id":"{{{first.GetProperty("id").GetString()}}}","input":"again","temperature":0,"max_output_tokens":1}""");
        server.AssertMatchesSchema("Response", second);
        Assert.Equal(first.GetProperty("id").GetString(), JsonDocument.Parse(second).RootElement.GetProperty("previous_response_id").GetString());
        var chat = await server.PostOkAsync("/v1/chat/completions", $$$"""
            {"model":"successor","max_tokens":1,"messages":[{"role":"user","content":"Say the alphabet"},{"role":"assistant","content":"{{{SuccessorModel.ChatReply}}}"},{"role":"user","content":"again"}]}
            """);
        Assert.Equal(JsonDocument.Parse(chat).RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), InputTokens(second));
    }

    [SkippableFact]
    public async Task GetAndDeleteAStoredResponse()
    {
        Skip.If(server.Schema is null, SharedPaths.MissingReason(SharedPaths.OpenApiSpec));
        var created = await server.PostOkAsync("/v1/responses", """{"model":"successor","input":"go","temperature":0,"max_output_tokens":3}""");
        var id = JsonDocument.Parse(created).RootElement.GetProperty("id").GetString();
        Assert.True(JsonDocument.Parse(created).RootElement.GetProperty("store").GetBoolean());
        var fetched = await server.Http.GetStringAsync($"/v1/responses/{id}");
        server.AssertMatchesSchema("Response", fetched);
        Assert.Equal(created, fetched);

        using var deleted = await server.Http.DeleteAsync($"/v1/responses/{id}");
        var json = JsonDocument.Parse(await deleted.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.Equal(id, json.GetProperty("id").GetString());
        Assert.True(json.GetProperty("deleted").GetBoolean());

        using var gone = await server.Http.GetAsync($"/v1/responses/{id}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", await gone.Content.ReadAsStringAsync());
        using var again = await server.Http.DeleteAsync($"/v1/responses/{id}");
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        await AssertPreviousNotFound(id!);
    }

    [Fact]
    public async Task StoreFalseKeepsNothing()
    {
        var created = JsonDocument.Parse(await server.PostOkAsync("/v1/responses", """{"model":"successor","input":"go","store":false,"max_output_tokens":2}""")).RootElement;
        Assert.False(created.GetProperty("store").GetBoolean());
        var id = created.GetProperty("id").GetString()!;
        using var get = await server.Http.GetAsync($"/v1/responses/{id}");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        await AssertPreviousNotFound(id);

        // Streamed alike.
        var streamed = await server.PostOkAsync("/v1/responses", """{"model":"successor","input":"go","store":false,"stream":true,"max_output_tokens":2}""");
        var completed = Events(streamed)[^1].GetProperty("response");
        await AssertPreviousNotFound(completed.GetProperty("id").GetString()!);
    }

    [Theory]
    [InlineData("resp_00000000000000000000000000000000")]
    [InlineData("../../etc/passwd")]
    [InlineData("")]
    public async Task AnUnknownPreviousResponseIsNotFound(string id) => await AssertPreviousNotFound(id);

    /// <summary>A chain of follow-ups grows the prompt; past the context it is a 400, not a crash or an unbounded store.</summary>
    [Fact]
    public async Task ALongChainEndsAtTheContextLimit()
    {
        var filler = string.Join(' ', Enumerable.Repeat("abcdefghij", 60));
        string? previous = null;
        HttpStatusCode status = HttpStatusCode.OK;
        string json = string.Empty;
        for (var i = 0; i < 40 && status == HttpStatusCode.OK; i++)
        {
            var link = previous is null ? string.Empty : $"\"previous_response_id\":\"{previous}\",";
            using var response = await server.PostAsync("/v1/responses", $$$"""{"model":"successor",{{{link}}}"input":"{{{filler}}}","max_output_tokens":1}""");
            status = response.StatusCode;
            json = await response.Content.ReadAsStringAsync();
            previous = status == HttpStatusCode.OK ? JsonDocument.Parse(json).RootElement.GetProperty("id").GetString() : previous;
        }

        Assert.Equal(HttpStatusCode.BadRequest, status);
        server.AssertMatchesSchema("ErrorResponse", json);
        Assert.Equal("context_length_exceeded", JsonDocument.Parse(json).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"web_search"}]}""", "tools[0].type")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"a b","parameters":{}}]}""", "tools[0].name")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"f","parameters":[]}]}""", "tools[0].parameters")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"f","function":{"name":"f"}}]}""", "tools[0].function")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[]}}""", "tool_choice")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function"}}""", "tool_choice.name")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":"required","text":{"format":{"type":"json_object"}}}""", "text.format")]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"function","name":"f","strict":true}],"text":{"format":{"type":"json_object"}}}""", "text.format")]
    [InlineData("""{"model":"successor","input":[{"role":"user","content":"x"},{"type":"function_call","name":"f","arguments":"{}"}]}""", "input[1].call_id")]
    [InlineData("""{"model":"successor","input":[{"role":"user","content":"x"},{"type":"function_call","call_id":"c","name":"no way","arguments":"{}"}]}""", "input[1].name")]
    [InlineData("""{"model":"successor","input":[{"type":"function_call_output","call_id":"c"}]}""", "input[0].output")]
    [InlineData("""{"model":"successor","input":[{"type":"item_reference","id":"msg_1"}]}""", "input[0].type")]
    [InlineData("""{"model":"successor","input":"x","max_tool_calls":3}""", "max_tool_calls")]
    public async Task WhatCannotBeHonouredIsRefused(string body, string param)
    {
        using var response = await server.PostAsync("/v1/responses", body);
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, json);
        server.AssertMatchesSchema("ErrorResponse", json);
        Assert.Equal(param, JsonDocument.Parse(json).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    /// <summary>As chat's response_format with tools: in auto mode the format constrains the text answer.</summary>
    [Fact]
    public async Task TextFormatAppliesWithToolsOffered()
    {
        var json = await server.PostOkAsync("/v1/responses", $$$"""
            {"model":"{{{ServerFixture.HermesModel}}}","input":"x","temperature":0,"max_output_tokens":60,"tools":{{{Tools}}},
             "text":{"format":{"type":"json_schema","name":"c","schema":{"type":"object","properties":{"color":{"enum":["red","blue"]}},"required":["color"],"additionalProperties":false} } } }
            """);
        server.AssertMatchesSchema("Response", json);
        var root = JsonDocument.Parse(json).RootElement;
        Assert.Equal("auto", root.GetProperty("tool_choice").GetString());
        Assert.Contains(JsonDocument.Parse(Text(root)).RootElement.GetProperty("color").GetString(), new[] { "red", "blue" });
    }

    private async Task AssertPreviousNotFound(string id)
    {
        using var response = await server.PostAsync("/v1/responses", $$$"""{"model":"successor","previous_response_id":{{{JsonSerializer.Serialize(id)}}},"input":"x","max_output_tokens":1}""");
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.NotFound, json);
        server.AssertMatchesSchema("ErrorResponse", json);
        var error = JsonDocument.Parse(json).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("previous_response_id", error.GetProperty("param").GetString());
        Assert.Equal("previous_response_not_found", error.GetProperty("code").GetString());
    }

    /// <summary>Each event's data, checked for its event line, its sequence number and the spec.</summary>
    private List<JsonElement> Events(string body)
    {
        var events = new List<JsonElement>();
        foreach (var lines in body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('\n')))
        {
            var data = lines[1]["data: ".Length..];
            var element = JsonDocument.Parse(data).RootElement;
            Assert.Equal(lines[0]["event: ".Length..], element.GetProperty("type").GetString());
            Assert.Equal(events.Count, element.GetProperty("sequence_number").GetInt32());
            server.AssertMatchesSchema("ResponseStreamEvent", data);
            events.Add(element);
        }

        return events;
    }

    private static int InputTokens(string json) => JsonDocument.Parse(json).RootElement.GetProperty("usage").GetProperty("input_tokens").GetInt32();

    private static string Text(JsonElement response) =>
        response.GetProperty("output").EnumerateArray().Single(i => i.GetProperty("type").GetString() == "message").GetProperty("content")[0].GetProperty("text").GetString()!;

    private static void AssertLightArguments(string arguments)
    {
        var root = JsonDocument.Parse(arguments).RootElement;
        Assert.Contains(root.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(root.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
    }
}
