using System.Net;
using System.Text.Json;
using EdgeServer.Gateway;
using EdgeServer.Inference;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeServer.Tests.Gateway;

/// <summary>One URL for the household: requests go to the box that has their model, whole, streams token by token.</summary>
public sealed class GatewayTests(GatewayFixture boxes) : IClassFixture<GatewayFixture>
{
    private static string Chat(string model, int tokens = 3) => $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":{{tokens}}}""";

    private GatewayServer Gateway => boxes.Gateway;

    private static List<string> Paths(BoxServer box) => box.Seen.Where(s => s.Path != "/v1/models").Select(s => s.Path).ToList();

    private static void Forget(params BoxServer[] servers)
    {
        foreach (var server in servers)
        {
            server.Seen.Clear();
        }
    }

    [Fact]
    public async Task EachApiLandsOnTheBoxThatHasTheModel()
    {
        Forget(boxes.A, boxes.B, boxes.C);
        var (status, body) = await Gateway.SendAsync("/v1/chat/completions", Chat("alpha"));
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Equal("alpha", JsonDocument.Parse(body).RootElement.GetProperty("model").GetString());
        Assert.Equal(["/v1/chat/completions"], Paths(boxes.A));

        (status, body) = await Gateway.SendAsync("/api/chat", """{"model":"beta","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":3,"temperature":0}}""");
        Assert.True(status == HttpStatusCode.OK, body);
        (status, body) = await Gateway.SendAsync("/api/generate", """{"model":"beta","prompt":"1","stream":false,"options":{"num_predict":3}}""");
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Equal(["/api/chat", "/api/generate"], Paths(boxes.B));

        (status, body) = await Gateway.SendAsync("/v1/messages", """{"model":"gamma","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}""");
        Assert.True(status == HttpStatusCode.OK, body);
        (status, body) = await Gateway.SendAsync("/v1/completions", """{"model":"gamma","prompt":"1","max_tokens":3}""");
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Equal(["/v1/messages", "/v1/completions"], Paths(boxes.C));

        // The gateway's own model is served by the gateway: no box sees it.
        (status, body) = await Gateway.SendAsync("/v1/chat/completions", Chat("home"));
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Equal(["/v1/chat/completions"], Paths(boxes.A));
        Assert.Equal(2, Paths(boxes.B).Count);
        Assert.Equal(2, Paths(boxes.C).Count);
    }

    [Fact]
    public async Task BoxesGetTheirOwnKeyNeverTheClientsWithTheHopMarkerAndTraceContext()
    {
        Forget(boxes.A);
        const string traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
        var request = Gateway.Request(HttpMethod.Post, "/v1/chat/completions", Chat("alpha"));
        request.Headers.Add("x-api-key", GatewayServer.ClientKey);
        request.Headers.Add("traceparent", $"00-{traceId}-00f067aa0ba902b7-01");
        using var response = await Gateway.Http.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());

        var seen = Assert.Single(boxes.A.Seen, s => s.Path == "/v1/chat/completions");
        Assert.Equal($"Bearer {GatewayFixture.BoxKeyA}", seen.Authorization);
        Assert.Null(seen.ApiKey);
        Assert.Equal(Gateway.App.Services.GetRequiredService<GatewayIdentity>().Id, seen.Hop);
        Assert.Contains(traceId, seen.TraceParent, StringComparison.Ordinal);
        Assert.DoesNotContain(boxes.A.Seen, s => (s.Authorization ?? string.Empty).Contains(GatewayServer.ClientKey, StringComparison.Ordinal));

        // Without the gateway's key nothing is forwarded.
        Forget(boxes.A);
        using var anonymous = await Gateway.PostAsync("/v1/chat/completions", Chat("alpha"));
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Empty(Paths(boxes.A));
    }

    [Fact]
    public async Task ModelsIsTheUnionWithWhereEachModelLives()
    {
        var body = await Gateway.WaitForModelsAsync("alpha", "beta", "gamma", "shared", "home");
        var models = JsonDocument.Parse(body).RootElement.GetProperty("data").EnumerateArray()
            .ToDictionary(m => m.GetProperty("id").GetString()!, m => m.GetProperty("details").GetProperty("boxes").EnumerateArray().Select(b => b.GetString()!).ToArray());
        Assert.Equal(["a"], models["alpha"]);
        Assert.Equal(["a", "b"], models["shared"]);
        Assert.Equal(["c"], models["gamma"]);
        Assert.Equal(["local"], models["home"]);
        Assert.Equal(5, models.Count);
        Gateway.AssertMatchesSchema("ListModelsResponse", body);
    }

    [Fact]
    public async Task AStreamPassesThroughEventByEvent()
    {
        var (status, body) = await Gateway.SendAsync("/v1/chat/completions", Chat("gamma"));
        Assert.True(status == HttpStatusCode.OK, body);
        var scheduler = ((InferenceEngine)boxes.C.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler("gamma")!;
        using var gate = new ManualResetEventSlim();
        var steps = 0;
        // The box's decode loop stops after a few steps until the first event has come through the gateway.
        scheduler.LoopHook = () =>
        {
            if (Interlocked.Increment(ref steps) > 4)
            {
                gate.Wait();
            }
        };
        try
        {
            var request = Gateway.Request(HttpMethod.Post, "/v1/completions", """{"model":"gamma","prompt":"1","ignore_eos":true,"max_tokens":200,"temperature":0,"stream":true}""");
            using var response = await Gateway.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var first = await reader.ReadLineAsync();
            Assert.StartsWith("data: {", first, StringComparison.Ordinal);
            gate.Set();
            var rest = await reader.ReadToEndAsync();
            Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);
            Assert.DoesNotContain("\"error\"", rest, StringComparison.Ordinal);
            Assert.NotEmpty(InProcessServer.SseData(rest));
        }
        finally
        {
            scheduler.LoopHook = null;
            gate.Set();
        }
    }

    [Fact]
    public async Task AModelOnTwoBoxesGoesToTheOneWhereItIsLoaded()
    {
        var load = new HttpRequestMessage(HttpMethod.Post, "/v1/models/shared/load");
        load.Headers.Authorization = new("Bearer", "key-of-box-b");
        using (var loaded = await boxes.B.Http.SendAsync(load))
        {
            Assert.Equal(HttpStatusCode.OK, loaded.StatusCode);
        }

        var directory = Gateway.App.Services.GetRequiredService<BoxDirectory>();
        for (var i = 0; i < 100 && directory.Find("b")?.Models.FirstOrDefault(m => m.Id == "shared") is not { Loaded: true }; i++)
        {
            await Task.Delay(100);
        }

        Forget(boxes.A, boxes.B);
        for (var i = 0; i < 3; i++)
        {
            var (status, body) = await Gateway.SendAsync("/v1/chat/completions", Chat("shared"));
            Assert.True(status == HttpStatusCode.OK, body);
        }

        Assert.Empty(Paths(boxes.A));
        Assert.Equal(3, Paths(boxes.B).Count);
    }

    [Fact]
    public async Task AModelNobodyHasIsTheServersUsual404()
    {
        var (status, body) = await Gateway.SendAsync("/v1/chat/completions", Chat("nobody"));
        Assert.Equal(HttpStatusCode.NotFound, status);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Equal("The model 'nobody' does not exist.", error.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}]}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"model":5,"messages":[{"role":"user","content":"hi"}]}""", HttpStatusCode.BadRequest)]
    [InlineData("""{"model":["alpha"],"messages":[]}""", HttpStatusCode.BadRequest)]
    [InlineData("""[1,2]""", HttpStatusCode.BadRequest)]
    [InlineData("""{"model":"alpha","messages":[""", HttpStatusCode.BadRequest)]
    public async Task ABodyWithoutAStringModelIsAnsweredByTheGatewayAsAnyServerWould(string json, HttpStatusCode expected)
    {
        Forget(boxes.A, boxes.B, boxes.C);
        var (status, body) = await Gateway.SendAsync("/v1/chat/completions", json);
        Assert.Equal(expected, status);
        Assert.True(JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("message").GetString()!.Length > 0);
        Assert.Empty(Paths(boxes.A).Concat(Paths(boxes.B)).Concat(Paths(boxes.C)));
    }

    [Fact]
    public async Task AHugeBodyIsRefusedWithinTheBodyLimit()
    {
        Forget(boxes.A);
        var huge = $$"""{"model":"alpha","messages":[{"role":"user","content":"{{new string('x', 2 * 1024 * 1024)}}"}]}""";
        using var request = Gateway.Request(HttpMethod.Post, "/v1/chat/completions", huge);
        // As curl does for large bodies: the gateway refuses before the body is sent, so the client never writes
        // into a connection the server has already answered and closed (a broken pipe instead of the 413).
        request.Headers.ExpectContinue = true;
        using var response = await Gateway.Http.SendAsync(request);
        var (status, body) = (response.StatusCode, await response.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("request_too_large", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Empty(Paths(boxes.A));
    }

    [Fact]
    public async Task ABoxWithGarbageForModelsAndABoxThatIsTheGatewayAreLeftOut()
    {
        await Gateway.WaitForModelsAsync("alpha");
        // The first read of "self" may come before the gateway listens (connection refused); the next one finds the loop.
        List<string> problems = [];
        for (var i = 0; i < 100; i++)
        {
            problems = Gateway.Logs.Entries.Where(e => e.EventId == 9000).Select(e => e.Message).ToList();
            if (problems.Any(m => m.Contains("gateway itself", StringComparison.Ordinal)) && problems.Any(m => m.Contains("box junk", StringComparison.Ordinal)))
            {
                break;
            }

            await Task.Delay(100);
        }

        Assert.Contains(problems, m => m.Contains("box junk", StringComparison.Ordinal) && m.Contains("not a model list", StringComparison.Ordinal));
        Assert.Contains(problems, m => m.Contains("box self", StringComparison.Ordinal) && m.Contains("gateway itself", StringComparison.Ordinal));

        // A request that comes back to the gateway is refused, not forwarded again.
        var request = Gateway.Request(HttpMethod.Post, "/v1/chat/completions", Chat("alpha"));
        request.Headers.Add(GatewayIdentity.HopHeader, "another-gateway, " + Gateway.App.Services.GetRequiredService<GatewayIdentity>().Id);
        using var response = await Gateway.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.LoopDetected, response.StatusCode);
        Assert.Equal("gateway_loop", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task ForwardsAreCountedByBox()
    {
        var (status, body) = await Gateway.SendAsync("/v1/chat/completions", Chat("alpha"));
        Assert.True(status == HttpStatusCode.OK, body);
        using var metrics = await Gateway.Http.SendAsync(Gateway.Request(HttpMethod.Get, "/metrics"));
        var text = await metrics.Content.ReadAsStringAsync();
        Assert.Contains("edgeserver_gateway_requests_total{", text, StringComparison.Ordinal);
        Assert.Contains(text.Split('\n'), l => l.StartsWith("edgeserver_gateway_requests_total{", StringComparison.Ordinal) && l.Contains("box=\"a\"", StringComparison.Ordinal) && l.Contains("status=\"200\"", StringComparison.Ordinal));
    }

    [Fact]
    public async Task OllamaClientsSeeEveryBoxsModelsAndReachThemByTheirTaggedNames()
    {
        using (var tags = await Gateway.Http.SendAsync(Gateway.Request(HttpMethod.Get, "/api/tags")))
        {
            var body = await tags.Content.ReadAsStringAsync();
            Assert.True(tags.StatusCode == HttpStatusCode.OK, body);
            var names = JsonDocument.Parse(body).RootElement.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToList();
            // Each once, though "shared" is on two boxes.
            Assert.Equal(["alpha:latest", "beta:latest", "gamma:latest", "home:latest", "shared:latest"], names.Order(StringComparer.Ordinal));
            var gamma = JsonDocument.Parse(body).RootElement.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("name").GetString() == "gamma:latest");
            Assert.True(gamma.GetProperty("size").GetInt64() > 0);
            Assert.Equal("llama", gamma.GetProperty("details").GetProperty("family").GetString());
        }

        // Ollama's clients name models as /api/tags shows them, with the tag.
        Forget(boxes.B, boxes.C);
        var (status, reply) = await Gateway.SendAsync("/api/chat", """{"model":"beta:latest","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":3}}""");
        Assert.True(status == HttpStatusCode.OK, reply);
        Assert.Equal(["/api/chat"], Paths(boxes.B));
        (status, reply) = await Gateway.SendAsync("/api/show", """{"model":"gamma:latest"}""");
        Assert.True(status == HttpStatusCode.OK, reply);
        Assert.Equal(["/api/show"], Paths(boxes.C));

        // /api/ps shows what the boxes have loaded too, once their next model list says so.
        var running = new List<string?>();
        for (var i = 0; i < 100 && !running.Contains("beta:latest"); i++)
        {
            await Task.Delay(100);
            using var ps = await Gateway.Http.SendAsync(Gateway.Request(HttpMethod.Get, "/api/ps"));
            running = JsonDocument.Parse(await ps.Content.ReadAsStringAsync()).RootElement.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToList();
        }

        Assert.Contains("beta:latest", running);
        Assert.Equal(running.Count, running.Distinct().Count());
    }

    [Fact]
    public async Task OneBoxModelIsFoundByItsId()
    {
        using var response = await Gateway.Http.SendAsync(Gateway.Request(HttpMethod.Get, "/v1/models/gamma"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        var model = JsonDocument.Parse(body).RootElement;
        Assert.Equal("gamma", model.GetProperty("id").GetString());
        Assert.Equal(["c"], model.GetProperty("details").GetProperty("boxes").EnumerateArray().Select(b => b.GetString()));

        using var missing = await Gateway.Http.SendAsync(Gateway.Request(HttpMethod.Get, "/v1/models/nobody-has-it"));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }
}
