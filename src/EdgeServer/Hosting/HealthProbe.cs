namespace EdgeServer.Hosting;

/// <summary>
/// <c>EdgeServer --healthcheck [url]</c>: GETs /health of a running server and exits 0 when it answers 200, 1
/// otherwise. The URL defaults to the port of ASPNETCORE_URLS on loopback, else http://127.0.0.1:8080.
/// </summary>
public static class HealthProbe
{
    public static async Task<int> RunAsync(string[] args)
    {
        var target = args.Length > 0 ? new Uri(new Uri(args[0]), "/health") : new Uri(DefaultBase(), "/health");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        try
        {
            using var response = await http.GetAsync(target);
            return response.IsSuccessStatusCode ? 0 : 1;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            await Console.Error.WriteLineAsync($"{target}: {e.Message}");
            return 1;
        }
    }

    private static Uri DefaultBase()
    {
        var urls = Environment.GetEnvironmentVariable("ASPNETCORE_URLS")?.Split(';', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        if (urls is not null && Uri.TryCreate(urls.Replace("://+", "://localhost", StringComparison.Ordinal).Replace("://*", "://localhost", StringComparison.Ordinal).Replace("://0.0.0.0", "://localhost", StringComparison.Ordinal), UriKind.Absolute, out var uri))
        {
            return new Uri($"{uri.Scheme}://127.0.0.1:{uri.Port}");
        }

        return new Uri("http://127.0.0.1:8080");
    }
}
