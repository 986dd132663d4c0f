using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Hosting;

/// <summary>The real executable as a child process, ended by SIGTERM as a container runtime or systemd ends it.</summary>
public partial class ProcessShutdownTests
{
    private const int SigTerm = 15;

    // libc's kill(2): no kill binary need be installed.
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [Fact]
    public async Task SigtermEndsTheProcessWithinTheGracePeriodWhileAGrammarIsBusy()
    {
        var executable = Path.Combine(AppContext.BaseDirectory, "EdgeServer");
        Assert.True(File.Exists(executable), executable);
        var port = FreePort();
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList =
            {
                "--model", SuccessorModel.SharedPath, "--urls", $"http://127.0.0.1:{port}", "--threads", "2", "--slots", "2",
                "--EdgeServer:ShutdownGraceSeconds=2",
                // Lifted far above the default so the costly grammar really runs; a step then outlasts the budget.
                "--EdgeServer:Limits:MaxSchemaAlternatives=1000000", "--EdgeServer:Scheduler:SamplingBudgetSeconds=1",
                "--Logging:LogLevel:Default=Warning",
            },
        };
        using var process = Process.Start(start)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        process.ErrorDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
            await WaitHealthy(http, process, output);
            var bomb = HostileSchemas.Nested(4, 20, tagged: true);
            var body = $$"""{"model":"successor","messages":[{"role":"user","content":"json"}],"max_tokens":64,"stream":true,"response_format":{"type":"json_schema","json_schema":{"name":"b","schema":""" + bomb + "}}}";
            var attack = http.PostAsync("/v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            await Task.Delay(1500);

            // Others are served meanwhile.
            using (var normal = await http.PostAsync("/v1/completions", new StringContent("""{"model":"successor","prompt":"Hello j","max_tokens":4,"temperature":0}""", System.Text.Encoding.UTF8, "application/json")))
            {
                Assert.Equal(HttpStatusCode.OK, normal.StatusCode);
            }

            Assert.Equal(0, Kill(process.Id, SigTerm));
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await process.WaitForExitAsync(exited.Token);
            Assert.Equal(0, process.ExitCode);
            _ = await Record.ExceptionAsync(() => attack);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail("The process did not end within 30 s of SIGTERM (grace 2 s):\n" + string.Join('\n', output));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    private static async Task WaitHealthy(HttpClient http, Process process, IEnumerable<string> output)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            try
            {
                using var response = await http.GetAsync("/health");
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(100);
        }

        Assert.Fail("The server did not become healthy:\n" + string.Join('\n', output));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
