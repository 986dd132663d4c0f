using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Hosting;

/// <summary>The built EdgeServer.dll run by dotnet as a child process: its command line, output and exit code.</summary>
public sealed class CommandLineTests : IDisposable
{
    private static readonly string Dll = Path.Combine(AppContext.BaseDirectory, "EdgeServer.dll");

    /// <summary>An empty models folder, so a server started by mistake loads nothing of the box's.</summary>
    private readonly string _empty = Directory.CreateTempSubdirectory("edgeserver-cli-").FullName;

    public void Dispose() => Directory.Delete(_empty, recursive: true);

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("serve", "--help")]
    public async Task HelpListsTheSwitchesAndStartsNoServer(params string[] args)
    {
        // So that a server started by mistake takes no port of the box's.
        var run = await RunAsync([.. args, "--urls", "http://127.0.0.1:0", "--models-dir", _empty]);
        Assert.True(run.ExitCode == 0, run.Output);
        foreach (var expected in new[] { "--model", "--models-dir", "--native-dir", "--threads", "--slots", "--ctx-size", "--urls", "--EdgeServer:Scheduler:Slots=4" })
        {
            Assert.Contains(expected, run.StandardOutput, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("listening", run.Output, StringComparison.OrdinalIgnoreCase);
        if (args[0] != "serve")
        {
            Assert.Contains("serve", run.StandardOutput, StringComparison.Ordinal);
            Assert.Contains("--version", run.StandardOutput, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task VersionPrintsTheInformationalVersionAndStartsNoServer()
    {
        var run = await RunAsync("--version");
        Assert.True(run.ExitCode == 0, run.Output);
        var version = typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(version, run.StandardOutput.Trim());
    }

    [Theory]
    [InlineData("--modle", "--model")]
    [InlineData("--thread", "--threads")]
    [InlineData("--ctx", "--ctx-size")]
    public async Task AnUnknownSwitchIsAnErrorNamingTheClosestOne(string wrong, string closest)
    {
        var run = await RunAsync(wrong, "2", "--urls", "http://127.0.0.1:0", "--models-dir", _empty);
        Assert.True(run.ExitCode == 1, run.Output);
        Assert.Contains(wrong, run.StandardError, StringComparison.Ordinal);
        Assert.Contains(closest, run.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("listening", run.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task AWrongModelPathIsOneLineNamingItAndExitCode1()
    {
        var path = Path.Combine(_empty, "no-such-model.gguf");
        var run = await RunAsync("--model", path, "--urls", "http://127.0.0.1:0", "--models-dir", _empty);
        Assert.True(run.ExitCode == 1, run.Output);
        var line = Assert.Single(run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains(path, line, StringComparison.Ordinal);
        Assert.Contains(path, run.StandardError, StringComparison.Ordinal);
    }

    [Theory]
    // Each form reaches configuration: validation then names the values given.
    [InlineData("--EdgeServer:Limits:MaxTokens=100|--EdgeServer:Limits:DefaultMaxTokens=200", "EdgeServer:Limits:DefaultMaxTokens (200) is above EdgeServer:Limits:MaxTokens (100)")]
    [InlineData("--EdgeServer:Limits:MaxTokens|100|--EdgeServer:Limits:DefaultMaxTokens|200", "EdgeServer:Limits:DefaultMaxTokens (200) is above EdgeServer:Limits:MaxTokens (100)")]
    [InlineData("serve|--slots|0", "Scheduler.Slots must be between 1 and 64")]
    [InlineData("--ctx-size=10", "Scheduler.ContextPerSlot must be between 64")]
    [InlineData("--EdgeServer:Runtime:Threads=many", "'many' at 'EdgeServer:Runtime:Threads'")]
    public async Task SettingsAndSwitchesReachConfigurationAndABadOneExits1(string arguments, string expected)
    {
        var run = await RunAsync([.. arguments.Split('|'), "--urls", "http://127.0.0.1:0", "--models-dir", _empty]);
        Assert.True(run.ExitCode == 1, run.Output);
        Assert.Contains(expected, run.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AValueTheSwitchCannotTakeIsAnErrorNamingTheSwitch()
    {
        var run = await RunAsync("--threads", "many", "--urls", "http://127.0.0.1:0", "--models-dir", _empty);
        Assert.True(run.ExitCode == 1, run.Output);
        Assert.Contains("--threads", run.StandardError, StringComparison.Ordinal);
        Assert.Contains("many", run.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void TheSystemdUnitDoesNotRestartOnAConfigurationError()
    {
        var unit = File.ReadAllLines(Path.Combine(SharedPaths.RepositoryRoot, "deploy", "systemd", "edge-server.service"));
        var line = Assert.Single(unit, l => l.StartsWith("RestartPreventExitStatus=", StringComparison.Ordinal));
        Assert.Contains(EdgeServer.Hosting.ExitCodes.ConfigurationError.ToString(System.Globalization.CultureInfo.InvariantCulture), line["RestartPreventExitStatus=".Length..].Split(' '));
        Assert.Contains("Restart=on-failure", unit);
    }

    [Fact]
    public async Task ServeWithSwitchesAndSettingsServesTheModel()
    {
        var port = FreePort();
        var start = Start(
            "serve", "--model", SuccessorModel.SharedPath, "--urls", $"http://127.0.0.1:{port}", "--models-dir", _empty, "--threads", "2",
            "--slots", "1", "--ctx-size", "256", "--EdgeServer:Runtime:ThreadPoll", "0", "--EdgeServer:Limits:DefaultMaxTokens=3",
            "--Logging:LogLevel:Default=Warning");
        using var process = Process.Start(start)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        process.ErrorDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            HttpResponseMessage? reply = null;
            while (reply is null && DateTime.UtcNow < deadline && !process.HasExited)
            {
                try
                {
                    reply = await http.PostAsync("/v1/chat/completions", new StringContent("""{"model":"successor","messages":[{"role":"user","content":"go"}],"temperature":0}""", System.Text.Encoding.UTF8, "application/json"));
                }
                catch (HttpRequestException)
                {
                    await Task.Delay(100);
                }
            }

            Assert.True(reply is not null, "The server did not answer:\n" + string.Join('\n', output));
            var body = await reply.Content.ReadAsStringAsync();
            Assert.True(reply.StatusCode == HttpStatusCode.OK, body);
            // The model was probed in a child process (EdgeServer --probe-model) and loaded; the setting capped the reply.
            Assert.Contains("\"content\":\"abc\"", body, StringComparison.Ordinal);
            reply.Dispose();
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task QuantizeWritesAModelThatReadsBackAndReportsProgressAsPlainLines()
    {
        var output = Path.Combine(_empty, "successor-q8_0.gguf");
        var run = await RunAsync("quantize", SuccessorModel.SharedPath, output, "Q8_0", "--threads", "2");
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Equal("Q8_0", EdgeServer.Inference.Gguf.GgufReader.Read(output).Quantization);
        // Output is redirected: plain lines, no carriage returns; the temporary file is gone.
        Assert.Contains("Wrote '" + output + "': Q8_0", run.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain('\r', run.StandardOutput);
        Assert.Equal([output], Directory.GetFiles(_empty));
    }

    [Theory]
    [InlineData("missing", "Q8_0", "does not exist")]
    [InlineData("text", "Q8_0", "is not a valid GGUF model")]
    [InlineData("model", "Q9_9", "'Q9_9' is not a quantization type; use one of Q4_0,")]
    [InlineData("model", "Q8_0|exists", "exists; remove it, choose another name, or add --force")]
    public async Task QuantizeRefusesBadInputInOneLineWithExitCode1(string input, string type, string expected)
    {
        var inputPath = input switch
        {
            "missing" => Path.Combine(_empty, "no-such-model.gguf"),
            "text" => Path.Combine(_empty, "notes.gguf"),
            _ => SuccessorModel.SharedPath,
        };
        if (input == "text")
        {
            await File.WriteAllTextAsync(inputPath, "not a model, just some text that ends in .gguf");
        }

        var output = Path.Combine(_empty, "out.gguf");
        var parts = type.Split('|');
        if (parts is [_, "exists"])
        {
            await File.WriteAllTextAsync(output, "an earlier file");
        }

        var run = await RunAsync("quantize", inputPath, output, parts[0]);
        Assert.True(run.ExitCode == 1, run.Output);
        var line = Assert.Single(run.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith("EdgeServer: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
        Assert.True(parts is [_, "exists"] ? File.ReadAllText(output) == "an earlier file" : !File.Exists(output));
    }

    [Fact]
    public async Task QuantizeWithoutItsArgumentsIsAnErrorAndHelpListsTheTypes()
    {
        var run = await RunAsync("quantize", SuccessorModel.SharedPath);
        Assert.True(run.ExitCode == 1, run.Output);
        var help = await RunAsync("quantize", "--help");
        Assert.True(help.ExitCode == 0, help.Output);
        foreach (var expected in new[] { "--imatrix", "--threads", "--force", "Q4_K_M", "IQ4_XS", "BF16" })
        {
            Assert.Contains(expected, help.StandardOutput, StringComparison.Ordinal);
        }
    }

    internal sealed record Run(int ExitCode, string StandardOutput, string StandardError)
    {
        public string Output => StandardOutput + StandardError;
    }

    private static ProcessStartInfo Start(params string[] args)
    {
        Assert.True(File.Exists(Dll), Dll);
        var dotnet = Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        var start = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory };
        start.ArgumentList.Add(Dll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        return start;
    }

    internal static async Task<Run> RunAsync(params string[] args)
    {
        using var process = Process.Start(Start(args))!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail($"EdgeServer {string.Join(' ', args)} was still running after 30 s:\n{await stdout}{await stderr}");
        }

        return new Run(process.ExitCode, await stdout, await stderr);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
