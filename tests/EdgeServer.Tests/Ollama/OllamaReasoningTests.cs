using System.Net;
using System.Text.Json;
using EdgeServer.Tests.OpenAi;

namespace EdgeServer.Tests.Ollama;

/// <summary>Ollama's think and message.thinking with reasoning models' published templates (see <see cref="ReasoningServerFixture"/>).</summary>
[Collection(ReasoningGroup.Name)]
public sealed class OllamaReasoningTests(ReasoningServerFixture server)
{
    private static string Chat(string model, string extra = "") =>
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"What is the answer?"}],"options":{"temperature":0,"num_predict":40}{{extra}}}""";

    [Theory]
    [InlineData(ReasoningServerFixture.Qwen3)]
    [InlineData(ReasoningServerFixture.DeepSeek)]
    public async Task ChatReturnsThinkingApartFromTheContent(string model)
    {
        var reply = JsonDocument.Parse(await server.PostOkAsync("/api/chat", Chat(model, ""","stream":false"""))).RootElement;
        Assert.Equal("The answer", reply.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("I plan", reply.GetProperty("message").GetProperty("thinking").GetString());

        var lines = (await server.PostOkAsync("/api/chat", Chat(model))).TrimEnd('\n').Split('\n').Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        var thinking = lines.Where(o => o.GetProperty("message").TryGetProperty("thinking", out _)).ToList();
        Assert.True(thinking.Count > 1, "thinking streams token by token");
        Assert.All(thinking, o => Assert.Equal(string.Empty, o.GetProperty("message").GetProperty("content").GetString()));
        Assert.Equal("I plan", string.Concat(thinking.Select(o => o.GetProperty("message").GetProperty("thinking").GetString())));
        Assert.Equal("The answer", string.Concat(lines.Select(o => o.GetProperty("message").GetProperty("content").GetString())));
        Assert.True(lines[^1].GetProperty("done").GetBoolean());
    }

    [Fact]
    public async Task GenerateReturnsThinkingApartFromTheResponse()
    {
        var body = $$$"""{"model":"{{{ReasoningServerFixture.Qwen3}}}","prompt":"What is the answer?","stream":false,"options":{"temperature":0}}""";
        var reply = JsonDocument.Parse(await server.PostOkAsync("/api/generate", body)).RootElement;
        Assert.Equal("The answer", reply.GetProperty("response").GetString());
        Assert.Equal("I plan", reply.GetProperty("thinking").GetString());
    }

    [Fact]
    public async Task ThinkFalseTurnsThinkingOffInTheTemplate()
    {
        var on = Prompt(await server.PostOkAsync("/api/chat", Chat(ReasoningServerFixture.Qwen3, ""","stream":false,"think":true""")));
        var level = Prompt(await server.PostOkAsync("/api/chat", Chat(ReasoningServerFixture.Qwen3, ""","stream":false,"think":"high" """)));
        var off = Prompt(await server.PostOkAsync("/api/chat", Chat(ReasoningServerFixture.Qwen3, ""","stream":false,"think":false""")));
        Assert.Equal(on, level);
        Assert.True(off > on, $"{off} > {on}");

        using var bad = await server.PostAsync("/api/chat", Chat(ReasoningServerFixture.Qwen3, ""","think":"extreme" """));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("think", JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);

        static int Prompt(string body) => JsonDocument.Parse(body).RootElement.GetProperty("prompt_eval_count").GetInt32();
    }

    [Fact]
    public async Task ShowListsTheThinkingCapability()
    {
        var show = JsonDocument.Parse(await server.PostOkAsync("/api/show", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}"}""")).RootElement;
        Assert.Contains("thinking", show.GetProperty("capabilities").EnumerateArray().Select(c => c.GetString()));
    }
}
