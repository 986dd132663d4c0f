using System.Text.Json;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Clients;

/// <summary>
/// The official <c>openai</c> npm package and LangChain.js's <c>ChatOpenAI</c>, unmodified, against /v1
/// (tests/clients/openai-client.mjs): chat.completions.parse with a zod schema of bounded integers, responses.parse,
/// responses.create with a function tool and a follow-up by previous_response_id, whole and streamed,
/// responses.retrieve, the SDK's NotFoundError, and LangChain's withStructuredOutput and bindTools.
/// </summary>
public class OpenAiClientTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    /// <summary>Remove the Skip once strict tools are served with tool_choice auto (today a 400).</summary>

    [SkippableFact]
    public async Task OfficialClientsWorkAgainstTheServer()
    {
        Skip.If(NodeClients.Missing is not null, NodeClients.Missing);

        var output = await NodeClients.RunAsync("openai-client.mjs", server.BaseAddress.ToString().TrimEnd('/'), ServerFixture.Model, ServerFixture.HermesModel);
        using var document = JsonDocument.Parse(output);
        var r = document.RootElement;

        // The grammar keeps zod's bounds: integers in range, the enum's values.
        foreach (var name in new[] { "parsed", "parsedResponse", "langchainStructured" })
        {
            var rating = r.GetProperty(name);
            Assert.InRange(rating.GetProperty("stars").GetInt32(), 1, 5);
            Assert.InRange(rating.GetProperty("votes").GetInt32(), 0, 1000);
            Assert.Contains(rating.GetProperty("label").GetString(), new[] { "good", "bad" });
        }

        var responses = r.GetProperty("responses");
        var call = responses.GetProperty("call");
        Assert.Equal("function_call", call.GetProperty("type").GetString());
        Assert.StartsWith("fc_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("call_", call.GetProperty("call_id").GetString(), StringComparison.Ordinal);
        Assert.Equal("set_light", call.GetProperty("name").GetString());
        Assert.Equal("completed", call.GetProperty("status").GetString());
        AssertLight(call.GetProperty("arguments"));
        Assert.Equal(1, responses.GetProperty("outputs").GetInt32());
        var followUp = responses.GetProperty("followUp");
        Assert.Equal(responses.GetProperty("id").GetString(), followUp.GetProperty("previous_response_id").GetString());
        Assert.Equal("abcde", followUp.GetProperty("output_text").GetString());
        Assert.Equal(responses.GetProperty("id").GetString(), r.GetProperty("retrieved").GetProperty("id").GetString());
        Assert.Equal(call.GetProperty("call_id").GetString(), r.GetProperty("retrieved").GetProperty("call_id").GetString());

        var streamed = r.GetProperty("streamed");
        Assert.Equal(
            ["response.created", "response.in_progress", "response.output_item.added", "response.function_call_arguments.delta",
             "response.function_call_arguments.done", "response.output_item.done", "response.completed"],
            streamed.GetProperty("events").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("set_light", streamed.GetProperty("call").GetProperty("name").GetString());
        AssertLight(streamed.GetProperty("call").GetProperty("arguments"));
        Assert.True(streamed.GetProperty("call").GetProperty("deltas").GetBoolean());
        Assert.Equal("abcde", streamed.GetProperty("followUp").GetProperty("text").GetString());
        Assert.Equal("abcde", streamed.GetProperty("followUp").GetProperty("output_text").GetString());
        Assert.StartsWith("resp_", streamed.GetProperty("followUp").GetProperty("previous_response_id").GetString(), StringComparison.Ordinal);

        var unknown = r.GetProperty("unknownPrevious");
        Assert.True(unknown.GetProperty("isNotFound").GetBoolean(), unknown.ToString());
        Assert.Equal("previous_response_id", unknown.GetProperty("param").GetString());
        Assert.Equal("previous_response_not_found", unknown.GetProperty("code").GetString());

        var tool = Assert.Single(r.GetProperty("langchainTools").EnumerateArray());
        Assert.Equal("set_light", tool.GetProperty("name").GetString());
        AssertLight(tool.GetProperty("args"));
    }

    /// <summary>openai's zodFunction makes strict tools; with tool_choice auto the model may call or answer.</summary>
    [SkippableFact]
    public async Task StrictZodFunctionToolsWorkWithAutoToolChoice()
    {
        Skip.If(NodeClients.Missing is not null, NodeClients.Missing);

        var output = await NodeClients.RunAsync("openai-client.mjs", server.BaseAddress.ToString().TrimEnd('/'), ServerFixture.Model, ServerFixture.HermesModel, "strict-auto");
        using var document = JsonDocument.Parse(output);
        var result = document.RootElement.GetProperty("strictAuto");
        var calls = result.GetProperty("tool_calls").EnumerateArray().ToList();
        if (calls.Count > 0)
        {
            Assert.Equal("tool_calls", result.GetProperty("finish_reason").GetString());
            Assert.All(calls, c => AssertLight(c.GetProperty("parsed")));
        }
        else
        {
            Assert.False(string.IsNullOrEmpty(result.GetProperty("content").GetString()));
        }
    }

    private static void AssertLight(JsonElement arguments)
    {
        Assert.Contains(arguments.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(arguments.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
    }
}
