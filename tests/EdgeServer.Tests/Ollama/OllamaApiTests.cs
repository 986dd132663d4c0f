using System.Net;
using System.Text;
using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Ollama;

/// <summary>
/// /api with raw HTTP: hostile and wrong input answered in Ollama's error shape (<c>{"error": "..."}</c>) with its
/// status codes and its field names, NDJSON framing, whole replies, and a client that leaves mid-stream.
/// </summary>
public class OllamaApiTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private const string Model = ServerFixture.Model;

    [Theory]
    [InlineData("/api/chat", "{\"model\":")]
    [InlineData("/api/chat", "[1,2]")]
    [InlineData("/api/generate", "not json")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":\"hi\"}")]
    [InlineData("/api/chat", "{\"model\":5,\"messages\":[]}")]
    [InlineData("/api/generate", "{\"model\":\"successor\",\"prompt\":\"hi\",\"stream\":\"yes\"}")]
    [InlineData("/api/show", "{\"model\":[]}")]
    [InlineData("/api/embed", "{\"model\":\"successor\",\"input\":\"\\ud800\"}")]
    [InlineData("/api/embed", "{\"model\":\"successor\",\"input\":[\"\\ud800\"]}")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"format\":\"\\ud800\"}")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"options\":{\"stop\":\"\\ud800\"}}")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"keep_alive\":\"\\ud800\"}")]
    // The old keep_alive pattern backtracked exponentially on a run of digits: this one took hours.
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"keep_alive\":\"1111111111111111111111111111111111111111x\"}")]
    [InlineData("/api/generate", "{\"model\":\"successor\",\"prompt\":\"hi\",\"keep_alive\":\"11111111111111111111111111111111111111111111111111111111111111111m\"}")]
    public async Task MalformedBodiesAreA400InOllamaShape(string path, string body)
    {
        var error = await ErrorAsync(path, body, HttpStatusCode.BadRequest);
        Assert.NotEmpty(error);
    }

    [Theory]
    [InlineData("/api/embed", "input", "'input'")]
    [InlineData("/api/embed", "input", "'input[0]'", true)]
    [InlineData("/api/embeddings", "prompt", "'prompt'")]
    public async Task AnEmbeddingTextTooLongIsNamedAsTheRequestNamedIt(string path, string field, string named, bool list = false)
    {
        var text = JsonSerializer.Serialize(string.Concat(Enumerable.Repeat("jklm ", 4000)));
        var message = await ErrorAsync(path, $"{{\"model\":\"{Model}\",\"{field}\":{(list ? $"[{text}]" : text)}}}", HttpStatusCode.BadRequest);
        Assert.StartsWith(named + " has ", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"temperature\":\"hot\"}", "option \"temperature\" must be of type number")]
    [InlineData("{\"num_predict\":\"ten\"}", "option \"num_predict\" must be of type integer")]
    [InlineData("{\"stop\":[1]}", "option \"stop\" must be an array of strings")]
    [InlineData("{\"use_mmap\":1}", "option \"use_mmap\" must be of type boolean")]
    [InlineData("{\"num_ctx\":0}", "option \"num_ctx\" must be a positive integer")]
    [InlineData("{\"typical_p\":0.5}", "option \"typical_p\" is not supported")]
    [InlineData("{\"mirostat\":2}", "option \"mirostat\" is not supported")]
    [InlineData("[]", "options must be an object")]
    public async Task WrongOptionsAreRefusedInOllamasWords(string options, string expected)
    {
        var error = await ErrorAsync("/api/chat", Chat(options: options), HttpStatusCode.BadRequest);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"temperature\":5}", "options.temperature")]
    [InlineData("{\"top_p\":0}", "options.top_p")]
    [InlineData("{\"top_k\":-1}", "options.top_k")]
    [InlineData("{\"min_p\":2}", "options.min_p")]
    [InlineData("{\"repeat_penalty\":0}", "options.repeat_penalty")]
    [InlineData("{\"presence_penalty\":9}", "options.presence_penalty")]
    [InlineData("{\"num_predict\":0}", "options.num_predict")]
    public async Task OutOfRangeOptionsNameTheOption(string options, string name)
    {
        var error = await ErrorAsync("/api/chat", Chat(options: options), HttpStatusCode.BadRequest);
        Assert.Contains($"'{name}'", error, StringComparison.Ordinal);
        var generate = await ErrorAsync("/api/generate", $"{{\"model\":\"{Model}\",\"prompt\":\"hi\",\"options\":{options}}}", HttpStatusCode.BadRequest);
        Assert.Contains($"'{name}'", generate, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HarmlessOptionsAreIgnoredAndNumCtxIsCapped()
    {
        var reply = await WholeAsync("/api/chat", Chat(options: "{\"temperature\":0,\"num_predict\":3,\"num_gpu\":99,\"main_gpu\":0,\"num_thread\":64,\"num_batch\":8,\"use_mmap\":false,\"num_ctx\":1000000,\"typical_p\":1,\"no_such_option\":true}", stream: false));
        Assert.Equal("abc", reply.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("length", reply.GetProperty("done_reason").GetString());
    }

    [Fact]
    public async Task ToolFieldsOfOllamasOwnOrUnknownAreIgnoredAsOllamaIgnoresThem()
    {
        // Ollama's Tool has "items" beside "function"; like Ollama, other unknown fields are ignored too.
        var tools = "[{\"type\":\"function\",\"items\":{\"type\":\"string\"},\"extra\":1,\"function\":{\"name\":\"get_time\",\"description\":\"now\",\"parameters\":{\"type\":\"object\",\"properties\":{}},\"extra\":true}}]";
        var reply = await WholeAsync("/api/chat", $"{{\"model\":\"{Model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"tools\":{tools},\"stream\":false,\"options\":{{\"temperature\":0,\"num_predict\":3}}}}");
        Assert.True(reply.GetProperty("done").GetBoolean());
    }

    [Theory]
    [InlineData("/api/chat", "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "nope")]
    [InlineData("/api/generate", "{\"model\":\"nope:latest\",\"prompt\":\"hi\"}", "nope:latest")]
    [InlineData("/api/show", "{\"model\":\"nope\"}", "nope")]
    [InlineData("/api/embed", "{\"model\":\"nope\",\"input\":\"hi\"}", "nope")]
    [InlineData("/api/embeddings", "{\"model\":\"nope\",\"prompt\":\"hi\"}", "nope")]
    public async Task AnUnknownModelIsA404(string path, string body, string name)
    {
        Assert.Equal($"model '{name}' not found", await ErrorAsync(path, body, HttpStatusCode.NotFound));
    }

    [Fact]
    public async Task ModelNamesTakeOllamasLatestTag()
    {
        var tagged = await WholeAsync("/api/generate", $"{{\"model\":\"{Model}:latest\",\"prompt\":\"j\",\"raw\":true,\"stream\":false,\"options\":{{\"temperature\":0}}}}");
        Assert.Equal(SuccessorModel.ExpectedAfter('j'), tagged.GetProperty("response").GetString());
        Assert.Equal(Model + ":latest", tagged.GetProperty("model").GetString());
        await ErrorAsync("/api/generate", $"{{\"model\":\"{Model}:7b\",\"prompt\":\"j\"}}", HttpStatusCode.NotFound);
    }

    [Theory]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"what is this?\",\"images\":[\"iVBORw0KGgo=\"]}]}", "messages[0].images")]
    [InlineData("/api/generate", "{\"model\":\"successor\",\"prompt\":\"what is this?\",\"images\":[\"iVBORw0KGgo=\"]}", "does not accept images")]
    [InlineData("/api/generate", "{\"model\":\"successor\",\"prompt\":\"def f(\",\"suffix\":\"return x\"}", "does not support insert")]
    [InlineData("/api/generate", "{\"model\":\"successor\",\"prompt\":\"hi\",\"template\":\"{{ .Prompt }}\"}", "template is not supported")]
    [InlineData("/api/generate", "{\"model\":\"successor\",\"prompt\":\"hi\",\"context\":[1,2,3]}", "context is not supported")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"think\":true}", "does not support thinking")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"format\":\"yaml\"}", "invalid format")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"keep_alive\":\"soon\"}", "keep_alive")]
    [InlineData("/api/chat", "{\"model\":\"successor\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "messages[0].role")]
    public async Task UnsupportedInputIsRefusedClearly(string path, string body, string expected)
    {
        var error = await ErrorAsync(path, body, HttpStatusCode.BadRequest);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PullIsNotImplementedAndUnknownRoutesAre404InOllamaShape()
    {
        var pull = await ErrorAsync("/api/pull", "{\"model\":\"llama3.2\"}", HttpStatusCode.NotImplemented);
        Assert.Contains("models folder", pull, StringComparison.Ordinal);
        await ErrorAsync("/api/nothing-here", "{}", HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task StreamsAreNdJsonEndingWithStatistics()
    {
        using var response = await server.PostAsync("/api/chat", Chat());
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        Assert.EndsWith("\n", body, StringComparison.Ordinal);
        var lines = body.TrimEnd('\n').Split('\n');
        var objects = lines.Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.All(objects, o => Assert.Equal(JsonValueKind.Object, o.ValueKind));
        Assert.All(objects[..^1], o => Assert.False(o.GetProperty("done").GetBoolean()));
        Assert.Equal(SuccessorModel.ChatReply, string.Concat(objects.Select(o => o.GetProperty("message").GetProperty("content").GetString())));

        var last = objects[^1];
        Assert.True(last.GetProperty("done").GetBoolean());
        Assert.Equal("stop", last.GetProperty("done_reason").GetString());
        Assert.Equal(Model, last.GetProperty("model").GetString());
        Assert.True(DateTimeOffset.TryParse(last.GetProperty("created_at").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
        Assert.True(last.GetProperty("prompt_eval_count").GetInt32() > 0);
        // A chunk holds one token or, for a character of several byte tokens (é, €), all of them.
        Assert.InRange(last.GetProperty("eval_count").GetInt32(), objects.Count - 1, SuccessorModel.ChatReply.Length + 10);
        var total = last.GetProperty("total_duration").GetInt64();
        foreach (var name in new[] { "load_duration", "prompt_eval_duration", "eval_duration" })
        {
            var duration = last.GetProperty(name).GetInt64();
            Assert.InRange(duration, 0, total);
        }

        // Nanoseconds: a generation that took any time at all is well over a thousand of them.
        Assert.True(last.GetProperty("eval_duration").GetInt64() > 1000);
    }

    [Fact]
    public async Task StreamFalseIsOneObject()
    {
        var reply = await WholeAsync("/api/generate", $"{{\"model\":\"{Model}\",\"prompt\":\"hi\",\"stream\":false,\"options\":{{\"temperature\":0}}}}");
        Assert.Equal(SuccessorModel.ChatReply, reply.GetProperty("response").GetString());
        Assert.True(reply.GetProperty("done").GetBoolean());
        Assert.Equal("stop", reply.GetProperty("done_reason").GetString());
        Assert.True(reply.GetProperty("eval_count").GetInt32() > 0);
    }

    [Fact]
    public async Task ACurlFormEncodedBodyIsReadAsJson()
    {
        // curl -d sends application/x-www-form-urlencoded; Ollama's own examples rely on it.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/generate")
        {
            Content = new StringContent($"{{\"model\":\"{Model}\",\"prompt\":\"x\",\"raw\":true,\"stream\":false,\"options\":{{\"temperature\":0}}}}", Encoding.UTF8, "application/x-www-form-urlencoded"),
        };
        using var response = await server.Http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        Assert.Equal(SuccessorModel.ExpectedAfter('x'), JsonDocument.Parse(body).RootElement.GetProperty("response").GetString());
    }

    [Fact]
    public async Task ABrowsersFormPostIsRefusedSoNoWebPageCanDriveTheBox()
    {
        // A form or text/plain body goes cross-origin without a CORS preflight; with an Origin it must be JSON.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/generate")
        {
            Content = new StringContent($"{{\"model\":\"{Model}\",\"prompt\":\"x\",\"stream\":false}}", Encoding.UTF8, "text/plain"),
        };
        request.Headers.Add("Origin", "http://evil.example");
        using var response = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }

    [Fact]
    public async Task KeepAliveAppliesAfterItsOwnRequestOnlyAndToALoadOnlyRequest()
    {
        async Task<JsonElement?> Loaded()
        {
            var ps = JsonDocument.Parse(await server.Http.GetStringAsync("/api/ps")).RootElement;
            return ps.GetProperty("models").EnumerateArray().Where(m => m.GetProperty("model").GetString()!.StartsWith(Model + ":", StringComparison.Ordinal)).Select(m => (JsonElement?)m.Clone()).FirstOrDefault();
        }

        // The preload of Ollama's docs: an empty prompt with a keep_alive of its own.
        await WholeAsync("/api/generate", $"{{\"model\":\"{Model}\",\"keep_alive\":\"2h\"}}");
        var expires = DateTimeOffset.Parse((await Loaded())!.Value.GetProperty("expires_at").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(expires > DateTimeOffset.UtcNow.AddHours(1), $"expires at {expires}");

        // keep_alive 0 unloads after its request; the next request without one keeps the model loaded again.
        await WholeAsync("/api/chat", Chat(stream: false).Replace("\"stream\":false", "\"stream\":false,\"keep_alive\":0", StringComparison.Ordinal));
        for (var i = 0; i < 100 && await Loaded() is not null; i++)
        {
            await Task.Delay(50);
        }

        Assert.Null(await Loaded());
        await WholeAsync("/api/chat", Chat(stream: false));
        Assert.NotNull(await Loaded());
    }

    [Fact]
    public async Task AnUnloadRequestForABusyModelAnswersAtOnceAndTheModelGoesWhenItsRequestEnds()
    {
        await WholeAsync("/api/generate", $"{{\"model\":\"{Model}\",\"keep_alive\":\"5m\"}}");
        var engine = (InferenceEngine)server.App.Services.GetService(typeof(IInferenceEngine))!;
        var scheduler = engine.GetLoadedScheduler(Model)!;
        using var gate = new ManualResetEventSlim();
        scheduler.LoopHook = () => gate.Wait();
        try
        {
            var busy = WholeAsync("/api/generate", $"{{\"model\":\"{Model}\",\"prompt\":\"hi\",\"stream\":false,\"options\":{{\"temperature\":0,\"num_predict\":8}}}}");
            for (var i = 0; i < 200 && scheduler.InFlight == 0; i++)
            {
                await Task.Delay(25);
            }

            Assert.NotEqual(0, scheduler.InFlight);

            // The decode loop is held, so a reply that waited for the busy request would never come.
            var unload = await WholeAsync("/api/generate", $"{{\"model\":\"{Model}\",\"keep_alive\":0}}").WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal("unload", unload.GetProperty("done_reason").GetString());
            Assert.Same(scheduler, engine.GetLoadedScheduler(Model));

            gate.Set();
            Assert.True((await busy).GetProperty("done").GetBoolean());
            for (var i = 0; i < 200 && engine.GetLoadedScheduler(Model) is not null; i++)
            {
                await Task.Delay(25);
            }

            Assert.Null(engine.GetLoadedScheduler(Model));
        }
        finally
        {
            scheduler.LoopHook = null;
            gate.Set();
        }
    }

    [Fact]
    public async Task AClientLeavingMidStreamCancelsItsGeneration()
    {
        // A grammar makes the successor model write a string of at least 500 characters, and once the first line is
        // read the model's decode loop is held: a fast box cannot finish the reply before the client leaves.
        var endless = $"{{\"model\":\"{Model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"format\":{{\"type\":\"string\",\"minLength\":500}},\"options\":{{\"temperature\":0}}}}";
        var engine = (InferenceEngine)server.App.Services.GetService(typeof(IInferenceEngine))!;
        Inference.Scheduling.ModelScheduler? scheduler = null;
        using var gate = new ManualResetEventSlim();
        try
        {
            using (var request = new HttpRequestMessage(HttpMethod.Post, "/api/chat") { Content = new StringContent(endless, Encoding.UTF8, "application/json") })
            using (var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                var first = JsonDocument.Parse((await reader.ReadLineAsync())!).RootElement;
                scheduler = engine.GetLoadedScheduler(Model)!;
                scheduler.LoopHook = () => gate.Wait();
                Assert.False(first.GetProperty("done").GetBoolean());
            }

            // The runner saw the cancellation: the request line records the client leaving (499), not a finished reply.
            for (var i = 0; i < 200 && !server.Logs.Entries.Any(Left); i++)
            {
                await Task.Delay(50);
            }

            Assert.Contains(server.Logs.Entries, Left);
        }
        finally
        {
            scheduler?.LoopHook = null;
            gate.Set();
        }

        // Its slot was given back: both of the model's slots serve again.
        var replies = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => WholeAsync("/api/chat", Chat(stream: false, options: "{\"temperature\":0,\"num_predict\":2}"))));
        Assert.All(replies, r => Assert.Equal("ab", r.GetProperty("message").GetProperty("content").GetString()));

        static bool Left(CapturingLoggerProvider.Entry e) => e.Message.Contains("POST /api/chat 499", StringComparison.Ordinal);
    }

    [Fact]
    public async Task VersionTagsAndShowDescribeTheModels()
    {
        using var version = JsonDocument.Parse(await server.Http.GetStringAsync("/api/version"));
        Assert.Matches(@"^\d+\.\d+\.\d+$", version.RootElement.GetProperty("version").GetString());

        using var tags = JsonDocument.Parse(await server.Http.GetStringAsync("/api/tags"));
        var names = tags.RootElement.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToList();
        Assert.Contains(Model + ":latest", names);
        Assert.DoesNotContain("truncated:latest", names); // unavailable files are not offered

        var show = await WholeAsync("/api/show", $"{{\"model\":\"{ServerFixture.HermesModel}\"}}");
        Assert.Contains("<tool_call>", show.GetProperty("template").GetString(), StringComparison.Ordinal);
        Assert.Equal(2, show.GetProperty("model_info").GetProperty("llama.block_count").GetInt32());
        Assert.Contains("temperature", show.GetProperty("parameters").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain(server.ModelsDirectory, show.GetRawText(), StringComparison.Ordinal);
    }

    private static string Chat(string? options = null, bool stream = true) =>
        $"{{\"model\":\"{Model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"stream\":{(stream ? "true" : "false")},\"options\":{options ?? "{\"temperature\":0}"}}}";

    private async Task<JsonElement> WholeAsync(string path, string body)
    {
        var text = await server.PostOkAsync(path, body);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Posts, expects <paramref name="status"/> and Ollama's error shape (one string property, "error"), and returns the message.</summary>
    private async Task<string> ErrorAsync(string path, string body, HttpStatusCode status)
    {
        using var response = await server.PostAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{(int)response.StatusCode}: {text}");
        var root = JsonDocument.Parse(text).RootElement;
        var property = Assert.Single(root.EnumerateObject());
        Assert.Equal("error", property.Name);
        return property.Value.GetString()!;
    }
}
