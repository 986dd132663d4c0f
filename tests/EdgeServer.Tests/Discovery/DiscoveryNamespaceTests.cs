using System.Diagnostics;
using System.Text.Json;
using EdgeServer.TestSupport;
using EdgeServer.Tests.Gateway;

namespace EdgeServer.Tests.Discovery;

/// <summary>
/// A box and a gateway as real processes in a network namespace of their own (created here with unshare, with only a
/// loopback interface that takes multicast): the box announces itself, the gateway finds it by the name its settings
/// give (with no address), lists its model and forwards a chat request to it with the box's key. Nothing multicasts
/// on the machine's own networks. Skipped, saying why, where namespaces cannot be created.
/// </summary>
public class DiscoveryNamespaceTests
{
    [SkippableFact]
    public async Task AGatewayFindsAnAnnouncedBoxAndForwardsToIt()
    {
        var missing = Missing();
        Skip.If(missing is not null, missing);
        var root = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), "netns-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        try
        {
            var boxModels = BoxServer.Models(root, "attic-model");
            var gatewayModels = BoxServer.Models(root, "home");
            var executable = Path.Combine(AppContext.BaseDirectory, "EdgeServer");
            string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
            const string common = "--threads 2 --ctx-size 512 --Logging:LogLevel:Default=Warning --Logging:LogLevel:EdgeServer.Discovery=Information --Logging:LogLevel:EdgeServer.Gateway=Information --EdgeServer:Thermal:Enabled=false --EdgeServer:WebUi:Enabled=false";
            var script = $$"""
                set -u
                ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo || { echo "SETUP-FAILED"; exit 0; }
                {{Quote(executable)}} --urls http://0.0.0.0:18080 --models-dir {{Quote(boxModels)}} {{common}} \
                  --EdgeServer:Security:ApiKeys:0=attic-key --EdgeServer:Discovery:InstanceName=attic-pi > {{Quote(Path.Combine(root, "box.log"))}} 2>&1 &
                box=$!
                {{Quote(executable)}} --urls http://127.0.0.1:18081 --models-dir {{Quote(gatewayModels)}} {{common}} \
                  --EdgeServer:Gateway:Enabled=true --EdgeServer:Gateway:Discovery:Enabled=true --EdgeServer:Gateway:RefreshSeconds=1 \
                  --EdgeServer:Gateway:Boxes:0:Name=attic-pi --EdgeServer:Gateway:Boxes:0:ApiKey=attic-key > {{Quote(Path.Combine(root, "gateway.log"))}} 2>&1 &
                gateway=$!
                listed=
                for i in $(seq 1 900); do
                  if curl -fsS -m 2 http://127.0.0.1:18081/v1/models > {{Quote(Path.Combine(root, "models.json"))}} 2>/dev/null \
                     && grep -q '"attic-model"' {{Quote(Path.Combine(root, "models.json"))}}; then listed=1; break; fi
                  sleep 0.2
                done
                echo "LISTED=${listed:-no}"
                curl -sS -m 120 -o {{Quote(Path.Combine(root, "chat.json"))}} -w 'CHAT=%{http_code}\n' -H 'content-type: application/json' \
                  -d '{"model":"attic-model","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0}' http://127.0.0.1:18081/v1/chat/completions
                kill $box $gateway; wait
                """;
            var output = await RunAsync("unshare", ["-rn", "sh", "-c", script], TimeSpan.FromMinutes(5));
            var logs = string.Join("\n", new[] { "box.log", "gateway.log" }.Select(f => Path.Combine(root, f)).Where(File.Exists).Select(f => $"--- {Path.GetFileName(f)}\n{File.ReadAllText(f)}"));
            Skip.If(output.Contains("SETUP-FAILED", StringComparison.Ordinal), "the network namespace's loopback could not be set up for multicast (ip link / ip route refused)");
            Assert.True(output.Contains("LISTED=1", StringComparison.Ordinal), $"the gateway never listed the box's model:\n{output}\n{logs}");
            Assert.True(output.Contains("CHAT=200", StringComparison.Ordinal), $"{output}\n{File.ReadAllText(Path.Combine(root, "chat.json"))}\n{logs}");
            using var models = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "models.json")));
            var entry = models.RootElement.GetProperty("data").EnumerateArray().Single(m => m.GetProperty("id").GetString() == "attic-model");
            Assert.Equal(["attic-pi"], entry.GetProperty("details").GetProperty("boxes").EnumerateArray().Select(b => b.GetString()));
            Assert.Equal("attic-model", JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "chat.json"))).RootElement.GetProperty("model").GetString());
            Assert.Contains("found by its announcement", logs, StringComparison.Ordinal);
        }
        finally
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Why the test cannot run here, or null.</summary>
    private static string? Missing()
    {
        foreach (var tool in new[] { "unshare", "ip", "curl" })
        {
            if (!(Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, tool))))
            {
                return $"{tool} is not installed";
            }
        }

        try
        {
            using var probe = Process.Start(new ProcessStartInfo("unshare", ["-rn", "true"]) { RedirectStandardError = true })!;
            probe.WaitForExit(10_000);
            return probe.ExitCode == 0 ? null : $"network namespaces are not allowed here (unshare -rn: {probe.StandardError.ReadToEnd().Trim()})";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"unshare could not run: {e.Message}";
        }
    }

    private static async Task<string> RunAsync(string file, string[] arguments, TimeSpan limit)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(limit);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"the namespace script ran past {limit.TotalMinutes} minutes: {await stdout}");
        }

        return await stdout + await stderr;
    }
}
