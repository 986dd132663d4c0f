using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Bench;

/// <summary>
/// Two boxes behind the gateway against one box (docs/benchmarks.md, "Two boxes behind the gateway"), simulated on
/// one machine: each box is an EdgeServer pinned to a core of its own (taskset) with one decode thread, the
/// gateway a third EdgeServer with no models of its own. Per round: the aggregate tokens/s of N streams straight
/// to one box, of 2N streams through the gateway to both, and the time to first token of single requests straight
/// to a box and through the gateway, alternating, so the gateway's added latency is their difference.
/// </summary>
internal static class GatewayScenario
{
    public const string Heading = "## Two boxes behind the gateway";
    private const int ContextPerSlot = 1536;

    private sealed record Sample(double OneBoxTps, double TwoBoxesTps, List<double> DirectTtft, List<double> GatewayTtft, int[] PerBox);

    public static async Task<int> RunAsync(string edgeDll, string modelsDir, int rounds, int streams, int latencyRequests, string output, string commandLine)
    {
        if (Environment.ProcessorCount < 2)
        {
            Console.Error.WriteLine("the gateway scenario pins two boxes to a core each and needs at least 2 cores");
            return 2;
        }

        var spec = Models.All.Single(m => m.Name.StartsWith("mobilellm", StringComparison.Ordinal));
        var model = Models.Ensure(spec, modelsDir);
        var started = DateTimeOffset.UtcNow;
        var loadBefore = Stats.LoadAverage();
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
        var samples = new List<Sample>();
        for (var round = 0; round < rounds; round++)
        {
            Console.Error.WriteLine($"== gateway, round {round + 1}/{rounds} (load {Stats.LoadAverage():0.00})");
            var sample = await MeasureAsync(edgeDll, model, spec, streams, latencyRequests, round, http);
            Console.Error.WriteLine(FormattableString.Invariant(
                $"   one box {sample.OneBoxTps:0.0} t/s, two boxes through the gateway {sample.TwoBoxesTps:0.0} t/s (requests per box {string.Join('/', sample.PerBox)}); TTFT p50 direct {Stats.Median(sample.DirectTtft) * 1000:0.0} ms, through the gateway {Stats.Median(sample.GatewayTtft) * 1000:0.0} ms"));
            samples.Add(sample);
        }

        var elapsed = DateTimeOffset.UtcNow - started;
        var section = Section(spec, samples, streams, latencyRequests, rounds, elapsed, loadBefore, Stats.LoadAverage(), commandLine);
        await File.WriteAllTextAsync(output, Markdown.ReplaceSection(File.Exists(output) ? await File.ReadAllTextAsync(output) : "", Heading, section));
        Console.Error.WriteLine($"wrote the section \"{Heading[3..]}\" of {output} in {elapsed.TotalMinutes:0.0} min");
        return 0;
    }

    private static async Task<Sample> MeasureAsync(string edgeDll, string model, Models.Spec spec, int streams, int latencyRequests, int round, HttpClient http)
    {
        var empty = Directory.CreateTempSubdirectory("edgeserver-bench-gateway-");
        string[] Box(int port) =>
        [
            "--urls", $"http://127.0.0.1:{port}", "--models-dir", empty.FullName,
            "--EdgeServer:Models:0:Id=bench", $"--EdgeServer:Models:0:Path={model}",
            "--threads", "1", "--slots", $"{streams}", "--ctx-size", $"{ContextPerSlot}",
            "--Logging:LogLevel:Default=Warning",
        ];
        int portA = ServerProcess.FreePort(), portB = ServerProcess.FreePort(), portG = ServerProcess.FreePort();
        await using var boxA = ServerProcess.StartEdge("box a", edgeDll, Box(portA), portA, cpus: "0");
        await using var boxB = ServerProcess.StartEdge("box b", edgeDll, Box(portB), portB, cpus: "1");
        await using var gateway = ServerProcess.StartEdge("gateway", edgeDll,
        [
            "--urls", $"http://127.0.0.1:{portG}", "--models-dir", empty.FullName, "--Logging:LogLevel:Default=Warning",
            "--EdgeServer:Gateway:Enabled=true", "--EdgeServer:Gateway:RefreshSeconds=1",
            "--EdgeServer:Gateway:Boxes:0:Name=a", $"--EdgeServer:Gateway:Boxes:0:Url={boxA.BaseAddress}",
            "--EdgeServer:Gateway:Boxes:1:Name=b", $"--EdgeServer:Gateway:Boxes:1:Url={boxB.BaseAddress}",
        ], portG);
        try
        {
            await Task.WhenAll(boxA.WaitHealthyAsync(http, TimeSpan.FromMinutes(5)), boxB.WaitHealthyAsync(http, TimeSpan.FromMinutes(5)),
                gateway.WaitHealthyAsync(http, TimeSpan.FromMinutes(5)));
            await WaitListedAsync(http, gateway.BaseAddress, TimeSpan.FromMinutes(2));
            var direct = new LoadGenerator(http, boxA.BaseAddress);
            var throughGateway = new LoadGenerator(http, gateway.BaseAddress);
            var seed = 700_000 + round * 10_000;
            // Warm-up: each box's first completion (model load, first compilation), and the gateway's first forward.
            await Task.WhenAll(direct.CompleteAsync(LoadGenerator.Prompt(16, -1), 4), new LoadGenerator(http, boxB.BaseAddress).CompleteAsync(LoadGenerator.Prompt(16, -2), 4));
            await throughGateway.CompleteAsync(LoadGenerator.Prompt(16, -3), 4);

            var before = await ForwardedAsync(http, gateway.BaseAddress);
            var oneBox = await direct.AggregateAsync(streams, 32, spec.MaxTokens, seed);
            seed += streams;
            var twoBoxes = await throughGateway.AggregateAsync(2 * streams, 32, spec.MaxTokens, seed);
            seed += 2 * streams;
            var after = await ForwardedAsync(http, gateway.BaseAddress);

            List<double> directTtft = [], gatewayTtft = [];
            for (var i = 0; i < latencyRequests; i++)
            {
                // Alternating, each with a prompt of its own, so neither side gets a warmer cache or a quieter spell.
                var first = i % 2 == 0 ? direct : throughGateway;
                var second = i % 2 == 0 ? throughGateway : direct;
                var a = await first.CompleteAsync(LoadGenerator.Prompt(16, seed++), 1);
                var b = await second.CompleteAsync(LoadGenerator.Prompt(16, seed++), 1);
                (first == direct ? directTtft : gatewayTtft).Add(a.TimeToFirstToken.TotalSeconds);
                (second == direct ? directTtft : gatewayTtft).Add(b.TimeToFirstToken.TotalSeconds);
            }

            return new Sample(oneBox, twoBoxes, directTtft, gatewayTtft,
                [after.GetValueOrDefault("a") - before.GetValueOrDefault("a"), after.GetValueOrDefault("b") - before.GetValueOrDefault("b")]);
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutException)
        {
            Console.Error.WriteLine(boxA.Describe());
            Console.Error.WriteLine(boxB.Describe());
            Console.Error.WriteLine(gateway.Describe());
            throw;
        }
        finally
        {
            empty.Delete(recursive: true);
        }
    }

    /// <summary>Waits until the gateway's model list shows the model on both boxes.</summary>
    private static async Task WaitListedAsync(HttpClient http, Uri gateway, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            using var doc = JsonDocument.Parse(await http.GetStringAsync(new Uri(gateway, "/v1/models")));
            foreach (var entry in doc.RootElement.GetProperty("data").EnumerateArray())
            {
                if (entry.GetProperty("id").GetString() == "bench" && entry.TryGetProperty("details", out var details)
                    && details.TryGetProperty("boxes", out var boxes) && boxes.GetArrayLength() >= 2)
                {
                    return;
                }
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"the gateway did not list the model on both boxes within {timeout.TotalSeconds:0} s");
    }

    /// <summary>The gateway's forwarded requests per box so far (its edgeserver_gateway_requests_total metric).</summary>
    private static async Task<Dictionary<string, int>> ForwardedAsync(HttpClient http, Uri gateway)
    {
        var counts = new Dictionary<string, int>();
        foreach (var line in (await http.GetStringAsync(new Uri(gateway, "/metrics"))).Split('\n'))
        {
            if (!line.StartsWith("edgeserver_gateway_requests_total{", StringComparison.Ordinal))
            {
                continue;
            }

            var box = line.Split("box=\"", 2)[1].Split('"', 2)[0];
            counts[box] = counts.GetValueOrDefault(box) + (int)double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }

        return counts;
    }

    private static string Section(Models.Spec spec, List<Sample> samples, int streams, int latencyRequests, int rounds, TimeSpan elapsed,
        double loadBefore, double loadAfter, string commandLine)
    {
        var oneBox = Stats.Median(samples.Select(s => s.OneBoxTps).ToList());
        var twoBoxes = Stats.Median(samples.Select(s => s.TwoBoxesTps).ToList());
        var direct = samples.SelectMany(s => s.DirectTtft).ToList();
        var viaGateway = samples.SelectMany(s => s.GatewayTtft).ToList();
        var added = (Stats.Median(viaGateway) - Stats.Median(direct)) * 1000;
        var perRound = string.Join(", ", samples.Select(s => FormattableString.Invariant($"{(Stats.Median(s.GatewayTtft) - Stats.Median(s.DirectTtft)) * 1000:0.0}")));
        var split = string.Join("; ", samples.Select(s => string.Join('/', s.PerBox)));
        var md = new StringBuilder();
        md.AppendLine(Heading);
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"""
            Two boxes simulated on this machine: two EdgeServers, each pinned to a core of its own (`taskset -c 0` and
            `-c 1`) with one decode thread and {streams} slots, serving the same model ({spec.Name}), and a third
            EdgeServer as a pure gateway (no models, `EdgeServer:Gateway`, docs/gateway.md) in front of them. The
            gateway and the load generator are not pinned: on a 2-core machine they share the boxes' cores, which real
            boxes would not. {rounds} rounds, a fresh set of processes each, in {elapsed.TotalMinutes:0.0} min; load average
            {loadBefore:0.00} before and {loadAfter:0.00} after. Measured on {DateTimeOffset.UtcNow:yyyy-MM-dd} with:

            ```sh
            {commandLine}
            ```

            | | one box, straight | two boxes through the gateway | ratio | target |
            |---|---|---|---|---|
            | aggregate tokens/s ({streams} streams to one box, {2 * streams} through the gateway; {spec.MaxTokens} tokens each) | {oneBox:0.0} | {twoBoxes:0.0} | {twoBoxes / oneBox:0.00} | |
            | time to first token p50, ms ({latencyRequests} single requests each per round, 16-token prompt) | {Stats.Median(direct) * 1000:0.0} | {Stats.Median(viaGateway) * 1000:0.0} | | added < 2 ms |
            | time to first token p95, ms | {Stats.Percentile(direct, 0.95) * 1000:0.0} | {Stats.Percentile(viaGateway, 0.95) * 1000:0.0} | | |

            The gateway added {added:0.0} ms to the time to first token at p50 (per round: {perRound} ms). The
            aggregate streams went to the boxes as {split} (box a/box b per round, from the gateway's
            `edgeserver_gateway_requests_total`).
            """);
        return md.ToString();
    }

}
