using System.Net;
using System.Text.Json;
using EdgeServer.Tests.OpenAi;

namespace EdgeServer.Tests.Anthropic;

/// <summary>Anthropic's thinking parameter, thinking blocks and thinking_delta events with reasoning models' templates.</summary>
[Collection(ReasoningGroup.Name)]
public sealed class AnthropicReasoningTests(ReasoningServerFixture server)
{
    private static string Message(string model, string extra = "") =>
        $$"""{"model":"{{model}}","max_tokens":1500,"temperature":0,"messages":[{"role":"user","content":"What is the answer?"}]{{extra}}}""";

    [Theory]
    [InlineData(ReasoningServerFixture.Qwen3, "")]
    [InlineData(ReasoningServerFixture.DeepSeek, ""","thinking":{"type":"enabled","budget_tokens":1024}""")]
    public async Task ThinkingComesInAThinkingBlockBeforeTheText(string model, string thinking)
    {
        var reply = JsonDocument.Parse(await server.PostOkAsync("/v1/messages", Message(model, thinking))).RootElement;
        var content = reply.GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(2, content.Count);
        Assert.Equal(["type", "thinking", "signature"], content[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal("thinking", content[0].GetProperty("type").GetString());
        Assert.Equal("I plan", content[0].GetProperty("thinking").GetString());
        Assert.Equal(string.Empty, content[0].GetProperty("signature").GetString());
        Assert.Equal("text", content[1].GetProperty("type").GetString());
        Assert.Equal("The answer", content[1].GetProperty("text").GetString());
        Assert.Equal("end_turn", reply.GetProperty("stop_reason").GetString());
    }

    [Fact]
    public async Task ThinkingStreamsAsThinkingDeltasClosedByASignature()
    {
        var events = (await server.PostOkAsync("/v1/messages", Message(ReasoningServerFixture.Qwen3, ""","stream":true""")))
            .Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => (Name: e.Split('\n')[0]["event: ".Length..], Data: JsonDocument.Parse(e.Split('\n')[1]["data: ".Length..]).RootElement.Clone()))
            .ToList();
        string Kind((string Name, JsonElement Data) e) => e.Name == "content_block_delta" ? e.Data.GetProperty("delta").GetProperty("type").GetString()!
            : e.Name == "content_block_start" ? "start:" + e.Data.GetProperty("content_block").GetProperty("type").GetString() : e.Name;

        // Consecutive deltas of one kind collapse: the thinking and the text each stream in several.
        var kinds = events.Select(Kind).Aggregate(new List<string>(), (list, k) =>
        {
            if (list.Count == 0 || list[^1] != k || k is not ("thinking_delta" or "text_delta"))
            {
                list.Add(k);
            }

            return list;
        });
        Assert.Equal(["message_start", "start:thinking", "thinking_delta", "signature_delta", "content_block_stop", "start:text", "text_delta", "content_block_stop", "message_delta", "message_stop"], kinds);
        Assert.True(events.Count(e => Kind(e) == "thinking_delta") > 1);

        var thinkingStart = events.First(e => Kind(e) == "start:thinking").Data;
        Assert.Equal(0, thinkingStart.GetProperty("index").GetInt32());
        Assert.Equal(string.Empty, thinkingStart.GetProperty("content_block").GetProperty("thinking").GetString());
        Assert.Equal(string.Empty, thinkingStart.GetProperty("content_block").GetProperty("signature").GetString());
        Assert.Equal("I plan", string.Concat(events.Where(e => Kind(e) == "thinking_delta").Select(e => e.Data.GetProperty("delta").GetProperty("thinking").GetString())));
        Assert.Equal("The answer", string.Concat(events.Where(e => Kind(e) == "text_delta").Select(e => e.Data.GetProperty("delta").GetProperty("text").GetString())));
        Assert.All(events.Where(e => Kind(e) == "text_delta"), e => Assert.Equal(1, e.Data.GetProperty("index").GetInt32()));
    }

    [Fact]
    public async Task DisabledThinkingTurnsItOffInTheTemplate()
    {
        var on = Input(await server.PostOkAsync("/v1/messages", Message(ReasoningServerFixture.Qwen3, ""","thinking":{"type":"adaptive"}""")));
        var off = Input(await server.PostOkAsync("/v1/messages", Message(ReasoningServerFixture.Qwen3, ""","thinking":{"type":"disabled"}""")));
        Assert.True(off > on, $"{off} > {on}");

        static int Input(string body) => JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("input_tokens").GetInt32();
    }

    [Theory]
    [InlineData("""{"type":"enabled","budget_tokens":100}""", "budget_tokens")]
    [InlineData("""{"type":"enabled"}""", "budget_tokens")]
    [InlineData("""{"type":"enabled","budget_tokens":4096}""", "max_tokens")]
    [InlineData("""{"type":"sometimes"}""", "thinking.type")]
    [InlineData("\"yes\"", "thinking")]
    public async Task BadThinkingIsA400NamingTheField(string thinking, string field)
    {
        using var response = await server.PostAsync("/v1/messages", Message(ReasoningServerFixture.Qwen3, ",\"thinking\":" + thinking));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains(field, error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}
