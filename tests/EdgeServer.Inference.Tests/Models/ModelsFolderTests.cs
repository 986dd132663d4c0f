using EdgeServer.Inference.Models;
using EdgeServer.Inference.Tests.Gguf;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Models;

/// <summary>
/// The models folder followed while the engine runs, on real llama.cpp: a new file is served, a removed one leaves
/// the catalog and is freed once its requests have finished, a changed one is probed again, a half-copied one is
/// unavailable until it is whole, a name already taken is not served twice, and the watcher sees changes by itself.
/// </summary>
public sealed class ModelsFolderTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "edgeserver-folder-" + Guid.NewGuid().ToString("N"));
    private InferenceEngine? _engine;

    public ModelsFolderTests()
    {
        TestRuntime.Ensure();
        Directory.CreateDirectory(_folder);
    }

    public void Dispose()
    {
        _engine?.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private InferenceEngine Start(bool watch = false, IReadOnlyList<ModelSource>? configured = null) => _engine = new InferenceEngine(
        new EngineOptions
        {
            Models = configured ?? [],
            ModelsDirectory = _folder,
            WatchModelsDirectory = watch,
            Scheduler = new() { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = 2, QueueCapacity = 2 },
        },
        NullLoggerFactory.Instance);

    private string Put(string id)
    {
        var path = Path.Combine(_folder, id + ".gguf");
        File.Copy(SuccessorModel.SharedPath, path, overwrite: true);
        return path;
    }

    private static GenerationRequest Ask(string model, bool endless = false) =>
        new() { Model = model, Prompt = "Hello j", Sampling = new() { Temperature = 0 }, IgnoreEos = endless, MaxTokens = endless ? 200 : null };

    private static async Task<string> Collect(IGenerationSession session)
    {
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        return text.ToString();
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(20);
        }

        Assert.True(condition(), what);
    }

    [Fact]
    public async Task ANewFileIsServedAfterARescan()
    {
        Put("a");
        var engine = Start();
        Assert.Null(engine.FindModel("b"));

        Put("b");
        engine.RescanModelsDirectory();

        Assert.Equal(ModelStatus.Available, engine.FindModel("b")!.Status);
        Assert.Equal(["a", "b"], engine.ListModels().Select(m => m.Id));
        Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("b"), default)));
    }

    [Fact]
    public async Task ARemovedIdleModelLeavesTheCatalogAndItsMemoryIsFreed()
    {
        var path = Put("a");
        var engine = Start();
        await engine.LoadAsync("a");
        Assert.True(engine.Memory.UsedBytes > 0);

        File.Delete(path);
        engine.RescanModelsDirectory();

        Assert.Null(engine.FindModel("a"));
        Assert.Empty(engine.ListModels());
        await Assert.ThrowsAsync<ModelNotFoundException>(() => engine.StartAsync(Ask("a"), default));
        await Until(() => engine.Memory.UsedBytes == 0, "the removed model's memory is freed");
    }

    [Fact]
    public async Task ARemovedBusyModelFinishesItsRequestsFirst()
    {
        var path = Put("a");
        var engine = Start();
        var running = await engine.StartAsync(Ask("a", endless: true), default);
        var text = Collect(running);

        File.Delete(path);
        engine.RescanModelsDirectory();

        // Gone for new requests at once, still serving the one it has.
        await Assert.ThrowsAsync<ModelNotFoundException>(() => engine.StartAsync(Ask("a"), default));
        Assert.True(engine.Memory.UsedBytes > 0);
        Assert.StartsWith("klmnopqrstuvwxyzé€", await text);
        await Until(() => engine.Memory.UsedBytes == 0, "the removed model is freed once its request has finished");
    }

    [Fact]
    public async Task AChangedFileIsProbedAgainAndTheOldModelIsFreed()
    {
        var path = Put("a");
        var engine = Start();
        await engine.LoadAsync("a");
        Assert.Equal(LlamaModel.NoTemplateFallback, engine.FindModel("a")!.ChatTemplate);

        // Replaced by another model under the same name: Qwen's chat template instead of none.
        SuccessorModel.Write(path + ".tmp", SuccessorModel.QwenTemplate);
        File.Move(path + ".tmp", path, overwrite: true);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
        engine.RescanModelsDirectory();

        var replaced = engine.FindModel("a")!;
        Assert.Equal(ModelStatus.Available, replaced.Status);
        Assert.Equal("model", replaced.ChatTemplate); // the file's own template now, where it had none
        await Until(() => engine.Memory.UsedBytes == 0, "the old model is freed");
        await engine.LoadAsync("a");
        Assert.Equal(ModelStatus.Loaded, engine.FindModel("a")!.Status);
    }

    [Fact]
    public void AHalfCopiedFileIsUnavailableUntilItIsWhole()
    {
        var engine = Start();
        var path = Path.Combine(_folder, "late.gguf");
        var bytes = File.ReadAllBytes(SuccessorModel.SharedPath);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        engine.RescanModelsDirectory();
        var half = engine.FindModel("late")!;
        Assert.Equal(ModelStatus.Unavailable, half.Status);

        File.WriteAllBytes(path, bytes);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
        engine.RescanModelsDirectory();
        Assert.Equal(ModelStatus.Available, engine.FindModel("late")!.Status);
    }

    [Fact]
    public void AFileWhoseNameIsTakenIsNotServedAndTheConfiguredModelStays()
    {
        var elsewhere = GgufReaderTests.TempPath("folder-configured.gguf");
        File.Copy(SuccessorModel.SharedPath, elsewhere, overwrite: true);
        var engine = Start(configured: [new ModelSource("c", elsewhere)]);

        Put("c");
        engine.RescanModelsDirectory();

        var c = engine.FindModel("c")!;
        Assert.Equal(elsewhere, c.Path);
        Assert.Single(engine.ListModels());
    }

    [Fact]
    public async Task AModelWhoseFileIsRemovedWhileItLoadsServesItsRequestAndIsThenFreed()
    {
        var path = Put("a");
        var engine = Start();
        engine.BeforeLoad = _ =>
        {
            File.Delete(path);
            engine.RescanModelsDirectory();
        };

        // Admitted before the file went: it is served (or told why not, never a crash), then the model is freed.
        var error = await Record.ExceptionAsync(async () => Assert.Equal("klmnopqrstuvwxyzé€", await Collect(await engine.StartAsync(Ask("a"), default))));
        Assert.True(error is null or InferenceException, error?.ToString());
        Assert.Null(engine.FindModel("a"));
        await Until(() => engine.Memory.UsedBytes == 0, "the model that left while loading is freed");
    }

    [Fact]
    public void AFolderFileNamedLikeAConfiguredAliasIsSkippedAtStartUpToo()
    {
        var elsewhere = GgufReaderTests.TempPath("folder-aliased.gguf");
        File.Copy(SuccessorModel.SharedPath, elsewhere, overwrite: true);
        Put("b");

        // Skipped with a warning, as a rescan skips it: the server starts either way.
        var engine = Start(configured: [new ModelSource("c", elsewhere) { Settings = new() { Aliases = ["b"] } }]);
        Assert.Equal(["c"], engine.ListModels().Select(m => m.Id));
        Assert.Equal("c", engine.FindModel("b")!.Id);
    }

    [Fact]
    public async Task ShutdownEndsTheGenerationsOfARemovedModelToo()
    {
        var path = Put("a");
        var engine = Start();
        var session = await engine.StartAsync(Ask("a", endless: true), default);
        File.Delete(path);
        engine.RescanModelsDirectory();

        engine.EndGenerations();
        await Assert.ThrowsAsync<ShuttingDownException>(() => Collect(session));
    }

    [Fact]
    public async Task AFifoNamedLikeAModelIsNeverOpened()
    {
        var fifo = Path.Combine(_folder, "pipe.gguf");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo))
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        // Opening a FIFO for reading waits for a writer: a rescan that did would never return.
        var engine = Start();
        await Task.Run(engine.RescanModelsDirectory).WaitAsync(TimeSpan.FromSeconds(30));
        var pipe = engine.FindModel("pipe")!;
        Assert.Equal(ModelStatus.Unavailable, pipe.Status);
        Assert.Contains("not a regular file", pipe.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheWatcherSeesFilesComeAndGoByItself()
    {
        var engine = Start(watch: true);
        var path = Put("watched");
        await Until(() => engine.FindModel("watched") is { Status: ModelStatus.Available }, "a new file is served without a rescan by hand");

        File.Delete(path);
        await Until(() => engine.FindModel("watched") is null, "a removed file leaves the catalog");
    }
}
