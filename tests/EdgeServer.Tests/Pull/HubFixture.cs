using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Tests.Pull;

/// <summary>
/// A stand-in for the Hugging Face hub on Kestrel at 127.0.0.1, answering as the hub does: the tree listing of a
/// repository (<c>/api/models/{owner}/{repo}/tree/main</c>, sizes and LFS SHA-256s), <c>resolve</c> URLs that
/// redirect to a CDN path with <c>x-linked-size</c> and <c>x-linked-etag</c>, and a CDN with range requests.
/// Hooks make it misbehave: cut a body short, lie about a checksum, redirect in a loop or to another scheme.
/// </summary>
public sealed class HubFixture : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, Dictionary<string, byte[]>> _repos = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte[]> _blobs = new(StringComparer.Ordinal);

    private HubFixture(WebApplication app) => _app = app;

    public Uri Address { get; private set; } = null!;

    /// <summary>Every request: method, path, Range header, Authorization header.</summary>
    public ConcurrentQueue<(string Method, string Path, string? Range, string? Authorization)> Requests { get; } = new();

    /// <summary>Bytes of the next body from the CDN before the connection is dropped; null: whole bodies.</summary>
    public long? CutNextBodyAfter { get; set; }

    /// <summary>The bearer token the hub's routes require (a gated repository); null: none.</summary>
    public string? RequiredToken { get; set; }

    /// <summary>The tree listing's JSON instead of the one made from the repositories.</summary>
    public string? RawListing { get; set; }

    /// <summary>Bytes of the next whole body after which the CDN waits, until <see cref="ReleaseStall"/> or the client leaves.</summary>
    public long? StallNextBodyAfter { get; set; }

    /// <summary>Set when a body has stalled; the request's abort token completes when the client goes away.</summary>
    public TaskCompletionSource<CancellationToken> Stalled { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void ReleaseStall()
    {
        _release.TrySetResult();
        _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        Stalled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>The SHA-256 the hub claims for every file, instead of the true one.</summary>
    public string? ClaimedSha256 { get; set; }

    public static async Task<HubFixture> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var hub = new HubFixture(app);
        hub.Map(app);
        await app.StartAsync();
        hub.Address = new Uri(app.Urls.Single() + "/");
        return hub;
    }

    /// <summary>Publishes a repository with these files (path in the repository, content).</summary>
    public void AddRepository(string repository, IReadOnlyDictionary<string, byte[]> files)
    {
        _repos[repository] = files.ToDictionary(f => f.Key, f => f.Value);
        foreach (var content in files.Values)
        {
            _blobs[Sha256(content)] = content;
        }
    }

    public static string Sha256(byte[] content) => Convert.ToHexStringLower(SHA256.HashData(content));

    private void Map(WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            Requests.Enqueue((context.Request.Method, context.Request.Path.Value!, context.Request.Headers.Range.ToString() is { Length: > 0 } r ? r : null,
                context.Request.Headers.Authorization.ToString() is { Length: > 0 } a ? a : null));
            // A gated repository: the hub's own routes want the token; the CDN's signed URLs do not.
            if (RequiredToken is { } token && !context.Request.Path.StartsWithSegments("/cdn") && context.Request.Headers.Authorization.ToString() != $"Bearer {token}")
            {
                context.Response.StatusCode = 401;
                return;
            }

            await next(context);
        });

        app.MapGet("/api/models/{owner}/{repo}/tree/main", (string owner, string repo) =>
        {
            if (RawListing is { } raw)
            {
                return Results.Text(raw, "application/json");
            }

            if (!_repos.TryGetValue($"{owner}/{repo}", out var files))
            {
                return Results.NotFound();
            }

            var entries = files.Select(f => new Dictionary<string, object>
            {
                ["type"] = "file",
                ["oid"] = "0123456789abcdef0123456789abcdef01234567",
                ["size"] = f.Value.Length,
                ["path"] = f.Key,
                ["lfs"] = new Dictionary<string, object> { ["oid"] = ClaimedSha256 ?? Sha256(f.Value), ["size"] = f.Value.Length, ["pointerSize"] = 134 },
            }).Prepend(new Dictionary<string, object> { ["type"] = "directory", ["oid"] = "x", ["size"] = 0, ["path"] = "sub" });
            return Results.Text(JsonSerializer.Serialize(entries), "application/json");
        });

        app.MapMethods("/{owner}/{repo}/resolve/main/{**file}", ["GET", "HEAD"], (string owner, string repo, string file, HttpContext context) =>
        {
            if (!_repos.TryGetValue($"{owner}/{repo}", out var files) || !files.TryGetValue(file, out var content))
            {
                return Results.NotFound();
            }

            var sha = Sha256(content);
            context.Response.Headers["x-linked-size"] = content.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            context.Response.Headers["x-linked-etag"] = $"\"{ClaimedSha256 ?? sha}\"";
            context.Response.Headers["x-repo-commit"] = "0123456789abcdef0123456789abcdef01234567";
            // Another host name of the same loopback server, as the hub hands downloads to its CDN.
            return Results.Redirect($"http://localhost:{context.Request.Host.Port}/cdn/{sha}?signature=secret");
        });

        app.MapMethods("/cdn/{sha}", ["GET", "HEAD"], async (string sha, HttpContext context) =>
        {
            if (!_blobs.TryGetValue(sha, out var content))
            {
                context.Response.StatusCode = 404;
                return;
            }

            await ServeAsync(context, content);
        });

        // Plain URLs: a file by name, and misbehaving servers.
        app.MapMethods("/files/{name}", ["GET", "HEAD"], async (string name, HttpContext context) =>
        {
            if (PlainFiles.TryGetValue(name, out var file))
            {
                await ServeAsync(context, file);
                return;
            }

            context.Response.StatusCode = 404;
        });
        app.MapMethods("/cycle/{name}", ["GET", "HEAD"], (string name) => Results.Redirect($"/cycle/{name}"));
        app.MapMethods("/elsewhere/{name}", ["GET", "HEAD"], (string name) => Results.Redirect($"file:///etc/{name}"));
        // Takes the request and never answers it (until the client leaves).
        app.MapMethods("/silent/{name}", ["GET", "HEAD"], async (HttpContext context) => await Task.Delay(Timeout.Infinite, context.RequestAborted));
        // A redirect into the local network: to an address (and port) given in the path.
        app.MapMethods("/inward/{target}/{name}", ["GET", "HEAD"], (string target, string name) => Results.Redirect($"http://{target}/{name}"));
    }

    /// <summary>Files served at /files/{name}.</summary>
    public ConcurrentDictionary<string, byte[]> PlainFiles { get; } = new(StringComparer.Ordinal);

    /// <summary>The bytes, or the range asked for (206); cut short and the connection dropped when <see cref="CutNextBodyAfter"/> is set.</summary>
    private async Task ServeAsync(HttpContext context, byte[] content)
    {
        long from = 0, to = content.Length - 1;
        var range = context.Request.Headers.Range.ToString();
        if (range.StartsWith("bytes=", StringComparison.Ordinal))
        {
            var parts = range["bytes=".Length..].Split('-');
            from = long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
            if (parts[1].Length > 0)
            {
                to = Math.Min(to, long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
            }

            if (from >= content.Length)
            {
                context.Response.StatusCode = 416;
                return;
            }

            context.Response.StatusCode = 206;
            context.Response.Headers.ContentRange = $"bytes {from}-{to}/{content.Length}";
        }

        context.Response.Headers.AcceptRanges = "bytes";
        context.Response.Headers.ETag = $"\"{Sha256(content)}\"";
        context.Response.ContentLength = to - from + 1;
        if (HttpMethods.IsHead(context.Request.Method))
        {
            return;
        }

        var count = (int)(to - from + 1);
        if (range.Length == 0 && CutNextBodyAfter is { } cut)
        {
            // A body that ends early but cleanly (chunked, so no length to break), as a dropped CDN connection
            // looks once its last bytes are in: every byte sent arrives, so the resume point is known.
            CutNextBodyAfter = null;
            context.Response.ContentLength = null;
            await context.Response.Body.WriteAsync(content.AsMemory((int)from, (int)Math.Min(cut, count)));
            return;
        }

        if (range.Length == 0 && StallNextBodyAfter is { } stall)
        {
            StallNextBodyAfter = null;
            await context.Response.Body.WriteAsync(content.AsMemory((int)from, (int)Math.Min(stall, count)));
            await context.Response.Body.FlushAsync();
            var release = _release.Task;
            Stalled.TrySetResult(context.RequestAborted);
            await Task.WhenAny(release, Task.Delay(Timeout.Infinite, context.RequestAborted));
            if (context.RequestAborted.IsCancellationRequested)
            {
                return;
            }

            await context.Response.Body.WriteAsync(content.AsMemory((int)(from + stall), (int)(count - stall)));
            return;
        }

        await context.Response.Body.WriteAsync(content.AsMemory((int)from, count));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
