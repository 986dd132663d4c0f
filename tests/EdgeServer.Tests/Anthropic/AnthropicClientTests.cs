using System.Text.Json;
using EdgeServer.Tests.Clients;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Anthropic;

/// <summary>
/// The official <c>@anthropic-ai/sdk</c> npm package, unmodified, against /v1/messages: messages whole and streamed,
/// stop sequences and max_tokens, tools with a tool_use and tool_result round trip (whole and streamed),
/// count_tokens, and the SDK's error classes (tests/clients/anthropic-client.mjs).
/// </summary>
public class AnthropicClientTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    [SkippableFact]
    public async Task OfficialClientWorksAgainstTheServer()
    {
        Skip.If(NodeClients.Missing is not null, NodeClients.Missing);

        var output = await NodeClients.RunAsync("anthropic-client.mjs", server.BaseAddress.ToString().TrimEnd('/'), ServerFixture.Model, ServerFixture.HermesModel);
        using var document = JsonDocument.Parse(output);
        var r = document.RootElement;

        var whole = r.GetProperty("whole");
        Assert.StartsWith("msg_", whole.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("message", whole.GetProperty("type").GetString());
        Assert.Equal("assistant", whole.GetProperty("role").GetString());
        Assert.Equal(ServerFixture.Model, whole.GetProperty("model").GetString());
        var block = Assert.Single(whole.GetProperty("content").EnumerateArray());
        Assert.Equal("text", block.GetProperty("type").GetString());
        Assert.Equal(SuccessorModel.ChatReply, block.GetProperty("text").GetString());
        Assert.Equal("end_turn", whole.GetProperty("stop_reason").GetString());
        Assert.Equal(JsonValueKind.Null, whole.GetProperty("stop_sequence").ValueKind);
        var inputTokens = whole.GetProperty("usage").GetProperty("input_tokens").GetInt32();
        Assert.True(inputTokens > 0);
        Assert.True(whole.GetProperty("usage").GetProperty("output_tokens").GetInt32() > 0);

        var streamed = r.GetProperty("streamed");
        Assert.Equal(SuccessorModel.ChatReply, streamed.GetProperty("text").GetString());
        Assert.Equal(SuccessorModel.ChatReply, Assert.Single(streamed.GetProperty("content").EnumerateArray()).GetProperty("text").GetString());
        Assert.Equal("end_turn", streamed.GetProperty("stop_reason").GetString());
        Assert.Equal(whole.GetProperty("usage").GetProperty("output_tokens").GetInt32(), streamed.GetProperty("usage").GetProperty("output_tokens").GetInt32());
        Assert.True(streamed.GetProperty("usage").GetProperty("input_tokens").GetInt32() > inputTokens); // the system prompt counts
        var events = streamed.GetProperty("events").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Equal(["message_start", "content_block_start"], events.Take(2));
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], events.TakeLast(3));
        Assert.All(events.Skip(2).SkipLast(3), e => Assert.Equal("content_block_delta", e));

        var stopped = r.GetProperty("stopped");
        Assert.Equal("abcdef", stopped.GetProperty("text").GetString());
        Assert.Equal("stop_sequence", stopped.GetProperty("stop_reason").GetString());
        Assert.Equal("ghi", stopped.GetProperty("stop_sequence").GetString());
        var cut = r.GetProperty("cut");
        Assert.Equal("abc", cut.GetProperty("text").GetString());
        Assert.Equal("max_tokens", cut.GetProperty("stop_reason").GetString());
        Assert.Equal(3, cut.GetProperty("output_tokens").GetInt32());

        var call = r.GetProperty("toolCall");
        Assert.StartsWith("toolu_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("set_light", call.GetProperty("name").GetString());
        Assert.Equal("tool_use", call.GetProperty("stop_reason").GetString());
        Assert.Contains(call.GetProperty("input").GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains(call.GetProperty("input").GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        var afterTool = r.GetProperty("afterTool");
        Assert.Equal("text", Assert.Single(afterTool.GetProperty("content").EnumerateArray()).GetProperty("type").GetString());
        Assert.Equal("max_tokens", afterTool.GetProperty("stop_reason").GetString());

        var streamedTool = r.GetProperty("streamedTool");
        Assert.Equal("tool_use", streamedTool.GetProperty("stop_reason").GetString());
        var use = streamedTool.GetProperty("content").EnumerateArray().Single(b => b.GetProperty("type").GetString() == "tool_use");
        Assert.Equal("set_light", use.GetProperty("name").GetString());
        Assert.Contains(use.GetProperty("input").GetProperty("room").GetString(), new[] { "kitchen", "hall" });
        Assert.Contains("input_json_delta", streamedTool.GetProperty("events").EnumerateArray().Select(e => e.GetString()));

        Assert.Equal(inputTokens, r.GetProperty("count").GetInt32());
        Assert.True(r.GetProperty("countWithTools").GetInt32() > r.GetProperty("countWithoutTools").GetInt32());

        var unknown = r.GetProperty("unknownModel");
        Assert.True(unknown.GetProperty("isNotFound").GetBoolean(), unknown.ToString());
        Assert.Equal(404, unknown.GetProperty("status").GetInt32());
        Assert.Equal("not_found_error", unknown.GetProperty("type").GetString());
        Assert.Contains("no-such-model", unknown.GetProperty("message").GetString(), StringComparison.Ordinal);
        var bad = r.GetProperty("badRequest");
        Assert.True(bad.GetProperty("isBadRequest").GetBoolean(), bad.ToString());
        Assert.Equal("invalid_request_error", bad.GetProperty("type").GetString());
        Assert.Contains("temperature", bad.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.True(r.GetProperty("streamedUnknownModel").GetProperty("isNotFound").GetBoolean());
    }
}
