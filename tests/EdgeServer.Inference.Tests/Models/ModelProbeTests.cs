using EdgeServer.Inference.Models;
using EdgeServer.Inference.Tests.Gguf;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Models;

/// <summary>
/// How the engine reads the verdict of the probe child: stand-in children (/bin/sh scripts) that pass, refuse,
/// abort or hang. The real child (EdgeServer --probe-model) is tested with the server.
/// </summary>
public class ModelProbeTests
{
    private static string Scratch(string name)
    {
        var dir = Path.Combine(Path.GetDirectoryName(GgufReaderTests.TempPath("x"))!, "probe", name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static InferenceEngine Engine(string model, string script, double timeoutSeconds = 60) => new(
        new EngineOptions
        {
            Models = [new ModelSource("tiny", model)],
            // sh -c SCRIPT sh --probe-model PATH ...: the model's path is $2.
            ProbeCommand = new ProbeCommand("/bin/sh", ["-c", script, "sh"]),
            ProbeTimeout = TimeSpan.FromSeconds(timeoutSeconds),
        },
        NullLoggerFactory.Instance);

    [Fact]
    public void AChildThatAbortsMarksTheModelUnavailableWithItsLastLinesAndNoFolder()
    {
        TestRuntime.Ensure();
        var dir = Scratch("abort");
        var model = Path.Combine(dir, "tiny.gguf");
        HostileModels.Write(model);
        using var engine = Engine(model, """
            echo "llama_model_loader: loaded meta data from $2" >&2
            echo "/build/llama.cpp/src/llama-model.cpp:1260: GGML_ASSERT(hparams.n_layer_all > 0) failed" >&2
            kill -ABRT $$
            """);
        var tiny = Assert.Single(engine.ListModels());
        Assert.Equal(ModelStatus.Unavailable, tiny.Status);
        Assert.Contains("SIGABRT", tiny.Error, StringComparison.Ordinal);
        Assert.Contains("llama-model.cpp:1260: GGML_ASSERT(hparams.n_layer_all > 0) failed", tiny.Error, StringComparison.Ordinal);
        Assert.Contains("tiny.gguf", tiny.Error, StringComparison.Ordinal);
        Assert.DoesNotContain(dir, tiny.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("/build/", tiny.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void AChildThatRefusesGivesItsReason()
    {
        TestRuntime.Ensure();
        var model = Path.Combine(Scratch("refuse"), "tiny.gguf");
        HostileModels.Write(model);
        using var engine = Engine(model, "echo 'noise' >&2; echo 'the tensor blk.0.attn_q.weight is too small'; exit 3");
        var tiny = Assert.Single(engine.ListModels());
        Assert.Equal(ModelStatus.Unavailable, tiny.Status);
        Assert.Contains("the tensor blk.0.attn_q.weight is too small", tiny.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("noise", tiny.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void AChildThatHangsIsKilledAtTheTimeout()
    {
        TestRuntime.Ensure();
        var dir = Scratch("hang");
        var model = Path.Combine(dir, "tiny.gguf");
        HostileModels.Write(model);
        var pidFile = Path.Combine(dir, "pid");
        File.Delete(pidFile);
        using var engine = Engine(model, $"echo $$ > '{pidFile}'; exec sleep 600", timeoutSeconds: 1);
        var tiny = Assert.Single(engine.ListModels());
        Assert.Equal(ModelStatus.Unavailable, tiny.Status);
        Assert.Contains("ProbeTimeoutSeconds", tiny.Error, StringComparison.Ordinal);
        var pid = File.ReadAllText(pidFile).Trim();
        Assert.False(Directory.Exists($"/proc/{pid}"), $"the probe child {pid} is still running");
    }

    [Fact]
    public async Task AModelIsProbedOncePerFileVersionAndServesAfterASuccessfulProbe()
    {
        TestRuntime.Ensure();
        var dir = Scratch("once");
        var model = Path.Combine(dir, "tiny.gguf");
        HostileModels.Write(model);
        var runs = Path.Combine(dir, "runs");
        File.Delete(runs);
        using var engine = Engine(model, $"echo run >> '{runs}'");
        Assert.Equal(ModelStatus.Available, Assert.Single(engine.ListModels()).Status);

        // Loading checks the file again: the same size and time, so the verdict is reused.
        await engine.LoadAsync("tiny");
        Assert.Equal(ModelStatus.Loaded, Assert.Single(engine.ListModels()).Status);
        Assert.Single(File.ReadAllLines(runs));
    }

    [Fact]
    public void AChangedFileIsProbedAgain()
    {
        TestRuntime.Ensure();
        var dir = Scratch("changed");
        var model = Path.Combine(dir, "tiny.gguf");
        HostileModels.Write(model);
        var runs = Path.Combine(dir, "runs");
        File.Delete(runs);
        var prober = new ModelProber(
            new EngineOptions { ProbeCommand = new ProbeCommand("/bin/sh", ["-c", $"echo run >> '{runs}'", "sh"]) }, NullLogger.Instance);
        var source = new ModelSource("tiny", model);
        Assert.Equal(ModelStatus.Available, prober.Check(source).Status);
        Assert.Equal(ModelStatus.Available, prober.Check(source).Status);
        Assert.Single(File.ReadAllLines(runs));

        File.SetLastWriteTimeUtc(model, File.GetLastWriteTimeUtc(model).AddMinutes(-5));
        Assert.Equal(ModelStatus.Available, prober.Check(source).Status);
        Assert.Equal(2, File.ReadAllLines(runs).Length);
    }

    [Fact]
    public void AServableVerdictIsRememberedAcrossRunsUntilTheFileChangesAndARefusalIsNot()
    {
        TestRuntime.Ensure();
        var dir = Scratch("remembered");
        var model = Path.Combine(dir, "tiny.gguf");
        HostileModels.Write(model);
        var runs = Path.Combine(dir, "runs");
        File.Delete(runs);
        var cache = Path.Combine(dir, "cache", "probed-models");
        if (Directory.Exists(Path.GetDirectoryName(cache)))
        {
            Directory.Delete(Path.GetDirectoryName(cache)!, recursive: true);
        }

        ModelProber Prober(int exitCode = 0) => new(
            new EngineOptions { ProbeCacheFile = cache, ProbeCommand = new ProbeCommand("/bin/sh", ["-c", $"echo run >> '{runs}'; exit {exitCode}", "sh"]) }, NullLogger.Instance);
        var source = new ModelSource("tiny", model);

        // Each prober is a new run of the server.
        Assert.Equal(ModelStatus.Available, Prober().Check(source).Status);
        Assert.Equal(ModelStatus.Available, Prober().Check(source).Status);
        Assert.Single(File.ReadAllLines(runs));

        // Other settings, or a changed file, are probed again.
        Assert.Equal(ModelStatus.Available, Prober().Check(source with { Settings = new ModelSettings { Slots = 3 } }).Status);
        Assert.Equal(2, File.ReadAllLines(runs).Length);
        File.SetLastWriteTimeUtc(model, File.GetLastWriteTimeUtc(model).AddMinutes(-5));
        Assert.Equal(ModelStatus.Unavailable, Prober(exitCode: 3).Check(source).Status);
        Assert.Equal(ModelStatus.Unavailable, Prober(exitCode: 3).Check(source).Status);
        Assert.Equal(4, File.ReadAllLines(runs).Length);

        // A cache file that is garbage, or too large to be one, is ignored and rewritten.
        File.WriteAllText(cache, "\0\0garbage|||\n" + new string('x', 100));
        Assert.Equal(ModelStatus.Available, Prober().Check(source).Status);
        Assert.Equal(ModelStatus.Available, Prober().Check(source).Status);
        Assert.Equal(5, File.ReadAllLines(runs).Length);
        using (var huge = File.Create(cache))
        {
            huge.SetLength(64L << 20);
        }

        Assert.Equal(ModelStatus.Available, Prober().Check(source).Status);
        Assert.Equal(6, File.ReadAllLines(runs).Length);
        Assert.True(new FileInfo(cache).Length < 4096);
    }

    [Fact]
    public void TheVerdictFileKeepsOnlyTheNewestEntries()
    {
        var dir = Scratch("bounded");
        var store = new ProbeVerdictStore(Path.Combine(dir, "verdicts"));
        File.Delete(Path.Combine(dir, "verdicts"));
        for (var i = 0; i < ProbeVerdictStore.MaxEntries + 10; i++)
        {
            Assert.True(store.Add($"key {i}"));
        }

        var kept = File.ReadAllLines(Path.Combine(dir, "verdicts"));
        Assert.Equal(ProbeVerdictStore.MaxEntries, kept.Length);
        Assert.Equal($"key {ProbeVerdictStore.MaxEntries + 9}", kept[^1]);
        Assert.False(new ProbeVerdictStore(Path.Combine(dir, "verdicts")).Contains("key 0"));
        Assert.Null(ProbeVerdictStore.Key(new FileInfo(Path.Combine(dir, "a\nb.gguf")), "", ""));
    }
}
