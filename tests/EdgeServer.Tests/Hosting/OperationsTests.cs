using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using EdgeServer.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.Hosting;

/// <summary>What an operator sees: metrics, the request log, API docs and health.</summary>
[Collection(ServerGroup.Name)]
public partial class OperationsTests(ServerFixture server)
{
    private const string Chat = """{"model":"successor","messages":[{"role":"user","content":"go"}],"temperature":0,"max_tokens":4}""";

    [Fact]
    public async Task MetricsCountersMoveAfterACompletion()
    {
        var before = await Scrape();
        using var response = await server.Http.PostAsync("/v1/chat/completions", new StringContent(Chat, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // The request is counted as its response completes, which the client may see first: scrape until it shows.
        var requests = """edgeserver_requests_total{otel_scope_name="EdgeServer",endpoint="/v1/chat/completions",model="successor",status="200"}""";
        var after = await Scrape();
        for (var i = 0; i < 50 && Value(after, requests) == Value(before, requests); i++)
        {
            await Task.Delay(100);
            after = await Scrape();
        }

        Assert.Equal(Value(before, requests) + 1, Value(after, requests));
        var generated = """edgeserver_tokens_generated_total{otel_scope_name="EdgeServer.Inference",model="successor"}""";
        Assert.Equal(Value(before, generated) + 4, Value(after, generated));
        Assert.True(Value(after, """edgeserver_time_to_first_token_seconds_count{otel_scope_name="EdgeServer.Inference",model="successor"}""")
            > Value(before, """edgeserver_time_to_first_token_seconds_count{otel_scope_name="EdgeServer.Inference",model="successor"}"""));
        Assert.Equal(2, Value(after, """edgeserver_slots_total{otel_scope_name="EdgeServer.Inference",model="successor"}"""));
        Assert.Contains("edgeserver_queue_depth{", after, StringComparison.Ordinal);
        Assert.Contains("edgeserver_kv_cache_cells_used{", after, StringComparison.Ordinal);
        Assert.Contains("edgeserver_model_size_bytes{", after, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EachGenerationWritesOneStructuredRequestLine()
    {
        // Other tests of this server make the same kind of request; only lines written from here on count.
        var earlier = server.Logs.Entries.Count;
        using var response = await server.Http.PostAsync("/v1/chat/completions", new StringContent(Chat.Replace("\"go\"", "\"log me\"", StringComparison.Ordinal), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var line = Assert.Single(server.Logs.Entries.Skip(earlier), e => e.EventId == 7000 && e.Message.Contains("completion_tokens=4", StringComparison.Ordinal) && e.Message.Contains("prompt_tokens=", StringComparison.Ordinal)
            && e.Message.StartsWith("POST /v1/chat/completions 200 model=successor", StringComparison.Ordinal) && e.Message.Contains("finish=length", StringComparison.Ordinal)
            && e.Message.Contains("ttft_ms=", StringComparison.Ordinal) && e.Message.Contains("tokens_per_s=", StringComparison.Ordinal));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Information, line.Level);
    }

    [Fact]
    public async Task WithoutAnEnergySensorUsageHasNoEnergyAndTheRequestLineSaysUnavailable()
    {
        var earlier = server.Logs.Entries.Count;
        var body = await server.PostOkAsync("/v1/chat/completions", Chat.Replace("\"go\"", "\"no meter\"", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(body);
        Assert.False(json.RootElement.GetProperty("usage").TryGetProperty("energy_joules", out _), body);
        Assert.Contains(server.Logs.Entries.Skip(earlier), e => e.EventId == 7000 && e.Message.Contains("energy_j=unavailable j_per_token=unavailable", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheRequestLineOfAToolCallSaysToolCalls()
    {
        const string call = """
            {"model":"successor","messages":[{"role":"user","content":"log my call"}],"temperature":0,"parallel_tool_calls":false,
             "tools":[{"type":"function","function":{"name":"log_me","parameters":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}}}],"tool_choice":"required"}
            """;
        var body = await server.PostOkAsync("/v1/chat/completions", call);
        Assert.Contains("\"finish_reason\":\"tool_calls\"", body, StringComparison.Ordinal);
        // Other tests of this server call tools too, so this line need not be the only one.
        Assert.Contains(server.Logs.Entries, e => e.EventId == 7000 && e.Message.StartsWith("POST /v1/chat/completions 200 model=successor", StringComparison.Ordinal)
            && e.Message.Contains("finish=tool_calls", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SwaggerDescribesTheApiWithItsRealTypes()
    {
        var json = await server.Http.GetStringAsync("/swagger/v1/swagger.json");
        var doc = JsonDocument.Parse(json).RootElement;
        var paths = doc.GetProperty("paths");
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/models", "/v1/models/{id}", "/v1/models/pull", "/tokenize", "/detokenize", "/health" })
        {
            Assert.True(paths.TryGetProperty(path, out _), path);
        }

        var body = paths.GetProperty("/v1/chat/completions").GetProperty("post").GetProperty("requestBody").GetProperty("content").GetProperty("application/json");
        Assert.Equal("#/components/schemas/ChatCompletionRequest", body.GetProperty("schema").GetProperty("$ref").GetString());
        Assert.Equal("user", body.GetProperty("example").GetProperty("messages")[1].GetProperty("role").GetString());
        var properties = doc.GetProperty("components").GetProperty("schemas").GetProperty("ChatCompletionRequest").GetProperty("properties");
        Assert.True(properties.TryGetProperty("max_completion_tokens", out _));
        Assert.True(properties.TryGetProperty("messages", out _));
        Assert.True(doc.GetProperty("components").GetProperty("schemas").TryGetProperty("ChatCompletionResponse", out _));

        using var ui = await server.Http.GetAsync("/swagger/index.html");
        Assert.Equal(HttpStatusCode.OK, ui.StatusCode);
    }

    [Fact]
    public async Task ReadyWhenAModelDecodes()
    {
        using var response = await server.Http.GetAsync("/health/ready");
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ready", JsonDocument.Parse(text).RootElement.GetProperty("status").GetString());
        Assert.Contains("successor", text, StringComparison.Ordinal);

        // A success is remembered for 30 s: a second probe right after decodes nothing.
        var engine = (EdgeServer.Inference.InferenceEngine)server.App.Services.GetRequiredService<EdgeServer.Inference.IInferenceEngine>();
        var evaluated = engine.PromptTokensEvaluated(ServerFixture.Model);
        using var again = await server.Http.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(evaluated, engine.PromptTokensEvaluated(ServerFixture.Model));
    }

    private async Task<string> Scrape() => await server.Http.GetStringAsync("/metrics");

    private static double Value(string exposition, string series)
    {
        foreach (var line in exposition.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(series.Length + 1)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}

public class LifecycleTests
{
    [Fact]
    public async Task DisposingTheAppDisposesTheEngine()
    {
        var app = EdgeServerHosting.CreateBuilder(["--urls", "http://127.0.0.1:0", "--models-dir", "/nonexistent", "--Logging:LogLevel:Default=None"]).Build();
        var engine = app.Services.GetRequiredService<EdgeServer.Inference.IInferenceEngine>();
        await app.DisposeAsync();

        // Never started nor stopped, so only disposal makes it refuse new work.
        var request = new EdgeServer.Inference.GenerationRequest { Model = "any", Prompt = "x" };
        await Assert.ThrowsAsync<EdgeServer.Inference.ShuttingDownException>(() => engine.StartAsync(request, CancellationToken.None));
    }

    [Fact]
    public async Task NotReadyWithoutAServableModel()
    {
        var builder = EdgeServerHosting.CreateBuilder(["--urls", "http://127.0.0.1:0", "--models-dir", "/nonexistent", "--Logging:LogLevel:Default=None"]);
        await using var app = builder.Build();
        app.MapEdgeServer();
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        using var ready = await http.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Equal("not_ready", JsonDocument.Parse(await ready.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
        using var alive = await http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
        await app.StopAsync();
    }

    [Fact]
    public async Task ShutdownLetsShortStreamsFinishAndEndsLongOnesWithAnErrorEvent()
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--model", TestSupport.SuccessorModel.SharedPath,
            "--ctx-size", "4096",
            "--slots", "2",
            "--threads", "1",
            "--EdgeServer:ShutdownGraceSeconds=2",
            "--Logging:LogLevel:Default=None",
        ]);
        // The grace period's timer fires when the test says so.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        builder.Services.AddSingleton<TimeProvider>(clock);
        var app = builder.Build();
        app.MapEdgeServer();
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };

        // Both decode in the same batches, so the 600-token stream always ends long before the 4000-token one.
        var long_ = Stream(http, """{"model":"successor","prompt":"1","ignore_eos":true,"max_tokens":4000,"temperature":0,"stream":true}""");
        var medium = Stream(http, """{"model":"successor","prompt":"2","ignore_eos":true,"max_tokens":600,"temperature":0,"stream":true}""");
        await Task.WhenAll(long_.FirstEvent, medium.FirstEvent);
        var stopping = app.StopAsync();

        // Within the grace period a running stream finishes normally...
        var mediumBody = await medium.Body.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.EndsWith("data: [DONE]\n\n", mediumBody, StringComparison.Ordinal);

        // ...and once it is over, one still running ends with an error event rather than a dropped connection.
        clock.Advance(TimeSpan.FromSeconds(2));
        var longBody = await long_.Body.WaitAsync(TimeSpan.FromSeconds(60));
        var last = longBody.TrimEnd('\n').Split("\n\n")[^1];
        Assert.StartsWith("data: {\"error\":", last, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"shutting_down\"", last, StringComparison.Ordinal);
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        await app.DisposeAsync();
    }

    [Fact]
    public async Task DuringTheDrainNewRequestsGet503ShuttingDownWhileARunningStreamFinishes()
    {
        var logs = new CapturingLoggerProvider();
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--model", TestSupport.SuccessorModel.SharedPath,
            "--ctx-size", "4096",
            "--threads", "1",
            // The host's own shutdown timeout (grace + 5 s, on the real clock) must outlast the stream on a loaded box.
            "--EdgeServer:ShutdownGraceSeconds=120",
            "--Logging:LogLevel:Default=None",
            "--Logging:LogLevel:EdgeServer.Hosting=Information",
        ]);
        builder.Logging.AddProvider(logs);
        // The grace period never runs out on its own (a fake clock): the stream must finish by itself.
        builder.Services.AddSingleton<TimeProvider>(new FakeTimeProvider(DateTimeOffset.UtcNow));
        var app = builder.Build();
        app.MapEdgeServer();
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };

        // Megabytes of events (20 alternatives per token) that the test does not read yet: the stream cannot end
        // before the test has seen the refusal.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent("""{"model":"successor","messages":[{"role":"user","content":"go"}],"ignore_eos":true,"max_tokens":4000,"temperature":0,"logprobs":true,"top_logprobs":20,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line && !line.StartsWith("data: ", StringComparison.Ordinal))
        {
        }

        var stopping = app.StopAsync();
        for (var i = 0; i < 100 && !logs.Entries.Any(e => e.EventId == 5100); i++)
        {
            await Task.Delay(50);
        }

        // A new connection is still accepted and told why it is refused.
        using var refused = await http.PostAsync("/v1/chat/completions", new StringContent("""{"model":"successor","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""", Encoding.UTF8, "application/json"));
        var error = await refused.Content.ReadAsStringAsync();
        Assert.True(refused.StatusCode == HttpStatusCode.ServiceUnavailable, error);
        Assert.Equal("shutting_down", JsonDocument.Parse(error).RootElement.GetProperty("error").GetProperty("code").GetString());

        var rest = await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(120));
        Assert.EndsWith("data: [DONE]\n\n", rest.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.DoesNotContain("shutting_down", rest, StringComparison.Ordinal);
        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        await app.DisposeAsync();
    }

    private static (Task FirstEvent, Task<string> Body) Stream(HttpClient http, string body)
    {
        var first = new TaskCompletionSource();
        async Task<string> Read()
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var text = new StringBuilder();
            while (await reader.ReadLineAsync() is { } line)
            {
                text.Append(line).Append('\n');
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    first.TrySetResult();
                }
            }

            first.TrySetResult();
            return text.ToString();
        }

        return (first.Task, Read());
    }
}
