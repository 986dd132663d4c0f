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
public class ServerFixture : InProcessServer
{
    public const string Model = "successor";

    /// <summary>The successor model with Qwen 2.5's chat template: tools in the Hermes syntax.</summary>
    public const string HermesModel = "successor-qwen";
    public const int ContextPerSlot = 2048;

    /// <summary>The models folder (its path must never reach a client).</summary>
    public string ModelsDirectory { get; private set; } = null!;

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

    public override async Task InitializeAsync()
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

        Scratch = models;
        await StartAsync(
        [
            "--model", path,
            "--models-dir", models,
            "--threads", "2",
            "--slots", "2",
            "--ctx-size", ContextPerSlot.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--Logging:LogLevel:Default=Warning",
            "--Logging:LogLevel:EdgeServer.Telemetry=Information",
            // A hot developer laptop must not cap the threads of unrelated tests (ThermalMonitorTests cover the back-off).
            "--EdgeServer:Thermal:Enabled=false",
            // Nor may a sensor of the box add energy to every response (EnergyMonitorTests and EnergyHttpTests cover it).
            "--EdgeServer:Energy:Enabled=false",
            .. ExtraArguments(scratch),
        ], ConfigureServices);
    }
}

[CollectionDefinition(Name)]
public sealed class ServerGroup : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}
