using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Tests.OpenAi;

/// <summary>Bad input gets the right status and an OpenAI-shaped error; a good request right after still works.</summary>
[Collection(ServerGroup.Name)]
public class BadRequestTests(ServerFixture server)
{
    private const string Good = """{"model":"successor","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":3}""";

    public static TheoryData<string, string, string, int, string?, string?> Cases => new()
    {
        // name, path, body, status, param, code
        { "malformed JSON", "/v1/chat/completions", "{not json", 400, null, "invalid_json" },
        { "truncated JSON", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}""", 400, null, "invalid_json" },
        { "empty body", "/v1/chat/completions", "", 400, null, "invalid_json" },
        { "JSON null", "/v1/chat/completions", "null", 400, null, "invalid_json" },
        { "JSON array", "/v1/chat/completions", "[]", 400, null, "invalid_json" },
        { "wrong type max_tokens", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}""", 400, "max_tokens", "invalid_type" },
        { "wrong type stream", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"stream":"yes"}""", 400, "stream", "invalid_type" },
        { "huge max_tokens", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":99999999999}""", 400, "max_tokens", "invalid_type" },
        { "missing model", "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}]}""", 400, "model", "missing_required_parameter" },
        { "missing messages", "/v1/chat/completions", """{"model":"successor"}""", 400, "messages", "missing_required_parameter" },
        { "empty messages", "/v1/chat/completions", """{"model":"successor","messages":[]}""", 400, "messages", "invalid_value" },
        { "null message", "/v1/chat/completions", """{"model":"successor","messages":[null]}""", 400, "messages[0]", "invalid_type" },
        { "unknown role", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"wizard","content":"hi"}]}""", 400, "messages[0].role", "invalid_value" },
        { "content a number", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":42}]}""", 400, "messages[0].content", "invalid_type" },
        { "image content part", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "messages[0].content[0].type", "invalid_value" },
        { "zero max_tokens", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":0}""", 400, "max_tokens", "integer_below_min_value" },
        { "negative max_completion_tokens", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":-5}""", 400, "max_completion_tokens", "integer_below_min_value" },
        { "temperature too high", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"temperature":5}""", 400, "temperature", "invalid_value" },
        { "top_p zero", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"top_p":0}""", 400, "top_p", "invalid_value" },
        { "n of 5", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"n":5}""", 400, "n", "limit_exceeded" },
        { "unknown field", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"frobnicate":true}""", 400, "frobnicate", "unknown_parameter" },
        { "unknown message field", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi","mood":"happy"}]}""", 400, "messages[0].mood", "unknown_parameter" },
        { "audio output", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"audio":{"voice":"alloy","format":"mp3"}}""", 400, "audio", "unsupported_parameter" },
        { "audio modality", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"modalities":["text","audio"]}""", 400, "modalities", "unsupported_parameter" },
        { "web search", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"web_search_options":{}}""", 400, "web_search_options", "unsupported_parameter" },
        { "deprecated functions", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"functions":[{"name":"f"}]}""", 400, "functions", "unsupported_parameter" },
        { "tool of another type", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"custom","custom":{"name":"x"}}]}""", 400, "tools[0].type", "invalid_value" },
        { "tool without name", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"description":"d"}}]}""", 400, "tools[0].function.name", "missing_required_parameter" },
        { "tool name with spaces", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"turn on"}}]}""", 400, "tools[0].function.name", "invalid_value" },
        { "message name too long", "/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"name\":\"" + new string('n', 65) + "\"}]}", 400, "messages[0].name", "string_above_max_length" },
        { "tool call name with spaces", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"turn on","arguments":"{}"}}]}]}""", 400, "messages[1].tool_calls[0].function.name", "invalid_value" },
        { "tool call name too long", "/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"" + new string('f', 65) + "\",\"arguments\":\"{}\"}}]}]}", 400, "messages[1].tool_calls[0].function.name", "invalid_value" },
        { "tool parameters not an object", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":[1]}}]}""", 400, "tools[0].function.parameters", "invalid_type" },
        { "tool schema keyword not enforceable", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"array","uniqueItems":true}}}}}]}""", 400, "tools[0].function.parameters", "invalid_value" },
        { "tool_choice unknown word", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}],"tool_choice":"always"}""", 400, "tool_choice", "invalid_value" },
        { "tool_choice names a missing function", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""", 400, "tool_choice", "invalid_value" },
        { "tool_choice required without tools", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}""", 400, "tool_choice", "invalid_value" },
        { "tool message without tool_call_id", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"},{"role":"tool","content":"42"}]}""", 400, "messages[1].tool_call_id", "missing_required_parameter" },
        { "tool_calls on a user message", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}""", 400, "messages[0].tool_calls", "invalid_value" },
        { "response_format unknown type", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"yaml"}}""", 400, "response_format.type", "invalid_value" },
        { "json_schema without name", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}""", 400, "response_format.json_schema.name", "missing_required_parameter" },
        { "json_schema pattern with a backreference", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"^(a)\\1$"}}}}""", 400, "response_format.json_schema.schema", "invalid_value" },
        { "json_schema minimum above maximum", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"integer","minimum":10,"maximum":5}}}}""", 400, "response_format.json_schema.schema", "invalid_value" },
        { "json_schema with a remote ref", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"$ref":"https://example.com/s.json"}}}}""", 400, "response_format.json_schema.schema", "invalid_value" },
        { "strict tool with auto choice and a JSON format", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","strict":true,"parameters":{"type":"object","properties":{}}}}],"response_format":{"type":"json_object"}}""", 400, "response_format", "invalid_value" },
        { "forced tool and json output", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}],"tool_choice":"required","response_format":{"type":"json_object"}}""", 400, "response_format", "invalid_value" },
        { "logit_bias key not a token id", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"logit_bias":{"abc":5}}""", 400, "logit_bias", "invalid_value" },
        { "logit_bias value out of range", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"logit_bias":{"5":500}}""", 400, "logit_bias", "invalid_value" },
        { "logit_bias token outside the vocabulary", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"logit_bias":{"999999":5}}""", 400, "logit_bias", "invalid_value" },
        { "top_logprobs without logprobs", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"top_logprobs":3}""", 400, "top_logprobs", "invalid_value" },
        { "top_logprobs of 21", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}""", 400, "top_logprobs", "invalid_value" },
        { "legacy logprobs of 6", "/v1/completions", """{"model":"successor","prompt":"a","logprobs":6}""", 400, "logprobs", "invalid_value" },
        { "legacy echo", "/v1/completions", """{"model":"successor","prompt":"a","echo":true}""", 400, "echo", "unsupported_parameter" },
        { "legacy suffix", "/v1/completions", """{"model":"successor","prompt":"a","suffix":"z"}""", 400, "suffix", "unsupported_parameter" },
        { "five stops", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"stop":["a","b","c","d","e"]}""", 400, "stop", "limit_exceeded" },
        { "stop a number", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"stop":7}""", 400, "stop", "invalid_type" },
        { "stream_options without stream", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}""", 400, "stream_options", "invalid_value" },
        { "unknown model", "/v1/chat/completions", """{"model":"nope","messages":[{"role":"user","content":"hi"}]}""", 404, "model", "model_not_found" },
        { "broken model file", "/v1/chat/completions", """{"model":"truncated","messages":[{"role":"user","content":"hi"}]}""", 503, "model", "model_unavailable" },
        { "prompt longer than the context", "/v1/completions", "{\"model\":\"successor\",\"prompt\":\"" + new string('a', ServerFixture.ContextPerSlot + 100) + "\"}", 400, "prompt", "context_length_exceeded" },
        { "max_tokens beyond the context", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":2100}""", 400, "messages", "context_length_exceeded" },
        { "max_tokens above the cap", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}""", 400, "max_tokens", "limit_exceeded" },
        { "negative max_tokens", "/v1/completions", """{"model":"successor","prompt":"a","max_tokens":-1}""", 400, "max_tokens", "integer_below_min_value" },
        { "n of 0", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"n":0}""", 400, "n", "integer_below_min_value" },
        { "model null", "/v1/chat/completions", """{"model":null,"messages":[{"role":"user","content":"hi"}]}""", 400, "model", "missing_required_parameter" },
        { "model a number", "/v1/chat/completions", """{"model":7,"messages":[{"role":"user","content":"hi"}]}""", 400, "model", "invalid_type" },
        { "messages an object", "/v1/chat/completions", """{"model":"successor","messages":{"role":"user","content":"hi"}}""", 400, "messages", "invalid_type" },
        { "message a string", "/v1/chat/completions", """{"model":"successor","messages":["hi"]}""", 400, "messages[0]", "invalid_type" },
        { "role missing", "/v1/chat/completions", """{"model":"successor","messages":[{"content":"hi"}]}""", 400, "messages[0].role", "missing_required_parameter" },
        { "user content null", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":null}]}""", 400, "messages[0].content", "missing_required_parameter" },
        { "text part without text", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":[{"type":"text"}]}]}""", 400, "messages[0].content[0].text", "missing_required_parameter" },
        { "temperature out of float range", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"temperature":1e400}""", 400, "temperature", "invalid_value" },
        { "temperature a string", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", 400, "temperature", "invalid_type" },
        { "seed too large", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"seed":99999999999}""", 400, "seed", "invalid_value" },
        { "negative top_k", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"top_k":-3}""", 400, "top_k", "invalid_value" },
        { "stream_options wrong type", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":true}""", 400, "stream_options", "invalid_type" },
        { "stop sequence too long", "/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":\"" + new string('s', 300) + "\"}", 400, "stop", "limit_exceeded" },
        { "message too long", "/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('m', 70_000) + "\"}]}", 400, "messages[0].content", "limit_exceeded" },
        { "too many messages", "/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[" + string.Join(",", Enumerable.Repeat("{\"role\":\"user\",\"content\":\"hi\"}", 300)) + "]}", 400, "messages", "limit_exceeded" },
        { "deeply nested JSON", "/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":" + new string('[', 5000) + new string(']', 5000) + "}", 400, null, "invalid_json" },
        { "completion without prompt", "/v1/completions", """{"model":"successor"}""", 400, "prompt", "missing_required_parameter" },
        { "completion with token prompt", "/v1/completions", """{"model":"successor","prompt":[1,2,3]}""", 400, "prompt", "invalid_value" },
        { "unknown route", "/v1/engines", "{}", 404, null, "unknown_url" },
        { "n beyond int range", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"n":2147483647}""", 400, "n", "limit_exceeded" },
        { "negative top_logprobs", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":-1}""", 400, "top_logprobs", "invalid_value" },
        { "refused field given twice", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"audio":null,"audio":{"voice":"alloy"}}""", 400, "audio", "unsupported_parameter" },
        { "refused field of another type", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"prediction":7}""", 400, "prediction", "unsupported_parameter" },
        { "legacy best_of above n", "/v1/completions", """{"model":"successor","prompt":"a","best_of":3}""", 400, "best_of", "unsupported_parameter" },
        { "legacy max_tokens above the cap", "/v1/completions", """{"model":"successor","prompt":"a","max_tokens":5000}""", 400, "max_tokens", "limit_exceeded" },
        { "embedding input empty text", "/v1/embeddings", """{"model":"successor","input":["a",""]}""", 400, "input[1]", "invalid_value" },
        { "embedding input one empty text", "/v1/embeddings", """{"model":"successor","input":""}""", 400, "input", "invalid_value" },
        { "unknown model with empty messages", "/v1/chat/completions", """{"model":"nope","messages":[]}""", 400, "messages", "invalid_value" },
        { "unknown field beside a refused one", "/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}],"audio":{},"frob":1}""", 400, "frob", "unknown_parameter" },
        { "legacy echo of another type", "/v1/completions", """{"model":"successor","prompt":"a","echo":"no"}""", 400, "echo", "invalid_type" },
        { "legacy suffix of another type", "/v1/completions", """{"model":"successor","prompt":"a","suffix":7}""", 400, "suffix", "invalid_type" },
        { "embedding token outside the vocabulary", "/v1/embeddings", """{"model":"successor","input":[[1,2],[999999]]}""", 400, "input[1]", "invalid_value" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task IsAnsweredWithAnOpenAiError(string name, string path, string body, int status, string? param, string? code)
    {
        using var response = await Send(HttpMethod.Post, path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == (int)response.StatusCode, $"{name}: {(int)response.StatusCode} {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        server.AssertMatchesSchema("ErrorResponse", text);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()), name);
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());

        await AGoodRequestStillSucceeds();
    }

    [Fact]
    public async Task RefusedCompletionFieldsLeftEmptyAreAccepted()
    {
        using var response = await Send(HttpMethod.Post, "/v1/completions", """{"model":"successor","prompt":"a","max_tokens":2,"echo":false,"suffix":"","best_of":1}""");
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("/v1/completions", "{\"model\":\"successor\",\"prompt\":\"a\",\"max_tokens\":2,\"suffix\":\"bad ", "suffix")]
    [InlineData("/v1/responses", "{\"model\":\"successor\",\"input\":\"a\",\"max_output_tokens\":2,\"tool_choice\":\"bad ", "tool_choice")]
    [InlineData("/v1/responses", "{\"model\":\"successor\",\"input\":[{\"role\":\"user\",\"content\":\"hi\",\"type\":\"bad ", "input[0].type")]
    [InlineData("/v1/responses", "{\"model\":\"successor\",\"input\":[{\"content\":\"hi\",\"role\":\"bad ", "input[0].role")]
    [InlineData("/v1/chat/completions", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\",\"type\":\"bad ", "messages[0].content[0].type")]
    public async Task InvalidUtf8InAnyReadStringIsA400NamingIt(string path, string head, string param)
    {
        var tail = param switch
        {
            "input[0].type" or "input[0].role" => "\"}]}",
            "messages[0].content[0].type" => "\"}]}]}",
            _ => "\"}",
        };
        byte[] body = [.. Encoding.UTF8.GetBytes(head), 0xC3, 0x28, 0xFF, .. Encoding.UTF8.GetBytes(tail)];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await server.Http.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(400 == (int)response.StatusCode, text);
        Assert.Equal(param, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task InvalidUtf8IsA400()
    {
        byte[] body = [.. Encoding.UTF8.GetBytes("""{"model":"successor","messages":[{"role":"user","content":"bad """), 0xC3, 0x28, 0xFF, .. Encoding.UTF8.GetBytes("\"}]}")];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await server.Http.PostAsync("/v1/chat/completions", content);
        Assert.Equal(400, (int)response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", await response.Content.ReadAsStringAsync());
        await AGoodRequestStillSucceeds();
    }

    [Fact]
    public async Task ATenMegabyteBodyIs413NamingTheLimit()
    {
        var padding = new string('x', 10 * 1024 * 1024);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"" + padding + "\"}]}", Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
        };
        // As curl and browsers do for large bodies: the server can refuse before the body is sent.
        request.Headers.ExpectContinue = true;
        using var response = await server.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(413, (int)response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", text);
        Assert.Contains("EdgeServer:Limits:MaxRequestBody", text, StringComparison.Ordinal);
        await AGoodRequestStillSucceeds();
    }

    [Fact]
    public async Task ANonJsonContentTypeIs415()
    {
        using var response = await server.Http.PostAsync("/v1/chat/completions", new StringContent(Good, Encoding.UTF8, "text/plain"));
        Assert.Equal(415, (int)response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task AWrongMethodIs405InOpenAiShape()
    {
        using var response = await Send(HttpMethod.Get, "/v1/chat/completions", null);
        Assert.Equal(405, (int)response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", await response.Content.ReadAsStringAsync());
    }

    private async Task AGoodRequestStillSucceeds()
    {
        using var ok = await Send(HttpMethod.Post, "/v1/chat/completions", Good);
        var text = await ok.Content.ReadAsStringAsync();
        Assert.True(ok.IsSuccessStatusCode, text);
        Assert.Equal("abc", JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    private Task<HttpResponseMessage> Send(HttpMethod method, string path, string? body)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
        }

        return server.Http.SendAsync(request);
    }
}
