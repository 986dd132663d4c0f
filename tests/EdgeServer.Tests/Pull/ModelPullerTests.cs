using EdgeServer.Inference;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Scheduling;
using EdgeServer.Pull;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Pull;

/// <summary>Pulls of a generated model from <see cref="HubFixture"/>: the checks before the first byte, resume, checksums, hostile answers.</summary>
public sealed class ModelPullerTests : IAsyncLifetime
{
    private const string Repository = "test-org/tiny-GGUF";
    private HubFixture _hub = null!;
    private readonly string _folder = Directory.CreateTempSubdirectory("edgeserver-pull-").FullName;
    private readonly byte[] _model = File.ReadAllBytes(SuccessorModel.SharedPath);
    private readonly byte[] _other = OtherModel();

    public async Task InitializeAsync()
    {
        _hub = await HubFixture.StartAsync();
        _hub.AddRepository(Repository, new Dictionary<string, byte[]>
        {
            ["tiny-Q4_K_M.gguf"] = _model,
            ["tiny-Q8_0.gguf"] = _other,
            ["mmproj-tiny-Q8_0.gguf"] = _other,
            ["README.md"] = "# tiny"u8.ToArray(),
        });
    }

    public async Task DisposeAsync()
    {
        await _hub.DisposeAsync();
        Directory.Delete(_folder, recursive: true);
    }

    [Theory]
    [InlineData(Repository + ":Q8_0", "tiny-Q8_0.gguf")]
    [InlineData(Repository + ":q8_0", "tiny-Q8_0.gguf")]
    [InlineData(Repository, "tiny-Q4_K_M.gguf")]
    [InlineData(Repository + "/tiny-Q8_0.gguf", "tiny-Q8_0.gguf")]
    public async Task PullsTheFileOfTheQuantizationThroughTheCdnRedirect(string source, string file)
    {
        var path = await PullAsync(Puller(), source);

        Assert.Equal(Path.Combine(_folder, file), path);
        Assert.Equal(file == "tiny-Q8_0.gguf" ? _other : _model, await File.ReadAllBytesAsync(path));
        Assert.Equal([file], Directory.GetFiles(_folder).Select(Path.GetFileName));
        Assert.Contains(_hub.Requests, r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal) && r.Method == "GET" && r.Range is null);
    }

    [Fact]
    public async Task APlainUrlIsPulledUnderItsFileName()
    {
        _hub.PlainFiles["plain.gguf"] = _model;
        var path = await PullAsync(Puller(), new Uri(_hub.Address, "files/plain.gguf").AbsoluteUri);
        Assert.Equal(_model, await File.ReadAllBytesAsync(path));
    }

    [Theory]
    [InlineData(":Q5_K_M", "has no file of Q5_K_M")]
    [InlineData("/missing.gguf", "has no file 'missing.gguf'")]
    public async Task AnAbsentChoiceListsWhatTheRepositoryHas(string suffix, string expected)
    {
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository + suffix));
        Assert.Equal("model_source_not_found", e.Code);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains("tiny-Q4_K_M.gguf", e.Message, StringComparison.Ordinal);
        Assert.Contains("tiny-Q8_0.gguf", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task SeveralFilesOfTheQuantizationAreListedNotGuessed()
    {
        _hub.AddRepository("test-org/two", new Dictionary<string, byte[]> { ["a/m-Q4_0.gguf"] = _model, ["b/m-Q4_0.gguf"] = _other });
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), "test-org/two:Q4_0"));
        Assert.Contains("a/m-Q4_0.gguf", e.Message, StringComparison.Ordinal);
        Assert.Contains("b/m-Q4_0.gguf", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnInterruptedDownloadKeepsOnlyThePartialFileAndResumesWithARange()
    {
        var cut = _model.Length / 2;
        _hub.CutNextBodyAfter = cut;
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository));
        Assert.True(e.Transient, e.Message);
        Assert.Equal(["tiny-Q4_K_M.gguf.partial"], Directory.GetFiles(_folder).Select(Path.GetFileName));
        Assert.Equal(cut, new FileInfo(Path.Combine(_folder, "tiny-Q4_K_M.gguf.partial")).Length);

        var path = await PullAsync(Puller(), Repository);

        Assert.Equal(_model, await File.ReadAllBytesAsync(path));
        Assert.Contains(_hub.Requests, r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal) && r.Range == $"bytes={cut}-");
        Assert.Equal(["tiny-Q4_K_M.gguf"], Directory.GetFiles(_folder).Select(Path.GetFileName));
    }

    [Fact]
    public async Task ARetryResumesWithinTheSamePull()
    {
        var cut = _model.Length / 3;
        _hub.CutNextBodyAfter = cut;
        var events = new List<PullEvent>();

        var path = await PullAsync(Puller(retries: 1), Repository, events.Add);

        Assert.Equal(_model, await File.ReadAllBytesAsync(path));
        Assert.Contains(events, e => e.Status == "retrying");
        Assert.Contains(_hub.Requests, r => r.Range == $"bytes={cut}-");
    }

    [Fact]
    public async Task AWrongChecksumRemovesTheFile()
    {
        _hub.ClaimedSha256 = new string('0', 64);
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository));
        Assert.Equal("checksum_mismatch", e.Code);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task AModelThatDoesNotFitIsRefusedBeforeItsDownload()
    {
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(budget: 64 * 1024), Repository));

        Assert.Equal("model_too_large", e.Code);
        Assert.Contains("more than the memory budget of 64 KiB", e.Message, StringComparison.Ordinal);
        Assert.Contains("--force", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
        // Only the header was read, with ranges.
        Assert.DoesNotContain(_hub.Requests, r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal) && r.Method == "GET" && r.Range is null);

        var path = await PullAsync(Puller(budget: 64 * 1024), Repository, force: true);
        Assert.Equal(_model, await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public void TheFitCheckNamesTheContextThatWouldFit()
    {
        var header = GgufReader.Read(SuccessorModel.SharedPath);
        var scheduler = new SchedulerOptions { Slots = 2, ContextPerSlot = 4096 };
        var at1024 = MemoryFit.Check(header, scheduler with { ContextPerSlot = 1024 }, MmapMode.On, false, CpuRepackFeatures.None, long.MaxValue, "x").Estimate.Total;

        var fit = MemoryFit.Check(header, scheduler, MmapMode.On, false, CpuRepackFeatures.None, at1024, "test budget");

        Assert.False(fit.Fits);
        Assert.Equal(1024, fit.ContextThatFits);
        Assert.Contains("--ctx-size 1024", fit.Describe("tiny"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TooLittleDiskSpaceIsRefusedBeforeTheDownload()
    {
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(minFree: long.MaxValue / 4), Repository));
        Assert.Equal("insufficient_storage", e.Code);
        Assert.Contains("EdgeServer:Pull:MinFreeSpace", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task ASecondPullOfTheSameFileIsRefusedWhileTheFirstRuns()
    {
        var puller = Puller();
        using (var first = await puller.PlanAsync(Repository, false, _ => { }, CancellationToken.None))
        {
            var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository));
            Assert.Equal("pull_in_progress", e.Code);
            Assert.Equal(409, e.Status);
        }

        Assert.Empty(Directory.GetFileSystemEntries(_folder));
        await PullAsync(puller, Repository);
        var again = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository));
        Assert.Equal("model_exists", again.Code);
    }

    [Fact]
    public async Task AFileThatIsNotGgufIsRefusedFromItsHeader()
    {
        _hub.PlainFiles["notes.gguf"] = System.Text.Encoding.UTF8.GetBytes(new string('x', 4096));
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), new Uri(_hub.Address, "files/notes.gguf").AbsoluteUri));
        Assert.Equal("invalid_model_file", e.Code);
        Assert.Contains("not a GGUF file", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task HugeCountsInAHostileHeaderAreRefusedWithoutReadingThem()
    {
        // Magic, version 3, no tensors, 2^62 metadata entries; the rest zeros.
        var hostile = new byte[64 * 1024];
        BitConverter.GetBytes(GgufReader.Magic).CopyTo(hostile, 0);
        BitConverter.GetBytes(3u).CopyTo(hostile, 4);
        BitConverter.GetBytes(1UL << 62).CopyTo(hostile, 16);
        _hub.PlainFiles["hostile.gguf"] = hostile;

        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), new Uri(_hub.Address, "files/hostile.gguf").AbsoluteUri));

        Assert.Equal("invalid_model_file", e.Code);
        Assert.Contains("metadata entries", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task PathsThatClimbOutOfTheRepositoryAreNotFollowed()
    {
        _hub.RawListing = $$"""[{"type":"file","path":"../../evil-Q4_K_M.gguf","size":{{_model.Length}}},{"type":"file","path":"/etc/evil-Q4_K_M.gguf","size":1}]""";
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository));
        Assert.Equal("model_source_not_found", e.Code);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
        Assert.DoesNotContain(Directory.GetFileSystemEntries(Path.GetDirectoryName(_folder)!), p => Path.GetFileName(p).StartsWith("evil", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("../x.gguf", "x.gguf")]
    [InlineData("a\\..\\b.gguf", "b.gguf")]
    [InlineData("dir/m-Q4_0.gguf", "m-Q4_0.gguf")]
    public void ALocalNameIsTheLastSegmentOnly(string path, string name) => Assert.Equal(name, PullSource.LocalName(path));

    [Theory]
    [InlineData(".hidden.gguf")]
    [InlineData("x.gguf/")]
    [InlineData("model.bin")]
    [InlineData("a/..")]
    public void NamesThatAreNotPlainGgufFilesAreRefused(string path) =>
        Assert.Equal("invalid_model_source", Assert.Throws<PullException>(() => PullSource.LocalName(path)).Code);

    [Theory]
    [InlineData("nothing")]
    [InlineData("ftp://example.org/m.gguf")]
    [InlineData("owner/repo:Q4 K")]
    [InlineData("owner/../x.gguf")]
    [InlineData("owner/repo/../../x.gguf")]
    [InlineData("owner/repo/x.gguf:Q4_0")]
    public void ASourceThatIsNoneOfTheThreeFormsIsRefused(string source) =>
        Assert.Equal("invalid_model_source", Assert.Throws<PullException>(() => PullSource.Parse(source)).Code);

    [Theory]
    [InlineData("cycle/m.gguf", "loop")]
    [InlineData("elsewhere/m.gguf", "file:")]
    [InlineData("files/absent.gguf", "404")]
    public async Task BadAnswersAreOneClearError(string path, string expected)
    {
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), new Uri(_hub.Address, path).AbsoluteUri));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task NoNetworkIsOneClearError()
    {
        var puller = new ModelPuller(new PullHttp(new Uri("http://127.0.0.1:1/"), null), Target(), TimeProvider.System);
        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(puller, Repository));
        Assert.Contains("could not be reached", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    [Fact]
    public async Task AServerThatNeverAnswersIsGivenUpOn()
    {
        var puller = new ModelPuller(new PullHttp(_hub.Address, null, headersTimeout: TimeSpan.FromSeconds(1)), Target(), TimeProvider.System);
        var pull = PullAsync(puller, new Uri(_hub.Address, "silent/m.gguf").AbsoluteUri);
        // Bounded only so that a hang fails the test instead of the run: the pull itself must give up after 1 s.
        var e = await Assert.ThrowsAsync<PullException>(() => pull.WaitAsync(TimeSpan.FromMinutes(2)));
        Assert.Contains("did not answer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheTokenGoesToTheHubButNotToTheCdnItRedirectsTo()
    {
        await PullAsync(Puller(token: "hf_secret"), Repository);

        Assert.All(_hub.Requests.Where(r => r.Path.StartsWith("/api/", StringComparison.Ordinal) || r.Path.Contains("/resolve/", StringComparison.Ordinal)),
            r => Assert.Equal("Bearer hf_secret", r.Authorization));
        var cdn = _hub.Requests.Where(r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(cdn);
        Assert.All(cdn, r => Assert.Null(r.Authorization));
    }

    [Fact]
    public async Task AGatedRepositoryAsksForHfTokenAndIsPulledWithIt()
    {
        _hub.RequiredToken = "hf_gated";

        var e = await Assert.ThrowsAsync<PullException>(() => PullAsync(Puller(), Repository));

        Assert.Equal("upstream_unauthorized", e.Code);
        Assert.Equal(502, e.Status);
        Assert.Contains("HF_TOKEN", e.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
        var path = await PullAsync(Puller(token: "hf_gated"), Repository);
        Assert.Equal(_model, await File.ReadAllBytesAsync(path));
    }

    private ModelPuller Puller(long budget = long.MaxValue, int retries = 0, long minFree = 0, string? token = null) =>
        new(new PullHttp(_hub.Address, token), Target(budget, retries, minFree), TimeProvider.System);

    private PullTarget Target(long budget = long.MaxValue, int retries = 0, long minFree = 0) => new(_folder, minFree, retries, TimeSpan.FromSeconds(30),
        header => MemoryFit.Check(header, new SchedulerOptions(), MmapMode.Auto, true, CpuRepackFeatures.None, budget, "test budget"));

    private static async Task<string> PullAsync(ModelPuller puller, string source, Action<PullEvent>? progress = null, bool force = false)
    {
        using var plan = await puller.PlanAsync(source, force, _ => { }, CancellationToken.None);
        return await puller.DownloadAsync(plan, progress ?? (_ => { }), CancellationToken.None);
    }

    /// <summary>A second small model, so two files of a repository differ.</summary>
    private static byte[] OtherModel()
    {
        var path = Path.Combine(Path.GetTempPath(), $"edgeserver-pull-other-{Environment.ProcessId}.gguf");
        LlamaModelBuilder.Write(path, SuccessorModel.Shape, SuccessorModel.Vocabulary, new RandomLlamaWeights(seed: 3), name: "other");
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    }
}
