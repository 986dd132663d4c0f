using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Security;
using EdgeServer.TestSupport;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Options;
using OpenAI;
using OpenAI.Chat;

namespace EdgeServer.Tests.Security;

/// <summary>The server with API keys (one in settings, one in a key file) and one allowed browser origin.</summary>
public sealed class SecuredServerFixture : ServerFixture
{
    public const string Key = "sk-edge-first-key";
    public const string FileKey = "sk-edge-key-from-file";
    public const string Origin = "http://assistant.local:8123";

    protected override IEnumerable<string> ExtraArguments(string scratch)
    {
        var keyFile = Path.Combine(scratch, "keys.txt");
        File.WriteAllText(keyFile, $"# keys for the tests\n\n{FileKey}\n");
        return
        [
            $"--EdgeServer:Security:ApiKeys:0={Key}",
            $"--EdgeServer:Security:ApiKeyFile={keyFile}",
            $"--EdgeServer:Security:CorsOrigins:0={Origin}",
        ];
    }
}

public class SecurityTests(SecuredServerFixture server) : IClassFixture<SecuredServerFixture>
{
    private const string Body = """{"model":"successor","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":3}""";

    [Fact]
    public async Task WithoutAKeyV1AnswersUnauthorizedInOpenAiShape()
    {
        using var response = await Send(HttpMethod.Post, "/v1/chat/completions", key: null);
        await AssertUnauthorized(response, "missing_api_key");
        using var models = await Send(HttpMethod.Get, "/v1/models", key: null);
        await AssertUnauthorized(models, "missing_api_key");
        foreach (var path in new[] { "/v1/embeddings", "/v1/responses", "/v1/models/pull", "/tokenize", "/detokenize" })
        {
            using var other = await Send(HttpMethod.Post, path, key: null);
            await AssertUnauthorized(other, "missing_api_key");
        }
    }

    [Fact]
    public async Task OllamaRoutesTakeTheSameKeysAndAnswerInOllamasShape()
    {
        foreach (var (method, path) in new[] { (HttpMethod.Get, "/api/tags"), (HttpMethod.Get, "/api/ps"), (HttpMethod.Post, "/api/chat"), (HttpMethod.Post, "/api/generate") })
        {
            using var refused = await Send(method, path, key: null);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(JsonValueKind.String, Assert.Single(error.EnumerateObject()).Value.ValueKind);
        }

        using var served = await Send(HttpMethod.Get, "/api/tags", SecuredServerFixture.Key);
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        Assert.Contains("\"successor:latest\"", await served.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnthropicRoutesTakeTheKeyAsXApiKeyAndAnswerInAnthropicsShape()
    {
        foreach (var (path, key) in new[] { ("/v1/messages", (string?)null), ("/v1/messages", "sk-edge-wrong-key"), ("/v1/messages/count_tokens", "sk-edge-first-ke") })
        {
            using var refused = await SendWithXApiKey(path, key);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("error", error.GetProperty("type").GetString());
            Assert.Equal("authentication_error", error.GetProperty("error").GetProperty("type").GetString());
        }

        using var served = await SendWithXApiKey("/v1/messages", SecuredServerFixture.Key);
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        Assert.Equal("message", JsonDocument.Parse(await served.Content.ReadAsStringAsync()).RootElement.GetProperty("type").GetString());
        using var counted = await SendWithXApiKey("/v1/messages/count_tokens", SecuredServerFixture.FileKey);
        Assert.Equal(HttpStatusCode.OK, counted.StatusCode);
        using var chat = await SendWithXApiKey("/v1/chat/completions", SecuredServerFixture.Key);
        Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
    }

    /// <summary>A stored response belongs to the key that made it: another key gets the 404 of an unknown id.</summary>
    [Fact]
    public async Task AStoredResponseIsOnlyReadByItsKey()
    {
        var create = new HttpRequestMessage(HttpMethod.Post, "/v1/responses") { Content = Json("""{"model":"successor","input":"go","max_output_tokens":2}""") };
        create.Headers.Authorization = new AuthenticationHeaderValue("Bearer", SecuredServerFixture.Key);
        using var created = await server.Http.SendAsync(create);
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var id = JsonDocument.Parse(await created.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();

        using var other = await Send(HttpMethod.Get, $"/v1/responses/{id}", SecuredServerFixture.FileKey);
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
        var follow = new HttpRequestMessage(HttpMethod.Post, "/v1/responses") { Content = Json($$"""{"model":"successor","previous_response_id":"{{id}}","input":"x","max_output_tokens":1}""") };
        follow.Headers.Authorization = new AuthenticationHeaderValue("Bearer", SecuredServerFixture.FileKey);
        using var followed = await server.Http.SendAsync(follow);
        Assert.Equal(HttpStatusCode.NotFound, followed.StatusCode);
        using var deleted = await Send(HttpMethod.Delete, $"/v1/responses/{id}", SecuredServerFixture.FileKey);
        Assert.Equal(HttpStatusCode.NotFound, deleted.StatusCode);

        using var own = await Send(HttpMethod.Get, $"/v1/responses/{id}", SecuredServerFixture.Key);
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
    }

    private Task<HttpResponseMessage> SendWithXApiKey(string path, string? key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(Body) };
        request.Headers.Add("anthropic-version", "2023-06-01");
        if (key is not null)
        {
            request.Headers.Add("x-api-key", key);
        }

        return server.Http.SendAsync(request);
    }

    [Theory]
    [InlineData("Bearer sk-edge-wrong-key")]
    [InlineData("Bearer sk-edge-first-ke")]
    [InlineData("Bearer sk-edge-first-key-and-more")]
    [InlineData("Basic c2stZWRnZTp4")]
    [InlineData("sk-edge-first-key")]
    public async Task AWrongKeyIsRefused(string authorization)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(Body) };
        request.Headers.TryAddWithoutValidation("Authorization", authorization);
        using var response = await server.Http.SendAsync(request);
        await AssertUnauthorized(response, "invalid_api_key");
    }

    [Theory]
    [InlineData(SecuredServerFixture.Key)]
    [InlineData(SecuredServerFixture.FileKey)]
    public async Task TheOpenAiSdkWithAConfiguredKeyIsServed(string key)
    {
        var chat = new ChatClient(ServerFixture.Model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });
        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("go")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 3 });
        Assert.Equal("abc", completion.Content.Single().Text);
    }

    [Fact]
    public async Task TheSdkSurfacesAWrongKeyAs401()
    {
        var chat = new ChatClient(ServerFixture.Model, new ApiKeyCredential("sk-nope"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });
        var e = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("go")]));
        Assert.Equal(401, e.Status);
    }

    [Fact]
    public async Task HealthNeedsNoKey()
    {
        using var response = await server.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var ready = await server.Http.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
    }

    [Theory]
    [InlineData("/metrics")]
    [InlineData("/swagger/v1/swagger.json")]
    [InlineData("/swagger/index.html")]
    public async Task MetricsAndApiDocsNeedTheKey(string path)
    {
        using var without = await Send(HttpMethod.Get, path, key: null);
        await AssertUnauthorized(without, "missing_api_key");
        using var wrong = await Send(HttpMethod.Get, path, key: "sk-nope");
        await AssertUnauthorized(wrong, "invalid_api_key");
        using var with = await Send(HttpMethod.Get, path, key: SecuredServerFixture.Key);
        Assert.True(with.StatusCode == HttpStatusCode.OK, $"{path}: {(int)with.StatusCode}");
    }

    [Fact]
    public async Task AnUnknownPathNeedsTheKeyToo()
    {
        using var response = await Send(HttpMethod.Get, "/admin", key: null);
        await AssertUnauthorized(response, "missing_api_key");
    }

    [Fact]
    public async Task AnAllowedOriginPassesThePreflightAndOthersDoNot()
    {
        using var allowed = await Preflight(SecuredServerFixture.Origin);
        Assert.True(allowed.Headers.TryGetValues("Access-Control-Allow-Origin", out var values), allowed.ToString());
        Assert.Equal(SecuredServerFixture.Origin, values.Single());

        using var other = await Preflight("http://evil.example");
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
    }

    private Task<HttpResponseMessage> Preflight(string origin)
    {
        var request = new HttpRequestMessage(HttpMethod.Options, "/v1/chat/completions");
        request.Headers.Add("Origin", origin);
        request.Headers.Add("Access-Control-Request-Method", "POST");
        request.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        return server.Http.SendAsync(request);
    }

    private async Task AssertUnauthorized(HttpResponseMessage response, string code)
    {
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        var text = await response.Content.ReadAsStringAsync();
        server.AssertMatchesSchema("ErrorResponse", text);
        Assert.Equal(code, JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    private Task<HttpResponseMessage> Send(HttpMethod method, string path, string? key)
    {
        var request = new HttpRequestMessage(method, path);
        if (method == HttpMethod.Post)
        {
            request.Content = Json(Body);
        }

        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return server.Http.SendAsync(request);
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
}

public class StartupTests
{
    [Theory]
    [InlineData("http://127.0.0.1:8080", true)]
    [InlineData("http://localhost:8080", true)]
    [InlineData("http://[::1]:8080", true)]
    [InlineData("http://0.0.0.0:8080", false)]
    [InlineData("http://+:8080", false)]
    [InlineData("http://*:8080", false)]
    [InlineData("http://192.168.1.20:8080", false)]
    public void LoopbackAddressesAreToldApartFromNetworkOnes(string address, bool loopback) =>
        Assert.Equal(loopback, NetworkExposureCheck.IsLoopback(address));

    [Theory]
    [InlineData("1048576", 1048576)]
    [InlineData("512kb", 524288)]
    [InlineData("1mb", 1048576)]
    [InlineData(" 2 G ", 2147483648)]
    [InlineData("10b", 10)]
    public void SizesAreReadInHumanUnits(string text, long bytes) => Assert.Equal(bytes, ByteSize.Parse(text));

    [Fact]
    public async Task WithoutKeysTheDefaultAddressIsLoopbackAndWithKeysItIsTheNetwork()
    {
        Assert.Equal(["http://127.0.0.1:8080"], await DefaultUrls());
        Assert.Equal(["http://0.0.0.0:8080"], await DefaultUrls("--EdgeServer:Security:ApiKeys:0=k"));
        var keyFile = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(keyFile, "# a comment\nk\n");
            Assert.Equal(["http://0.0.0.0:8080"], await DefaultUrls("--EdgeServer:Security:ApiKeyFile=" + keyFile));
        }
        finally
        {
            File.Delete(keyFile);
        }

        // A configured address is left to the web host, which reads it after this.
        Assert.Empty(await DefaultUrls("--urls", "http://10.0.0.2:9000", "--EdgeServer:Security:ApiKeys:0=k"));
    }

    [Fact]
    public async Task InvalidSettingsStopStartUpWithEveryProblemNamed()
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--model", "/nonexistent/model.gguf",
            "--slots", "0",
            "--EdgeServer:Limits:MaxRequestBody=lots",
            "--EdgeServer:Security:ApiKeyFile=/nonexistent/keys.txt",
            "--EdgeServer:Security:CorsOrigins:0=not an origin",
            "--Logging:LogLevel:Default=None",
        ]);
        var e = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
        {
            await using var app = builder.Build();
            app.MapEdgeServer();
            await app.StartAsync();
        });
        var message = string.Join("\n", e.Failures);
        Assert.Contains("EdgeServer:Model", message, StringComparison.Ordinal);
        Assert.Contains("Slots", message, StringComparison.Ordinal);
        Assert.Contains("EdgeServer:Limits:MaxRequestBody", message, StringComparison.Ordinal);
        Assert.Contains("EdgeServer:Security:ApiKeyFile", message, StringComparison.Ordinal);
        Assert.Contains("EdgeServer:Security:CorsOrigins", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SettingsCanOpenMetricsAndApiDocsWhileTheApiKeepsItsKey()
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--models-dir", "/nonexistent",
            "--EdgeServer:Security:ApiKeys:0=k",
            "--EdgeServer:Security:MetricsWithoutKey=true",
            "--EdgeServer:Security:ApiDocsWithoutKey=true",
            "--Logging:LogLevel:Default=None",
        ]);
        await using var app = builder.Build();
        app.MapEdgeServer();
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        foreach (var path in new[] { "/metrics", "/swagger/v1/swagger.json", "/swagger/index.html" })
        {
            using var open = await http.GetAsync(path);
            Assert.True(open.StatusCode == HttpStatusCode.OK, $"{path}: {(int)open.StatusCode}");
        }

        using var models = await http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
        await app.StopAsync();
    }

    [Fact]
    public async Task ListeningOnTheNetworkWithoutKeysLogsALoudWarning()
    {
        var logs = new CapturingLoggerProvider();
        // Not announced: tests multicast nothing on the machine's networks.
        var builder = EdgeServerHosting.CreateBuilder(["--urls", "http://0.0.0.0:0", "--models-dir", "/nonexistent", "--Logging:LogLevel:Default=Warning", "--EdgeServer:Discovery:Announce=false"]);
        builder.Logging.AddProvider(logs);
        await using var app = builder.Build();
        app.MapEdgeServer();
        await app.StartAsync();
        await app.StopAsync();
        var warning = Assert.Single(logs.Entries, e => e.EventId == 6000);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, warning.Level);
        Assert.Contains("NO API KEY", warning.Message, StringComparison.Ordinal);
    }

    /// <summary>The server's addresses once the hosted services' StartingAsync ran (the web host reads urls after that).</summary>
    private static async Task<string[]> DefaultUrls(params string[] args)
    {
        await using var app = EdgeServerHosting.CreateBuilder([.. args, "--Logging:LogLevel:Default=None"]).Build();
        var check = app.Services.GetServices<IHostedService>().OfType<NetworkExposureCheck>().Single();
        await check.StartingAsync(CancellationToken.None);
        return [.. app.Urls];
    }
}
