using EdgeServer.TestSupport;
using EdgeServer.Tests.Hosting;

namespace EdgeServer.Tests.Pull;

/// <summary><c>EdgeServer pull</c> as a user runs it: the built EdgeServer.dll in a child process.</summary>
public sealed class PullCommandTests : IAsyncLifetime
{
    private HubFixture _hub = null!;
    private readonly string _folder = Directory.CreateTempSubdirectory("edgeserver-pull-cli-").FullName;

    public async Task InitializeAsync()
    {
        _hub = await HubFixture.StartAsync();
        _hub.AddRepository("test-org/tiny-GGUF", new Dictionary<string, byte[]> { ["tiny-Q4_K_M.gguf"] = File.ReadAllBytes(SuccessorModel.SharedPath) });
    }

    public async Task DisposeAsync()
    {
        await _hub.DisposeAsync();
        Directory.Delete(_folder, recursive: true);
    }

    [Fact]
    public async Task PullPutsTheModelInTheModelsFolder()
    {
        var run = await CommandLineTests.RunAsync("pull", "test-org/tiny-GGUF:Q4_K_M", "--models-dir", _folder, $"--EdgeServer:Pull:HubUrl={_hub.Address}");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("it fits", run.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("model 'tiny-Q4_K_M'", run.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(["tiny-Q4_K_M.gguf"], Directory.GetFiles(_folder).Select(Path.GetFileName));
    }

    [Fact]
    public async Task AModelThatDoesNotFitIsOneLineAndExitCodeOne()
    {
        var run = await CommandLineTests.RunAsync("pull", "test-org/tiny-GGUF", "--models-dir", _folder, $"--EdgeServer:Pull:HubUrl={_hub.Address}", "--EdgeServer:Memory:Budget=64kb");

        Assert.True(run.ExitCode == 1, run.Output);
        var line = Assert.Single(run.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("EdgeServer: tiny-Q4_K_M.gguf needs about", line, StringComparison.Ordinal);
        Assert.Contains("--force", line, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }
}
