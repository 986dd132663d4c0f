using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.OpenAi;

/// <summary>The wire format itself: SSE framing byte for byte, and every body checked against OpenAI's OpenAPI spec.</summary>
[Collection(ServerGroup.Name)]
public class RawHttpTests(ServerFixture server)
{
    private const string ChatBody = """{"model":"successor","messages":[{"role":"user","content":"Say the alphabet"}],"temperature":0""";

    [SkippableFact]
    public async Task StreamedChatIsFramedExactlyAsOpenAiSendsIt()
    {
        SkipWithoutSpec();
        using var response = await server.PostAsync("/v1/chat/completions", ChatBody + ""","stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var body = await response.Content.ReadAsStringAsync();

        // Text as it is, escaped only where JSON must be (OpenAI writes "é", not "\u00e9"), as whole responses are.
        Assert.Contains("\"content\":\"é\"", body, StringComparison.Ordinal);
        Assert.EndsWith("\n\ndata: [DONE]\n\n", body, StringComparison.Ordinal);
        var events = body.Split("\n\n");
        Assert.Equal(string.Empty, events[^1]);
        events = events[..^1];
        Assert.All(events, e =>
        {
            Assert.StartsWith("data: ", e, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e);
            Assert.DoesNotContain('\r', e);
        });
        Assert.Equal("data: [DONE]", events[^1]);

        var chunks = events[..^1].Select(e => e["data: ".Length..]).ToList();
        foreach (var chunk in chunks)
        {
            server.AssertMatchesSchema("CreateChatCompletionStreamResponse", chunk);
        }

        var docs = chunks.Select(c => JsonDocument.Parse(c).RootElement).ToList();
        Assert.Single(docs.Select(d => d.GetProperty("id").GetString()).Distinct());
        var first = docs[0].GetProperty("choices")[0];
        Assert.Equal("assistant", first.GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal(string.Empty, first.GetProperty("delta").GetProperty("content").GetString());

        var content = docs.Skip(1).Where(d => d.GetProperty("choices").GetArrayLength() == 1)
            .Select(d => d.GetProperty("choices")[0])
            .TakeWhile(c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.Null)
            .Select(c => c.GetProperty("delta").GetProperty("content").GetString())
            .ToList();
        Assert.Equal(28, content.Count);
        Assert.Equal(SuccessorModel.ChatReply, string.Concat(content));

        var finish = docs[^2].GetProperty("choices")[0];
        Assert.Equal("stop", finish.GetProperty("finish_reason").GetString());
        Assert.Empty(finish.GetProperty("delta").EnumerateObject());
        var usageChunk = docs[^1];
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        Assert.Equal(31, usageChunk.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(1 + 28 + 1 + 1, docs.Count);
    }

    [Fact]
    public async Task WithoutIncludeUsageNoUsageChunkIsSent()
    {
        using var response = await server.PostAsync("/v1/chat/completions", ChatBody + ""","stream":true,"max_tokens":3}""");
        var body = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("\"usage\"", body, StringComparison.Ordinal);
        Assert.Contains("\"finish_reason\":\"length\"", body, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task ChatCompletionMatchesTheSpec()
    {
        SkipWithoutSpec();
        var json = await server.PostOkAsync("/v1/chat/completions", ChatBody + "}");
        server.AssertMatchesSchema("CreateChatCompletionResponse", json);
        var root = JsonDocument.Parse(json).RootElement;
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        Assert.Equal(SuccessorModel.ChatReply, root.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [SkippableFact]
    public async Task CompletionsMatchTheSpecStreamedAndWhole()
    {
        SkipWithoutSpec();
        var json = await server.PostOkAsync("/v1/completions", """{"model":"successor","prompt":"Hello j","temperature":0,"max_tokens":50}""");
        server.AssertMatchesSchema("CreateCompletionResponse", json);
        var choice = JsonDocument.Parse(json).RootElement.GetProperty("choices")[0];
        Assert.Equal(SuccessorModel.ExpectedAfter('j'), choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());

        using var response = await server.PostAsync("/v1/completions", """{"model":"successor","prompt":"Hello j","temperature":0,"stream":true,"stream_options":{"include_usage":true}}""");
        var body = await response.Content.ReadAsStringAsync();
        var chunks = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).ToList();
        Assert.Equal("[DONE]", chunks[^1]);
        // The spec says streamed and whole completions share one shape, yet types finish_reason as a string,
        // while OpenAI's own stream (and every client) has it null until the last chunk. The last chunk is
        // checked as it is; the others with that one field set, so everything else of them is still checked.
        server.AssertMatchesSchema("CreateCompletionResponse", chunks[^3]); // finish
        server.AssertMatchesSchema("CreateCompletionResponse", chunks[^2]); // usage
        foreach (var chunk in chunks[..^3])
        {
            Assert.Contains("\"finish_reason\":null", chunk, StringComparison.Ordinal);
            server.AssertMatchesSchema("CreateCompletionResponse", chunk.Replace("\"finish_reason\":null", "\"finish_reason\":\"stop\"", StringComparison.Ordinal));
        }

        var text = string.Concat(chunks[..^1].Select(c => JsonDocument.Parse(c).RootElement.GetProperty("choices"))
            .Where(c => c.GetArrayLength() > 0).Select(c => c[0].GetProperty("text").GetString()));
        // The legacy endpoint's default max_tokens is 16, as OpenAI's.
        Assert.Equal(SuccessorModel.ExpectedAfter('j')[..16], text);
    }

    [SkippableFact]
    public async Task ModelsMatchTheSpecAndBrokenFilesAreListedWithTheirReason()
    {
        SkipWithoutSpec();
        var list = await (await server.Http.GetAsync("/v1/models")).Content.ReadAsStringAsync();
        server.AssertMatchesSchema("ListModelsResponse", list);
        var data = JsonDocument.Parse(list).RootElement.GetProperty("data").EnumerateArray().ToDictionary(m => m.GetProperty("id").GetString()!);
        Assert.Equal("unavailable", data["truncated"].GetProperty("details").GetProperty("status").GetString());
        Assert.Contains("truncated", data["truncated"].GetProperty("details").GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Contains("not a GGUF file", data["notes"].GetProperty("details").GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal("llama", data["successor"].GetProperty("details").GetProperty("architecture").GetString());
        Assert.Contains(data["successor"].GetProperty("details").GetProperty("status").GetString(), new[] { "available", "loaded" });
        Assert.Equal("unavailable", data["alien"].GetProperty("details").GetProperty("status").GetString());
        Assert.Contains("unknown model architecture", data["alien"].GetProperty("details").GetProperty("error").GetString(), StringComparison.Ordinal);

        using var one = await server.Http.GetAsync("/v1/models/successor");
        server.AssertMatchesSchema("Model", await one.Content.ReadAsStringAsync());
        using var missing = await server.Http.GetAsync("/v1/models/missing");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", await missing.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task HealthAnswers()
    {
        using var response = await server.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("""{"status":"ok"}""", await response.Content.ReadAsStringAsync());
    }

    private void SkipWithoutSpec() => Skip.If(server.Schema is null, SharedPaths.MissingReason(SharedPaths.OpenApiSpec));
}
