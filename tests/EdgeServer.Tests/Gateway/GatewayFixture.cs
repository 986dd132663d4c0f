using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using EdgeServer.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeServer.Tests.Gateway;

/// <summary>What a box saw of one request: its path and the headers a gateway sets or must not pass on.</summary>
public sealed record SeenRequest(string Path, string? Authorization, string? ApiKey, string? Hop, string? TraceParent);

/// <summary>A real EdgeServer on a port chosen beforehand (so it can be restarted on it), serving generated models under given ids, recording the requests it gets.</summary>
public sealed class BoxServer(int port, string modelsDirectory, string key) : InProcessServer
{
    public ConcurrentQueue<SeenRequest> Seen { get; } = new();

    public int Port => port;

    /// <summary>What a box and the gateway both start with: a fixed port, their models, a small context, no extras.</summary>
    internal static string[] Arguments(int port, string modelsDirectory) =>
    [
        "--urls", $"http://127.0.0.1:{port}",
        "--models-dir", modelsDirectory,
        "--threads", "2",
        "--ctx-size", "512",
        "--Logging:LogLevel:Default=Warning",
        "--EdgeServer:Thermal:Enabled=false",
        "--EdgeServer:WebUi:Enabled=false",
    ];

    public override Task InitializeAsync() => StartAsync(
    [
        .. Arguments(port, modelsDirectory),
        $"--EdgeServer:Security:ApiKeys:0={key}",
    ], services => services.AddSingleton<IStartupFilter>(new Recorder(Seen)));

    /// <summary>A folder of copies of the successor model, one per id.</summary>
    public static string Models(string root, params string[] ids)
    {
        var folder = Path.Combine(root, string.Join('-', ids) + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(folder);
        foreach (var id in ids)
        {
            File.Copy(SuccessorModel.SharedPath, Path.Combine(folder, id + ".gguf"));
        }

        return folder;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private sealed class Recorder(ConcurrentQueue<SeenRequest> seen) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (HttpContext context, RequestDelegate rest) =>
            {
                var headers = context.Request.Headers;
                if (context.Request.Path != "/health")
                {
                    seen.Enqueue(new SeenRequest(context.Request.Path, headers.Authorization, headers["x-api-key"], headers[EdgeServer.Gateway.GatewayIdentity.HopHeader], headers["traceparent"]));
                }

                await rest(context);
            });
            next(app);
        };
    }
}

/// <summary>A gateway with a model of its own, in front of boxes given as (name, url, key).</summary>
public sealed class GatewayServer(int port, string modelsDirectory, IReadOnlyList<(string Name, string Url, string? Key)> boxes) : InProcessServer
{
    public const string ClientKey = "client-key-of-the-household";

    public override Task InitializeAsync() => StartAsync(
    [
        .. BoxServer.Arguments(port, modelsDirectory),
        $"--EdgeServer:Security:ApiKeys:0={ClientKey}",
        "--EdgeServer:Gateway:Enabled=true",
        "--EdgeServer:Gateway:RefreshSeconds=1",
        "--EdgeServer:Gateway:HealthCheckSeconds=1",
        "--EdgeServer:Gateway:ReactivationSeconds=1",
        .. boxes.SelectMany((b, i) => new[]
        {
            $"--EdgeServer:Gateway:Boxes:{i}:Name={b.Name}",
            $"--EdgeServer:Gateway:Boxes:{i}:Url={b.Url}",
            b.Key is null ? $"--EdgeServer:Gateway:Boxes:{i}:ApiKey=" : $"--EdgeServer:Gateway:Boxes:{i}:ApiKey={b.Key}",
        }),
    ]);

    public HttpRequestMessage Request(HttpMethod method, string path, string? json = null)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new("Bearer", ClientKey);
        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }

        return request;
    }

    public async Task<(HttpStatusCode Status, string Body)> SendAsync(string path, string json)
    {
        using var response = await Http.SendAsync(Request(HttpMethod.Post, path, json));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Waits (a bounded number of reads) until /v1/models lists every given model.</summary>
    public async Task<string> WaitForModelsAsync(params string[] ids)
    {
        var body = string.Empty;
        for (var i = 0; i < 200; i++)
        {
            using var response = await Http.SendAsync(Request(HttpMethod.Get, "/v1/models"));
            body = await response.Content.ReadAsStringAsync();
            using var document = System.Text.Json.JsonDocument.Parse(body);
            var listed = document.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).ToHashSet();
            if (ids.All(listed.Contains))
            {
                return body;
            }

            await Task.Delay(100);
        }

        throw new Xunit.Sdk.XunitException($"The gateway never listed {string.Join(", ", ids)}: {body}");
    }
}

/// <summary>Three boxes (a: alpha and shared; b: beta and shared; c: gamma), a box that answers garbage, and the gateway (its own model: home).</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    public const string BoxKeyA = "key-of-box-a";
    private readonly string _root = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), "gateway-" + Guid.NewGuid().ToString("N")[..8]);
    private WebApplication? _junk;

    public BoxServer A { get; private set; } = null!;

    public BoxServer B { get; private set; } = null!;

    public BoxServer C { get; private set; } = null!;

    public GatewayServer Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        A = new BoxServer(BoxServer.FreePort(), BoxServer.Models(_root, "alpha", "shared"), BoxKeyA);
        B = new BoxServer(BoxServer.FreePort(), BoxServer.Models(_root, "beta", "shared"), "key-of-box-b");
        C = new BoxServer(BoxServer.FreePort(), BoxServer.Models(_root, "gamma"), "key-of-box-c");
        await Task.WhenAll(A.InitializeAsync(), B.InitializeAsync(), C.InitializeAsync());

        // A "box" whose /v1/models is not a model list.
        var junk = WebApplication.CreateSlimBuilder();
        junk.WebHost.UseUrls("http://127.0.0.1:0");
        _junk = junk.Build();
        _junk.MapGet("/v1/models", () => Results.Text("{\"data\":[{\"id\":5}], garbage", "application/json"));
        _junk.MapGet("/health", () => "ok");
        await _junk.StartAsync();

        var port = BoxServer.FreePort();
        Gateway = new GatewayServer(port, BoxServer.Models(_root, "home"),
        [
            ("a", A.BaseAddress.ToString(), BoxKeyA),
            ("b", B.BaseAddress.ToString(), "key-of-box-b"),
            ("c", C.BaseAddress.ToString(), "key-of-box-c"),
            ("junk", _junk.Urls.Single(), null),
            // The gateway's own address, as a box: a loop.
            ("self", $"http://127.0.0.1:{port}", null),
        ]);
        await Gateway.InitializeAsync();
        await Gateway.WaitForModelsAsync("alpha", "beta", "gamma", "shared", "home");
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Task.WhenAll(A.DisposeAsync(), B.DisposeAsync(), C.DisposeAsync());
        if (_junk is not null)
        {
            await _junk.DisposeAsync();
        }

        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // Left for the temp folder's own cleanup.
        }
    }
}
