using System.Net;
using System.Text.Json;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Anthropic;

/// <summary>
/// /v1/messages with raw HTTP: hostile and wrong input answered in Anthropic's error shape
/// (<c>{"type":"error","error":{"type","message"}}</c>) naming Anthropic's fields, and the streamed event sequence.
/// </summary>
public class AnthropicApiTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private const string Hi = "[{\"role\":\"user\",\"content\":\"hi\"}]";

    [Theory]
    [InlineData("{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "max_tokens")]
    [InlineData("{\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5}", "messages")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":\"five\",\"messages\":[]}", "max_tokens")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":0,\"messages\":" + Hi + "}", "max_tokens")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"temperature\":1.5,\"messages\":" + Hi + "}", "temperature")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"temperature\":-0.1,\"messages\":" + Hi + "}", "temperature")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"top_p\":0,\"messages\":" + Hi + "}", "top_p")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"top_k\":-1,\"messages\":" + Hi + "}", "top_k")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"stop_sequences\":\"x\",\"messages\":" + Hi + "}", "stop_sequences")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"stop_sequences\":[\"a\",\"b\",\"c\",\"d\",\"e\"],\"messages\":" + Hi + "}", "stop_sequences")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"system\":5,\"messages\":" + Hi + "}", "system")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"system\":[{\"type\":\"image\"}],\"messages\":" + Hi + "}", "system[0]")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":\"hi\"}]}", "messages[0].role")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"hologram\"}]}]}", "messages[0].content[0].type")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"no type\"}]}]}", "messages[0].content[0]")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0].text")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}}]}]}", "messages[0].content[0]: image blocks are not supported")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}]}", "document blocks are not supported")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}]}]}", "tool_use blocks belong in assistant messages")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":\"{}\"}]}]}", "messages[0].content[0].input")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"content\":\"x\"}]}]}", "messages[0].content[0].tool_use_id")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tool_choice\":{\"type\":\"maybe\"},\"messages\":" + Hi + "}", "tool_choice")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tool_choice\":\"auto\",\"messages\":" + Hi + "}", "tool_choice")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tool_choice\":{\"type\":\"tool\"},\"messages\":" + Hi + "}", "tool_choice.name")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tools\":[{\"name\":\"f\"}],\"messages\":" + Hi + "}", "tools[0].input_schema")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tools\":[{\"name\":\"f\",\"input_schema\":[]}],\"messages\":" + Hi + "}", "tools[0].input_schema")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}],\"messages\":" + Hi + "}", "tools[0].type")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tools\":[{\"name\":\"bad name!\",\"input_schema\":{\"type\":\"object\"}}],\"messages\":" + Hi + "}", "tools[0].name")]
    [InlineData("{\"model\":\"successor\",\"max_tokens\":5,\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"g\"},\"messages\":" + Hi + "}", "tool_choice")]
    [InlineData("{\"model\":\"successor\"", null)]
    [InlineData("[1,2]", null)]
    public async Task BadRequestsAreA400InAnthropicsShapeNamingTheField(string body, string? field)
    {
        var (type, message) = await ErrorAsync("/v1/messages", body, HttpStatusCode.BadRequest);
        Assert.Equal("invalid_request_error", type);
        if (field is not null)
        {
            Assert.Contains(field, message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task HugeStopSequencesAreRefusedByTheConfiguredLimit()
    {
        var (_, message) = await ErrorAsync("/v1/messages", $"{{\"model\":\"successor\",\"max_tokens\":5,\"stop_sequences\":[\"{new string('x', 100_000)}\"],\"messages\":{Hi}}}", HttpStatusCode.BadRequest);
        Assert.Contains("stop_sequences", message, StringComparison.Ordinal);
        Assert.Contains("MaxStopLength", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownModelsAndRoutesAreNotFoundErrors()
    {
        var (type, message) = await ErrorAsync("/v1/messages", $"{{\"model\":\"no-such-model\",\"max_tokens\":5,\"messages\":{Hi}}}", HttpStatusCode.NotFound);
        Assert.Equal("not_found_error", type);
        Assert.Contains("no-such-model", message, StringComparison.Ordinal);
        (type, _) = await ErrorAsync("/v1/messages/count_tokens", $"{{\"model\":\"no-such-model\",\"messages\":{Hi}}}", HttpStatusCode.NotFound);
        Assert.Equal("not_found_error", type);
        (type, _) = await ErrorAsync("/v1/messages/batches", "{}", HttpStatusCode.NotFound);
        Assert.Equal("not_found_error", type);
    }

    [Fact]
    public async Task AWholeReplyHasAnthropicsShape()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/messages")
        {
            Content = new StringContent($"{{\"model\":\"successor\",\"max_tokens\":100,\"temperature\":0,\"metadata\":{{\"user_id\":\"u\"}},\"system\":\"Be brief.\",\"messages\":[{{\"role\":\"user\",\"content\":[{{\"type\":\"text\",\"text\":\"hi\",\"cache_control\":{{\"type\":\"ephemeral\"}}}}]}}]}}", System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var response = await server.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var root = JsonDocument.Parse(text).RootElement;
        Assert.Equal(new[] { "content", "id", "model", "role", "stop_reason", "stop_sequence", "type", "usage" }, root.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Equal("message", root.GetProperty("type").GetString());
        Assert.Equal(SuccessorModel.ChatReply, root.GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(["input_tokens", "output_tokens"], root.GetProperty("usage").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task StreamedEventsComeInAnthropicsOrder()
    {
        var body = await server.PostOkAsync("/v1/messages", $"{{\"model\":\"successor\",\"max_tokens\":100,\"temperature\":0,\"stream\":true,\"stop_sequences\":[\"mno\"],\"messages\":{Hi}}}");
        var events = Events(body);
        Assert.Equal(["message_start", "content_block_start"], events.Take(2).Select(e => e.Name));
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], events.TakeLast(3).Select(e => e.Name));
        Assert.All(events, e => Assert.Equal(e.Name, e.Data.GetProperty("type").GetString()));

        var start = events[0].Data.GetProperty("message");
        Assert.StartsWith("msg_", start.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Empty(start.GetProperty("content").EnumerateArray());
        Assert.Equal(JsonValueKind.Null, start.GetProperty("stop_reason").ValueKind);
        var promptTokens = start.GetProperty("usage").GetProperty("input_tokens").GetInt32();
        Assert.True(promptTokens > 0);

        var block = events[1].Data;
        Assert.Equal(0, block.GetProperty("index").GetInt32());
        Assert.Equal("text", block.GetProperty("content_block").GetProperty("type").GetString());
        Assert.Equal(string.Empty, block.GetProperty("content_block").GetProperty("text").GetString());
        var deltas = events.Where(e => e.Name == "content_block_delta").Select(e => e.Data.GetProperty("delta")).ToList();
        Assert.All(deltas, d => Assert.Equal("text_delta", d.GetProperty("type").GetString()));
        Assert.Equal(SuccessorModel.Alphabet[..12], string.Concat(deltas.Select(d => d.GetProperty("text").GetString())));

        var delta = events[^2].Data;
        Assert.Equal("stop_sequence", delta.GetProperty("delta").GetProperty("stop_reason").GetString());
        Assert.Equal("mno", delta.GetProperty("delta").GetProperty("stop_sequence").GetString());
        Assert.Equal(promptTokens, delta.GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.True(delta.GetProperty("usage").GetProperty("output_tokens").GetInt32() >= 12);
    }

    [Fact]
    public async Task AForcedToolCallStreamsAsAToolUseBlockWithItsInput()
    {
        var body = await server.PostOkAsync("/v1/messages",
            "{\"model\":\"successor-qwen\",\"max_tokens\":200,\"temperature\":0,\"stream\":true,\"tool_choice\":{\"type\":\"tool\",\"name\":\"set_light\"}," +
            "\"tools\":[{\"name\":\"set_light\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"on\":{\"type\":\"boolean\"}},\"required\":[\"on\"]}}]," +
            "\"messages\":[{\"role\":\"user\",\"content\":\"light\"}]}");
        var events = Events(body);
        var start = events.Single(e => e.Name == "content_block_start" && e.Data.GetProperty("content_block").GetProperty("type").GetString() == "tool_use").Data;
        var index = start.GetProperty("index").GetInt32();
        Assert.StartsWith("toolu_", start.GetProperty("content_block").GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("set_light", start.GetProperty("content_block").GetProperty("name").GetString());
        Assert.Empty(start.GetProperty("content_block").GetProperty("input").EnumerateObject());
        var json = string.Concat(events.Where(e => e.Name == "content_block_delta" && e.Data.GetProperty("index").GetInt32() == index)
            .Select(e => e.Data.GetProperty("delta")).Select(d => Assert.IsType<string>(d.GetProperty("type").GetString() == "input_json_delta" ? d.GetProperty("partial_json").GetString() : null)));
        Assert.Contains(JsonDocument.Parse(json).RootElement.GetProperty("on").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        Assert.Contains(events, e => e.Name == "content_block_stop" && e.Data.GetProperty("index").GetInt32() == index);
        Assert.Equal("tool_use", events[^2].Data.GetProperty("delta").GetProperty("stop_reason").GetString());
        Assert.Equal("message_stop", events[^1].Name);
    }

    [Fact]
    public async Task CountTokensMatchesTheReplysUsageAndNeedsNoMaxTokens()
    {
        var request = $"{{\"model\":\"successor\",\"system\":\"Be brief.\",\"messages\":{Hi}}}";
        var count = JsonDocument.Parse(await server.PostOkAsync("/v1/messages/count_tokens", request)).RootElement;
        Assert.Equal(["input_tokens"], count.EnumerateObject().Select(p => p.Name));
        var reply = JsonDocument.Parse(await server.PostOkAsync("/v1/messages", $"{{\"model\":\"successor\",\"max_tokens\":1,\"system\":\"Be brief.\",\"messages\":{Hi}}}")).RootElement;
        Assert.Equal(reply.GetProperty("usage").GetProperty("input_tokens").GetInt32(), count.GetProperty("input_tokens").GetInt32());
        var (_, message) = await ErrorAsync("/v1/messages/count_tokens", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}", HttpStatusCode.BadRequest);
        Assert.Contains("image", message, StringComparison.Ordinal);
    }

    private sealed record Event(string Name, JsonElement Data);

    private static List<Event> Events(string body) => body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e =>
    {
        var lines = e.Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("event: ", lines[0], StringComparison.Ordinal);
        Assert.StartsWith("data: ", lines[1], StringComparison.Ordinal);
        return new Event(lines[0]["event: ".Length..], JsonDocument.Parse(lines[1]["data: ".Length..]).RootElement.Clone());
    }).ToList();

    private async Task<(string Type, string Message)> ErrorAsync(string path, string body, HttpStatusCode status)
    {
        using var response = await server.PostAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{(int)response.StatusCode}: {text}");
        var root = JsonDocument.Parse(text).RootElement;
        Assert.Equal(["type", "error"], root.EnumerateObject().Select(p => p.Name));
        Assert.Equal("error", root.GetProperty("type").GetString());
        var error = root.GetProperty("error");
        Assert.Equal(["type", "message"], error.EnumerateObject().Select(p => p.Name));
        return (error.GetProperty("type").GetString()!, error.GetProperty("message").GetString()!);
    }
}
