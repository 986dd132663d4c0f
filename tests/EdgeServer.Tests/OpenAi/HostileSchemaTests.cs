using System.Net;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.OpenAi;

/// <summary>A server of its own: these tests stop a model's decode loop on purpose.</summary>
public sealed class IsolatedServerFixture : ServerFixture;

/// <summary>One request must never stop or freeze a model for everyone else (hostile schemas over HTTP).</summary>
public class HostileSchemaTests(IsolatedServerFixture server) : IClassFixture<IsolatedServerFixture>
{
    private static string Chat(string schema) =>
        $$"""{"model":"{{ServerFixture.Model}}","messages":[{"role":"user","content":"json please"}],"max_tokens":24,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":""" +
        schema + "}}}";

    private const string Normal = $$"""{"model":"{{ServerFixture.Model}}","prompt":"Hello j","max_tokens":8,"temperature":0}""";

    private async Task AssertServesNormally()
    {
        var body = await server.PostOkAsync("/v1/completions", Normal);
        Assert.Contains("klmnopqr", body, StringComparison.Ordinal);
        using var health = await server.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Theory]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/a"}}}""")]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"string"}]}}}""")]
    public async Task AGrammarLlamaCppRefusesIsA400NamingTheFieldAndTheModelServesOn(string schema)
    {
        using var response = await server.PostAsync("/v1/chat/completions", Chat(schema));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var error = JsonDocument.Parse(body);
        Assert.Equal("response_format.json_schema.schema", error.RootElement.GetProperty("error").GetProperty("param").GetString());
        await AssertServesNormally();
    }

    [Fact]
    public async Task TheGrammarBombIsServedMergedWhileOthersAreServedToo()
    {
        var bomb = HostileSchemas.Nested(4, 20, tagged: false);
        var attack = server.PostAsync("/v1/chat/completions", Chat(bomb));
        await AssertServesNormally();
        using var response = await attack;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        using var refused = await server.PostAsync("/v1/chat/completions", Chat(HostileSchemas.Nested(4, 20, tagged: true)));
        var body = await refused.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("more than the limit of 16", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HealthSaysSoWhenADecodeLoopStopsAndRecoversWhenTheModelIsReloaded()
    {
        await AssertServesNormally();
        var engine = (InferenceEngine)server.App.Services.GetService(typeof(IInferenceEngine))!;
        var scheduler = engine.GetLoadedScheduler(ServerFixture.Model)!;
        var socketPath = Path.Combine(Path.GetTempPath(), $"edgeserver-notify-{Guid.NewGuid():N}.sock");
        using var notify = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Unspecified);
        notify.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socketPath));
        var watchdog = new SystemdWatchdog(engine, Microsoft.Extensions.Logging.Abstractions.NullLogger<SystemdWatchdog>.Instance);
        Assert.True(watchdog.Beat(socketPath));
        var buffer = new byte[64];
        Assert.Equal("WATCHDOG=1", System.Text.Encoding.ASCII.GetString(buffer, 0, notify.Receive(buffer)));

        var reload = new TaskCompletionSource();
        engine.BeforeReload = () => reload.Task;
        try
        {
            scheduler.LoopHook = () => throw new InvalidOperationException("injected loop failure");
            using var failed = await server.PostAsync("/v1/completions", Normal);
            Assert.NotEqual(HttpStatusCode.OK, failed.StatusCode);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (engine.CheckHealth().Healthy && DateTime.UtcNow < deadline)
            {
                await Task.Delay(10);
            }

            using var health = await server.Http.GetAsync("/health");
            var body = await health.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);

            // systemd's watchdog hears nothing while it is so, and restarts the service.
            Assert.False(watchdog.Beat(socketPath));
            Assert.Equal(0, notify.Available);
            Assert.Contains("\"status\":\"unhealthy\"", body, StringComparison.Ordinal);
            Assert.Contains("decode loop of model 'successor' stopped", body, StringComparison.Ordinal);
        }
        finally
        {
            reload.SetResult();
        }

        var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!engine.CheckHealth().Healthy && DateTime.UtcNow < until)
        {
            await Task.Delay(10);
        }

        await AssertServesNormally();
        Assert.NotSame(scheduler, engine.GetLoadedScheduler(ServerFixture.Model));
        Assert.True(watchdog.Beat(socketPath));
        File.Delete(socketPath);
    }
}
