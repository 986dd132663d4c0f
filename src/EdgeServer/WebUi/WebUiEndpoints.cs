using System.Collections.Frozen;
using System.Security.Cryptography;

namespace EdgeServer.WebUi;

/// <summary>
/// The chat page at <c>/</c> and its files under <c>/webui/</c>, embedded in the assembly so a published server
/// needs nothing beside it. They are served without an API key: the page asks for one and sends it to the API.
/// </summary>
public static class WebUiEndpoints
{
    public const string Prefix = "/webui/";

    /// <summary>
    /// Only this server's own files and API; no inline script or style; and Trusted Types, so the page cannot turn a
    /// string into HTML even by mistake: model output only ever becomes text nodes.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

    private static readonly Lazy<FrozenDictionary<string, Asset>> s_assets = new(Load);

    /// <summary>The page's files by name (index.html, app.js, ...).</summary>
    internal static FrozenDictionary<string, Asset> Assets => s_assets.Value;

    public static IEndpointRouteBuilder MapWebUi(this IEndpointRouteBuilder app)
    {
        var assets = Assets;
        app.MapGet("/", (HttpContext context) => Serve(context, assets["index.html"]))
            .AllowAnonymous().ExcludeFromDescription();
        app.MapGet(Prefix + "{name}", (string name, HttpContext context) => name != "index.html" && assets.TryGetValue(name, out var asset)
                ? Serve(context, asset)
                : Results.NotFound())
            .AllowAnonymous().ExcludeFromDescription();
        return app;
    }

    private static IResult Serve(HttpContext context, Asset asset)
    {
        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        // No Cross-Origin-Opener-Policy: browsers ignore it on plain http to a LAN address, and say so in the console.
        headers["Cross-Origin-Resource-Policy"] = "same-origin";
        // Revalidated on every load (a 304 while unchanged), so an upgraded server never runs yesterday's script.
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        if (context.Request.Headers.IfNoneMatch.Any(v => v is not null && v.Split(',').Any(tag => tag.Trim() == asset.ETag)))
        {
            return Results.StatusCode(StatusCodes.Status304NotModified);
        }

        return Results.Bytes(asset.Content, asset.ContentType);
    }

    private static FrozenDictionary<string, Asset> Load()
    {
        const string resourcePrefix = "webui/";
        var assembly = typeof(WebUiEndpoints).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith(resourcePrefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            var content = buffer.ToArray();
            var name = resource[resourcePrefix.Length..];
            assets[name] = new Asset(content, ContentTypeOf(name), $"\"{Convert.ToHexStringLower(SHA256.HashData(content))[..20]}\"");
        }

        return assets.Count > 0
            ? assets.ToFrozenDictionary(StringComparer.Ordinal)
            : throw new InvalidOperationException("The chat page's files are not embedded in EdgeServer.dll; the build is broken.");
    }

    private static string ContentTypeOf(string name) => Path.GetExtension(name) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        var other => throw new InvalidOperationException($"No content type for the page's file type '{other}'."),
    };

    internal sealed record Asset(byte[] Content, string ContentType, string ETag);
}
