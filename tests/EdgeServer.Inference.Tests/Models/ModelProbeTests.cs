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
}
