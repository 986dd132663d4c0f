using System.Net;
using System.Text.Json;

namespace EdgeServer.Tests.Gateway;

/// <summary>A box that goes away is left out; one that comes back on its address is used again.</summary>
public sealed class GatewayFailoverTests : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), "failover-" + Guid.NewGuid().ToString("N")[..8]);
    private BoxServer _a = null!;
    private BoxServer _b = null!;
    private string _bModels = null!;
    private GatewayServer _gateway = null!;

    private static string Chat(string model) => $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":2}""";

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        _a = new BoxServer(BoxServer.FreePort(), BoxServer.Models(_root, "alpha", "shared"), "ka");
        _bModels = BoxServer.Models(_root, "beta", "shared");
        _b = new BoxServer(BoxServer.FreePort(), _bModels, "kb");
        await Task.WhenAll(_a.InitializeAsync(), _b.InitializeAsync());
        _gateway = new GatewayServer(BoxServer.FreePort(), BoxServer.Models(_root), [("a", _a.BaseAddress.ToString(), "ka"), ("b", _b.BaseAddress.ToString(), "kb")]);
        await _gateway.InitializeAsync();
        await _gateway.WaitForModelsAsync("alpha", "beta", "shared");
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await Task.WhenAll(_a.DisposeAsync(), _b.DisposeAsync());
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // Left for the temp folder's own cleanup.
        }
    }

    [Fact]
    public async Task AStoppedBoxIsLeftOutAndTakenBackWhenItReturns()
    {
        var (status, body) = await _gateway.SendAsync("/v1/chat/completions", Chat("beta"));
        Assert.True(status == HttpStatusCode.OK, body + string.Join("\n", _gateway.Logs.Entries.Select(e => e.Message)));

        await _b.DisposeAsync();
        // Once the gateway knows (its next read or health probe), the model only b has is a clear 503.
        (status, body) = await UntilAsync("beta", s => s != HttpStatusCode.OK && s != HttpStatusCode.BadGateway);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("boxes_unavailable", error.GetProperty("code").GetString());
        Assert.Contains("'beta' is on b", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        // The model a also has keeps working, every time.
        _a.Seen.Clear();
        for (var i = 0; i < 4; i++)
        {
            (status, body) = await _gateway.SendAsync("/v1/chat/completions", Chat("shared"));
            Assert.True(status == HttpStatusCode.OK, body);
        }

        Assert.Equal(4, _a.Seen.Count(s => s.Path == "/v1/chat/completions"));

        // A new instance on the same address is found again.
        _b = new BoxServer(_b.Port, _bModels, "kb");
        await _b.InitializeAsync();
        (status, body) = await UntilAsync("beta", s => s == HttpStatusCode.OK);
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Contains(_b.Seen, s => s.Path == "/v1/chat/completions");
    }

    /// <summary>Asks for the model (a bounded number of times) until the status is one <paramref name="done"/> accepts.</summary>
    private async Task<(HttpStatusCode Status, string Body)> UntilAsync(string model, Func<HttpStatusCode, bool> done)
    {
        (HttpStatusCode Status, string Body) last = default;
        for (var i = 0; i < 150; i++)
        {
            last = await _gateway.SendAsync("/v1/chat/completions", Chat(model));
            if (done(last.Status))
            {
                return last;
            }

            await Task.Delay(100);
        }

        return last;
    }
}
