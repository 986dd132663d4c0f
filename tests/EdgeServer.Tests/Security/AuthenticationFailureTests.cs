using System.Net;
using System.Net.Http.Headers;
using EdgeServer.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Tests.Security;

/// <summary>
/// Only a wrong key is an authentication failure in the log and in /metrics: a server without keys checks none,
/// and a request without a key (a health probe) is no failure.
/// </summary>
public class AuthenticationFailureTests
{
    private const string Key = "sk-edge-metrics-key";

    [Fact]
    public async Task WithoutKeysNoRequestIsLoggedOrCountedAsAnAuthenticationFailure()
    {
        await using var server = await Server.StartAsync();
        // OpenAI's SDKs always send a key, whatever the server asks for.
        using (var withKey = await server.SendAsync("/v1/models", "sk-anything"))
        {
            Assert.Equal(HttpStatusCode.OK, withKey.StatusCode);
        }

        using (var without = await server.SendAsync("/v1/models", key: null))
        {
            Assert.Equal(HttpStatusCode.OK, without.StatusCode);
        }

        Assert.DoesNotContain(server.Logs.Entries, e => e.Message.Contains("was not authenticated", StringComparison.Ordinal));
        Assert.Empty(await server.FailuresAsync(key: null));
    }

    [Fact]
    public async Task WithKeysAWrongKeyIsAFailureAndAMissingOneIsNot()
    {
        await using var server = await Server.StartAsync($"--EdgeServer:Security:ApiKeys:0={Key}");
        using (var probe = await server.SendAsync("/health", key: null))
        {
            Assert.Equal(HttpStatusCode.OK, probe.StatusCode);
        }

        using (var missing = await server.SendAsync("/v1/models", key: null))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
            Assert.Contains("missing_api_key", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.DoesNotContain(server.Logs.Entries, e => e.Message.Contains("was not authenticated", StringComparison.Ordinal) && e.Level >= LogLevel.Information);
        Assert.Empty(await server.FailuresAsync(Key));

        using (var wrong = await server.SendAsync("/v1/models", "sk-edge-wrong"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        }

        Assert.Contains(server.Logs.Entries, e => e.Message.Contains("was not authenticated", StringComparison.Ordinal) && e.Level >= LogLevel.Information);
        Assert.NotEmpty(await server.FailuresAsync(Key));
    }

    private sealed class Server : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private Server(WebApplication app, CapturingLoggerProvider logs)
        {
            _app = app;
            Logs = logs;
            Http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };
        }

        public CapturingLoggerProvider Logs { get; }

        public HttpClient Http { get; }

        public static async Task<Server> StartAsync(params string[] args)
        {
            var logs = new CapturingLoggerProvider();
            var builder = EdgeServerHosting.CreateBuilder(
            [
                "--urls", "http://127.0.0.1:0", "--models-dir", "/nonexistent",
                "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:Microsoft.AspNetCore.Authentication=Debug",
                "--Logging:LogLevel:EdgeServer.Security=Debug",
                .. args,
            ]);
            builder.Logging.AddProvider(logs);
            var app = builder.Build();
            app.MapEdgeServer();
            await app.StartAsync();
            return new Server(app, logs);
        }

        public Task<HttpResponseMessage> SendAsync(string path, string? key)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, path);
            if (key is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            }

            return Http.SendAsync(request);
        }

        /// <summary>The lines of /metrics that count failed authentications with a non-zero count.</summary>
        public async Task<List<string>> FailuresAsync(string? key)
        {
            using var response = await SendAsync("/metrics", key);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            Assert.Contains("http_server_request_duration_seconds", text, StringComparison.Ordinal);
            return text.Split('\n')
                .Where(l => l.StartsWith("aspnetcore_authentication_authenticate_duration_seconds_count", StringComparison.Ordinal)
                    && l.Contains("result=\"failure\"", StringComparison.Ordinal))
                .ToList();
        }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
