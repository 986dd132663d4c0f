using System.Text.Json;
using EdgeServer.Tests.Clients;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Ollama;

/// <summary>
/// The official <c>ollama</c> npm package, unmodified, against /api on a server of its own (so /api/ps sees only
/// this test's models): list, show, ps, chat whole and streamed, tools with a tool-result round trip, generate,
/// loading and unloading, structured output and embeddings (tests/clients/ollama-client.mjs).
/// </summary>
public class OllamaClientTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    [SkippableFact]
    public async Task OfficialClientWorksAgainstTheServer()
    {
        Skip.If(NodeClients.Missing is not null, NodeClients.Missing);

        var output = await NodeClients.RunAsync("ollama-client.mjs", server.BaseAddress.ToString().TrimEnd('/'), ServerFixture.Model, ServerFixture.HermesModel);
        using var document = JsonDocument.Parse(output);
        var r = document.RootElement;

        Assert.Contains(ServerFixture.Model + ":latest", r.GetProperty("names").EnumerateArray().Select(n => n.GetString()));
        Assert.Equal("llama", r.GetProperty("architecture").GetString());
        Assert.Equal("llama", r.GetProperty("family").GetString());
        Assert.Contains("completion", r.GetProperty("capabilities").EnumerateArray().Select(c => c.GetString()));

        var chat = r.GetProperty("chat");
        Assert.Equal(SuccessorModel.ChatReply, chat.GetProperty("content").GetString());
        Assert.Equal("assistant", chat.GetProperty("role").GetString());
        Assert.Equal("stop", chat.GetProperty("done_reason").GetString());
        Assert.True(chat.GetProperty("eval_count").GetInt32() > 0);
        Assert.True(chat.GetProperty("prompt_eval_count").GetInt32() > 0);

        var streamed = r.GetProperty("streamed");
        Assert.Equal(SuccessorModel.ChatReply, streamed.GetProperty("content").GetString());
        Assert.True(streamed.GetProperty("parts").GetInt32() > 2);
        Assert.True(streamed.GetProperty("done").GetBoolean());
        Assert.Equal(chat.GetProperty("eval_count").GetInt32(), streamed.GetProperty("eval_count").GetInt32());
        Assert.True(streamed.GetProperty("total_duration").GetInt64() >= streamed.GetProperty("eval_duration").GetInt64());

        var call = r.GetProperty("toolCall");
        Assert.Equal("set_light", call.GetProperty("name").GetString());
        Assert.Contains(call.GetProperty("arguments").GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(call.GetProperty("arguments").GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        var afterTool = r.GetProperty("afterTool");
        Assert.NotEqual(string.Empty, afterTool.GetProperty("content").GetString());
        Assert.Equal(JsonValueKind.Null, afterTool.GetProperty("tool_calls").ValueKind);

        Assert.Equal(SuccessorModel.ExpectedAfter('j'), r.GetProperty("generate").GetProperty("response").GetString());
        Assert.Equal(SuccessorModel.ChatReply[..5], r.GetProperty("generateStreamed").GetProperty("response").GetString());
        Assert.Equal("length", r.GetProperty("generateStreamed").GetProperty("done_reason").GetString());
        Assert.Equal(5, r.GetProperty("generateStreamed").GetProperty("eval_count").GetInt32());

        Assert.Equal("load", r.GetProperty("load").GetProperty("done_reason").GetString());
        Assert.Contains(ServerFixture.HermesModel + ":latest", r.GetProperty("psAfterLoad").EnumerateArray().Select(m => m.GetProperty("name").GetString()));
        Assert.All(r.GetProperty("psAfterLoad").EnumerateArray(), m => Assert.True(m.GetProperty("size").GetInt64() > 0));

        var formatted = r.GetProperty("formatted");
        Assert.Contains(formatted.GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(formatted.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        Assert.Equal("{", r.GetProperty("jsonMode").GetString());

        var embed = r.GetProperty("embed");
        Assert.Equal(2, embed.GetProperty("count").GetInt32());
        var dimensions = embed.GetProperty("dimensions").EnumerateArray().Select(d => d.GetInt32()).Distinct().Single();
        Assert.Equal(dimensions, r.GetProperty("embeddings").GetProperty("dimensions").GetInt32());
        Assert.True(r.GetProperty("embeddings").GetProperty("same").GetBoolean());

        Assert.Empty(r.GetProperty("psAfterUnload").EnumerateArray());

        var unknown = r.GetProperty("unknownModel");
        Assert.Equal("ResponseError", unknown.GetProperty("name").GetString());
        Assert.Equal(404, unknown.GetProperty("status").GetInt32());
        Assert.Equal("model 'no-such-model' not found", unknown.GetProperty("message").GetString());
    }
}
