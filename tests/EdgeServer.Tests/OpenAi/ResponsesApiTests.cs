#pragma warning disable OPENAI001 // the SDK marks its Responses client experimental
using System.ClientModel;
using System.Text;
using System.Text.Json;
using EdgeServer.TestSupport;
using OpenAI;
using OpenAI.Responses;

namespace EdgeServer.Tests.OpenAi;

/// <summary>POST /v1/responses for text in and out, through the official SDK and against the spec.</summary>
[Collection(ServerGroup.Name)]
public class ResponsesApiTests(ServerFixture server)
{
    private ResponsesClient Client() => new(new ApiKeyCredential("no-key-needed"),
        new ResponsesClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    private static CreateResponseOptions Options(string input, string? instructions = null, bool stream = false) => new()
    {
        StreamingEnabled = stream,
        Model = ServerFixture.Model,
        InputItems = { ResponseItem.CreateUserMessageItem(input) },
        Instructions = instructions,
        Temperature = 0,
    };

    [Fact]
    public async Task ResponseCarriesTheModelsText()
    {
        ResponseResult response = await Client().CreateResponseAsync(Options("Say the alphabet", "Recite."));

        Assert.Equal(SuccessorModel.ChatReply, response.GetOutputText());
        Assert.Equal(ResponseStatus.Completed, response.Status);
        Assert.StartsWith("resp_", response.Id, StringComparison.Ordinal);
        Assert.Equal(31, response.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task StreamedResponseDeliversDeltasAndACompletedEvent()
    {
        var text = new StringBuilder();
        ResponseResult? completed = null;
        await foreach (var update in await Client().CreateResponseStreamingAsync(Options("Say the alphabet", stream: true)))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta)
            {
                text.Append(delta.Delta);
            }
            else if (update is StreamingResponseCompletedUpdate done)
            {
                completed = done.Response;
            }
        }

        Assert.Equal(SuccessorModel.ChatReply, text.ToString());
        Assert.NotNull(completed);
        Assert.Equal(SuccessorModel.ChatReply, completed.GetOutputText());
    }

    [Fact]
    public async Task JsonSchemaTextFormatIsEnforced()
    {
        var json = await server.PostOkAsync("/v1/responses", """{"model":"successor","input":"x","temperature":0,"max_output_tokens":60,"text":{"format":{"type":"json_schema","name":"c","schema":{"type":"object","properties":{"color":{"enum":["red","blue"]}},"required":["color"],"additionalProperties":false}}}}""");
        var text = JsonDocument.Parse(json).RootElement.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!;
        Assert.Contains(JsonDocument.Parse(text).RootElement.GetProperty("color").GetString(), new[] { "red", "blue" });
        Assert.Equal("json_schema", JsonDocument.Parse(json).RootElement.GetProperty("text").GetProperty("format").GetProperty("type").GetString());
    }

    [SkippableFact]
    public async Task BodiesAndEventsMatchTheSpec()
    {
        Skip.If(server.Schema is null, SharedPaths.MissingReason(SharedPaths.OpenApiSpec));
        var whole = await server.PostOkAsync("/v1/responses", """{"model":"successor","input":[{"role":"user","content":[{"type":"input_text","text":"go"}]}],"temperature":0,"max_output_tokens":3,"metadata":{"k":"v"}}""");
        server.AssertMatchesSchema("Response", whole);
        var root = JsonDocument.Parse(whole).RootElement;
        Assert.Equal("incomplete", root.GetProperty("status").GetString());
        Assert.Equal("max_output_tokens", root.GetProperty("incomplete_details").GetProperty("reason").GetString());
        Assert.Equal("abc", root.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());

        using var response = await server.PostAsync("/v1/responses", """{"model":"successor","input":"go","temperature":0,"max_output_tokens":40,"stream":true}""");
        var body = await response.Content.ReadAsStringAsync();
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('\n')).ToList();
        var types = new List<string>();
        var sequence = 0;
        foreach (var lines in events)
        {
            Assert.StartsWith("event: ", lines[0], StringComparison.Ordinal);
            var data = JsonDocument.Parse(lines[1]["data: ".Length..]).RootElement;
            var type = data.GetProperty("type").GetString()!;
            Assert.Equal(lines[0]["event: ".Length..], type);
            Assert.Equal(sequence++, data.GetProperty("sequence_number").GetInt32());
            types.Add(type);
            server.AssertMatchesSchema("ResponseStreamEvent", lines[1]["data: ".Length..]);
        }

        Assert.Equal(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"], types.Take(4));
        Assert.Equal(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"], types.TakeLast(4));
    }

    [Theory]
    [InlineData("""{"model":"successor","input":"x","tools":[{"type":"web_search"}]}""", "tools[0].type")]
    [InlineData("""{"model":"successor","input":[{"type":"computer_call_output","call_id":"c","output":{}}]}""", "input[0].type")]
    [InlineData("""{"model":"successor","input":"x","max_output_tokens":0}""", "max_output_tokens")]
    [InlineData("""{"model":"successor","input":"x","colour":"blue"}""", "colour")]
    [InlineData("""{"model":"successor"}""", "input")]
    [InlineData("""{"model":"successor","input":"x","text":{"format":{"type":"json_schema","name":"s","schema":{"type":"string","pattern":"(?=a)"}}}}""", "text.format.schema")]
    [InlineData("""{"model":"successor","input":"x","text":{"format":{"type":"json_object","shape":"round"}}}""", "text.format.shape")]
    [InlineData("""{"model":"successor","input":[]}""", "input")]
    [InlineData("""{"model":"successor","input":"x","max_output_tokens":999999}""", "max_output_tokens")]
    [InlineData("""{"model":"successor","instructions":"Be brief.","input":[{"role":"user","content":"hi"},{"role":"user","content":null}]}""", "input[1].content")]
    [InlineData("""{"model":"successor","instructions":"Be brief.","input":[{"role":"wizard","content":"hi"}]}""", "input[0].role")]
    [InlineData("""{"model":"successor","input":"x","background":true}""", "background")]
    [InlineData("""{"model":"successor","input":"x","include":["reasoning.encrypted_content"]}""", "include")]
    public async Task WhatCannotBeHonouredIsRefused(string body, string param)
    {
        using var response = await server.PostAsync("/v1/responses", body);
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.BadRequest, json);
        server.AssertMatchesSchema("ErrorResponse", json);
        Assert.Equal(param, JsonDocument.Parse(json).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task AnAssistantItemWithoutContentIsAcceptedAsInChat()
    {
        using var response = await server.PostAsync("/v1/responses",
            """{"model":"successor","max_output_tokens":2,"input":[{"role":"user","content":"hi"},{"role":"assistant","content":null},{"role":"user","content":"again"}]}""");
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, json);
    }

    /// <summary>Values of refused fields that mean "not used" (an empty list, false) are accepted, as OpenAI's SDKs send them.</summary>
    [Fact]
    public async Task RefusedFieldsLeftEmptyAreAccepted()
    {
        using var response = await server.PostAsync("/v1/responses",
            """{"model":"successor","input":"x","max_output_tokens":2,"tools":[],"include":[],"background":false,"previous_response_id":null,"tool_choice":"auto"}""");
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, json);
        server.AssertMatchesSchema("Response", json);
    }
}
