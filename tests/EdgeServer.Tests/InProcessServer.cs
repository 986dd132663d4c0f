using EdgeServer.Hosting;
using EdgeServer.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Tests;

/// <summary>
/// The real server in this process, on Kestrel at 127.0.0.1, started from command-line arguments as a user starts
/// it, with a client, its log, JSON helpers and OpenAI's schemas; stopped with its scratch folder removed.
/// </summary>
public abstract class InProcessServer : IAsyncLifetime
{
    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;

    public WebApplication App => _app!;

    public HttpClient Http { get; private set; } = null!;

    public CapturingLoggerProvider Logs { get; } = new();

    public OpenApiSchemaValidator? Schema { get; } =
        File.Exists(SharedPaths.OpenApiSpec) ? OpenApiSchemaValidator.Load(SharedPaths.OpenApiSpec) : null;

    /// <summary>A folder of the fixture's own (its models), removed when it stops.</summary>
    protected string? Scratch { get; set; }

    public abstract Task InitializeAsync();

    /// <summary>Builds and starts the server on a free port of 127.0.0.1.</summary>
    protected async Task StartAsync(IEnumerable<string> arguments, Action<IServiceCollection>? services = null)
    {
        var builder = EdgeServerHosting.CreateBuilder(["--urls", "http://127.0.0.1:0", .. arguments]);
        builder.Logging.AddProvider(Logs);
        services?.Invoke(builder.Services);
        _app = builder.Build();
        _app.MapEdgeServer();
        await _app.StartAsync();
        BaseAddress = new Uri(_app.Urls.Single());
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public virtual async Task DisposeAsync()
    {
        Http?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        try
        {
            if (Scratch is not null)
            {
                Directory.Delete(Scratch, recursive: true);
            }
        }
        catch (IOException)
        {
            // Left for the temp folder's own cleanup.
        }
    }

    public Task<HttpResponseMessage> PostAsync(string path, string json) =>
        Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json") });

    /// <summary>Posts JSON and returns the body, failing with the body when the status is not 200.</summary>
    public async Task<string> PostOkAsync(string path, string json)
    {
        using var response = await PostAsync(path, json);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.OK, body);
        return body;
    }

    /// <summary>The data of each server-sent event before [DONE].</summary>
    public static List<string> SseData(string body) =>
        body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).Where(d => d != "[DONE]").ToList();

    /// <summary>Asserts <paramref name="json"/> matches the named schema of OpenAI's spec (when ../shared is present).</summary>
    public void AssertMatchesSchema(string schemaName, string json)
    {
        if (Schema is null)
        {
            return;
        }

        var errors = Schema.Validate(schemaName, json);
        Assert.True(errors.Count == 0, $"{schemaName}: {string.Join(Environment.NewLine, errors)}{Environment.NewLine}{json}");
    }
}
