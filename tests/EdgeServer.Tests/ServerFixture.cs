using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests;

/// <summary>
/// The real server on Kestrel at 127.0.0.1 (a free port), serving the generated successor model by --model and a
/// models folder holding a truncated GGUF, a file that is not GGUF at all, a GGUF of an unknown architecture, and
/// hostile models that llama.cpp refuses or aborts on (see <see cref="HostileModels"/>).
/// </summary>
public class ServerFixture : IAsyncLifetime
{
    public const string Model = "successor";

    /// <summary>The successor model with Qwen 2.5's chat template: tools in the Hermes syntax.</summary>
    public const string HermesModel = "successor-qwen";
    public const int ContextPerSlot = 2048;
    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;

    public CapturingLoggerProvider Logs { get; } = new();

    /// <summary>The models folder (its path must never reach a client).</summary>
    public string ModelsDirectory { get; private set; } = null!;

    public WebApplication App => _app!;

    public HttpClient Http { get; private set; } = null!;

    public OpenApiSchemaValidator? Schema { get; } =
        File.Exists(SharedPaths.OpenApiSpec) ? OpenApiSchemaValidator.Load(SharedPaths.OpenApiSpec) : null;

    /// <summary>Hostile models in the folder, by id: each is listed unavailable and the server stays up.</summary>
    public static readonly IReadOnlyDictionary<string, Action<EdgeServer.Inference.Gguf.GgufWriter>> Hostile = new Dictionary<string, Action<EdgeServer.Inference.Gguf.GgufWriter>>
    {
        // Refused before llama.cpp sees it: it would abort on the first request (GGML_ASSERT in load_hparams).
        ["hostile-layers"] = HostileModels.Set("llama.block_count", 4_000_000_000u),
        // llama.cpp refuses it (the feed-forward tensors do not match feed_forward_length).
        ["hostile-shape"] = HostileModels.Set("llama.feed_forward_length", 96u),
        // Pass every check of ours, then make llama.cpp abort: only the probe child sees that, and dies alone.
        ["hostile-vocab"] = HostileModels.DuplicatePiece,
        ["hostile-bytes"] = HostileModels.NoBytePieces,
    };

    /// <summary>Settings a derived fixture adds to the command line.</summary>
    protected virtual IEnumerable<string> ExtraArguments(string scratch) => [];

    /// <summary>Services a derived fixture replaces (e.g. the clock).</summary>
    protected virtual void ConfigureServices(Microsoft.Extensions.DependencyInjection.IServiceCollection services)
    {
    }

    public async Task InitializeAsync()
    {
        var scratch = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        // A folder per fixture: each server follows its folder, so another fixture writing its files must not be a change.
        var models = Path.Combine(scratch, "models-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(models);
        await File.WriteAllBytesAsync(Path.Combine(models, "truncated.gguf"), File.ReadAllBytes(SuccessorModel.SharedPath)[..5000]);
        await File.WriteAllTextAsync(Path.Combine(models, "notes.gguf"), "not a model, just some text that happens to end in .gguf");
        new EdgeServer.Inference.Gguf.GgufWriter()
            .Add("general.architecture", "edgeserver-imaginary")
            .AddTensor("x.weight", [32], EdgeServer.Inference.Gguf.GgmlType.F32, s => s.Write(new byte[128]))
            .Write(Path.Combine(models, "alien.gguf"));
        foreach (var (id, spoil) in Hostile)
        {
            HostileModels.Write(Path.Combine(models, id + ".gguf"), spoil);
        }

        ModelsDirectory = models;
        var path = SuccessorModel.SharedPath; // named successor.gguf, so served as "successor"
        SuccessorModel.Write(Path.Combine(models, HermesModel + ".gguf"), SuccessorModel.QwenTemplate);

        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--model", path,
            "--models-dir", models,
            "--threads", "2",
            "--slots", "2",
            "--ctx-size", ContextPerSlot.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--Logging:LogLevel:Default=Warning",
            "--Logging:LogLevel:EdgeServer.Telemetry=Information",
            // A hot developer laptop must not cap the threads of unrelated tests (ThermalMonitorTests cover the back-off).
            "--EdgeServer:Thermal:Enabled=false",
            .. ExtraArguments(scratch),
        ]);
        builder.Logging.AddProvider(Logs);
        ConfigureServices(builder.Services);
        _app = builder.Build();
        _app.MapEdgeServer();
        await _app.StartAsync();
        BaseAddress = new Uri(_app.Urls.Single());
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public virtual async Task DisposeAsync()
    {
        Http.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        try
        {
            Directory.Delete(ModelsDirectory, recursive: true);
        }
        catch (IOException)
        {
            // Left for the temp folder's own cleanup.
        }
    }

    /// <summary>Asserts <paramref name="json"/> matches the named schema of OpenAI's spec (when ../shared is present).</summary>
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

[CollectionDefinition(Name)]
public sealed class ServerGroup : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}
