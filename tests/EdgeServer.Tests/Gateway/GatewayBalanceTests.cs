using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;

namespace EdgeServer.Tests.Gateway;

/// <summary>
/// How the gateway spreads requests for a model two boxes hold: a box's queue as its last /v1/models said is seconds
/// old, so requests the gateway has sent since must count too. Two stand-in boxes list the model loaded and hold each
/// request until the test lets them go, so the requests are all in flight at once.
/// </summary>
public sealed class GatewayBalanceTests : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), "balance-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private HeldBox _busy = null!;
    private HeldBox _idle = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        // The busy box had one request when the gateway last read its list; the idle box none.
        _busy = await HeldBox.StartAsync(reportedRequests: 1, _release.Task);
        _idle = await HeldBox.StartAsync(reportedRequests: 0, _release.Task);
        _gateway = new GatewayServer(BoxServer.FreePort(), BoxServer.Models(_root, "home"),
        [
            ("busy", _busy.Url, null),
            ("idle", _idle.Url, null),
        ]);
        await _gateway.InitializeAsync();
        await _gateway.WaitForModelsAsync("stand-in");
    }

    public async Task DisposeAsync()
    {
        _release.TrySetResult();
        await _gateway.DisposeAsync();
        await _busy.DisposeAsync();
        await _idle.DisposeAsync();
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
    public async Task RequestsInFlightFromTheGatewayCountBesideTheBoxesLastReportedQueue()
    {
        const int requests = 4;
        var sent = new List<Task<(HttpStatusCode Status, string Body)>>();
        try
        {
            // One at a time: each is held at its box before the next is sent, so every choice sees those before it.
            for (var i = 0; i < requests; i++)
            {
                sent.Add(_gateway.SendAsync("/v1/chat/completions", $$"""{"model":"stand-in","messages":[{"role":"user","content":"hi {{i}}"}]}"""));
                for (var wait = 0; wait < 600 && _busy.Held + _idle.Held < i + 1; wait++)
                {
                    await Task.Delay(50);
                }
            }

            Assert.Equal(requests, _busy.Held + _idle.Held);
            // Sending all four to the box that looked idle seconds ago would queue them behind each other there
            // while the other box sits with one.
            Assert.InRange(_idle.Held, 2, 3);
            Assert.InRange(_busy.Held, 1, 2);
        }
        finally
        {
            _release.TrySetResult();
        }

        foreach (var (status, _) in await Task.WhenAll(sent))
        {
            Assert.Equal(HttpStatusCode.OK, status);
        }
    }

    /// <summary>A stand-in box: lists one loaded model with a fixed queue, and answers a request only once released.</summary>
    private sealed class HeldBox : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _held;

        private HeldBox(WebApplication app) => _app = app;

        public int Held => Volatile.Read(ref _held);

        public string Url => _app.Urls.Single();

        public static async Task<HeldBox> StartAsync(int reportedRequests, Task release)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            var box = new HeldBox(app);
            app.MapGet("/v1/models", () => Results.Text(
                $$$"""{"object":"list","data":[{"id":"stand-in","object":"model","details":{"status":"loaded","requests":{{{reportedRequests}}}}}]}""",
                "application/json"));
            app.MapGet("/health", () => "ok");
            app.MapPost("/v1/chat/completions", async () =>
            {
                Interlocked.Increment(ref box._held);
                await release;
                return Results.Text("""{"id":"x","object":"chat.completion","choices":[]}""", "application/json");
            });
            await app.StartAsync();
            return box;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
