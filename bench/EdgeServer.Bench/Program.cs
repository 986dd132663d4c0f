using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeServer.Bench;

// Side-by-side benchmark of EdgeServer and llama.cpp's llama-server on the same machine, model, threads and
// slots, in one run. See bench/run.sh, which builds everything and calls:
//   EdgeServer.Bench run --peer-bin DIR --edge-dll PATH --models-dir DIR --out docs/benchmarks.md --chart docs/benchmarks.png

var command = args.FirstOrDefault() ?? "help";
string Opt(string name, string? fallback = null) =>
    Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback ?? throw new ArgumentException($"{name} is required");
int Int(string name, int fallback) => int.Parse(Opt(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

switch (command)
{
    case "models":
        foreach (var spec in Models.All.Concat(Models.Residency).Concat(Models.Memory).Distinct())
        {
            Console.WriteLine(Models.Ensure(spec, Opt("--models-dir")));
        }

        return 0;
    case "quantize-source":
        Console.WriteLine(Models.Ensure(Models.QuantizeSource, Opt("--models-dir")));
        return 0;
    case "run":
        return await Runner.RunAsync(
            peerBin: Opt("--peer-bin"),
            edgeDll: Opt("--edge-dll"),
            modelsDir: Opt("--models-dir"),
            rounds: Int("--rounds", 3),
            only: Opt("--only", ""),
            output: Opt("--out"),
            chart: Opt("--chart"),
            commandLine: Opt("--command", "bench/run.sh"),
            edgeNative: Opt("--edge-native", ""),
            edgeAot: Opt("--edge-aot", ""));
    case "residency":
        return await Residency.RunAsync(
            edgeDll: Opt("--edge-dll"),
            modelsDir: Opt("--models-dir"),
            rounds: Int("--rounds", 3),
            only: Opt("--only", ""),
            output: Opt("--out"),
            threads: Int("--threads", Environment.ProcessorCount),
            settingsFilter: Opt("--settings", ""));
    case "memory":
        return await MemoryScenario.RunAsync(
            peerBin: Opt("--peer-bin"),
            edgeDll: Opt("--edge-dll"),
            modelsDir: Opt("--models-dir"),
            rounds: Int("--rounds", 3),
            output: Opt("--out"),
            threads: Int("--threads", Environment.ProcessorCount),
            commandLine: Opt("--command", "bench/run.sh --memory"),
            only: Opt("--only", ""));
    case "busy":
        return await BusyBox.RunAsync(
            peerBin: Opt("--peer-bin"),
            edgeDll: Opt("--edge-dll"),
            modelsDir: Opt("--models-dir"),
            rounds: Int("--rounds", 3),
            only: Opt("--only", ""),
            output: Opt("--out"),
            polls: Opt("--polls", ""),
            peerThreads: Opt("--peer-threads", ""),
            baselineDll: Opt("--baseline-dll", ""),
            quietLoad: double.Parse(Opt("--quiet-load", "1.0"), CultureInfo.InvariantCulture),
            quietWait: TimeSpan.FromSeconds(Int("--quiet-wait", 600)),
            commandLine: Opt("--command", "bench/run.sh --busy"));
    case "gateway":
        return await GatewayScenario.RunAsync(
            edgeDll: Opt("--edge-dll"),
            modelsDir: Opt("--models-dir"),
            rounds: Int("--rounds", 3),
            streams: Int("--streams", 4),
            latencyRequests: Int("--latency-requests", 30),
            output: Opt("--out"),
            commandLine: Opt("--command", "bench/run.sh --gateway"));
    default:
        Console.Error.WriteLine("usage: EdgeServer.Bench models --models-dir DIR");
        Console.Error.WriteLine("       EdgeServer.Bench gateway --edge-dll PATH --models-dir DIR --out FILE.md [--rounds 3] [--streams 4] [--latency-requests 30] (writes or replaces its section of FILE.md)");
        Console.Error.WriteLine("       EdgeServer.Bench run --peer-bin DIR --edge-dll PATH --models-dir DIR --out FILE.md --chart FILE.png [--rounds 3] [--only NAME] [--edge-aot EXECUTABLE]");
        Console.Error.WriteLine("       EdgeServer.Bench residency --edge-dll PATH --models-dir DIR --out FILE.md [--rounds 3] [--only NAME] [--threads N] [--settings 0,1,2,3,4]");
        Console.Error.WriteLine("       EdgeServer.Bench memory --peer-bin DIR --edge-dll PATH --models-dir DIR --out FILE.md [--rounds 3] [--threads N] [--only SERVER]");
        Console.Error.WriteLine("       EdgeServer.Bench busy --peer-bin DIR --edge-dll PATH --models-dir DIR --out FILE.md [--rounds 3] [--only NAME] [--polls 0,100] [--peer-threads 2,1] [--baseline-dll PATH] [--quiet-load 1.0] [--quiet-wait 600] (writes or replaces its section of FILE.md)");
        return 2;
}

internal static class Runner
{
    private const string Edge = "EdgeServer";
    private const string Peer = "llama-server";
    private const string EdgeAot = "EdgeServer, Native AOT";
    private const int Slots = 8;
    private const int ContextPerSlot = 1536;
    private static readonly int[] Concurrency = [1, 2, 4, 8];
    private const int JsonChars = 256;

    /// <summary>Another llama.cpp build for EdgeServer (--native-dir), e.g. the peer's own, to compare the servers alone.</summary>
    private static string s_edgeNative = "";

    /// <summary>A Native AOT publish of EdgeServer (--edge-aot), measured as a third server beside the other two.</summary>
    private static string s_edgeAot = "";

    public static async Task<int> RunAsync(string peerBin, string edgeDll, string modelsDir, int rounds, string only, string output, string chart, string commandLine,
        string edgeNative = "", string edgeAot = "")
    {
        s_edgeNative = edgeNative;
        s_edgeAot = edgeAot;
        string[] servers = edgeAot.Length > 0 ? [Edge, Peer, EdgeAot] : [Edge, Peer];
        var threads = Environment.ProcessorCount;
        var report = new StringBuilder();
        var chartSeries = new List<(string Label, double[] Xs, double[] Ys)>();
        var started = DateTimeOffset.UtcNow;
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };

        foreach (var spec in Models.All.Where(m => only.Length == 0 || m.Name.Contains(only, StringComparison.Ordinal)))
        {
            var model = Models.Ensure(spec, modelsDir);
            var sizeMiB = new FileInfo(model).Length / 1048576.0;
            Console.Error.WriteLine($"== {spec.Name} ({sizeMiB:0} MiB)");
            var ceiling = await LlamaBenchAsync(Path.Combine(peerBin, "llama-bench"), model, threads);
            var samples = new Samples();
            for (var round = 0; round < rounds; round++)
            {
                // Each server goes first in turn (with two: EdgeServer first in odd rounds, llama-server in even ones).
                var order = servers.Skip(round % servers.Length).Concat(servers.Take(round % servers.Length)).ToArray();
                foreach (var server in order)
                {
                    Console.Error.WriteLine($"   round {round + 1}/{rounds}: {server}");
                    await RoundAsync(server, spec, model, peerBin, edgeDll, threads, round, samples, http);
                }
            }

            Append(report, spec, sizeMiB, ceiling, samples, threads);
            foreach (var server in servers)
            {
                chartSeries.Add(($"{server}, {spec.Name}", Concurrency.Select(c => (double)c).ToArray(),
                    Concurrency.Select(c => Stats.Median(samples[server, $"aggregate_{c}"])).ToArray()));
            }
        }

        var elapsed = DateTimeOffset.UtcNow - started;
        await File.WriteAllTextAsync(output, Document(report.ToString(), threads, rounds, elapsed, commandLine, Path.GetFileName(chart)) + KeptSection(output));
        Chart.Write(chart, chartSeries);
        Console.Error.WriteLine($"wrote {output} and {chart} in {elapsed.TotalMinutes:0.0} min");
        return 0;
    }

    private static async Task RoundAsync(string server, Models.Spec spec, string model, string peerBin, string edgeDll, int threads, int round,
        Samples samples, HttpClient http)
    {
        var port = ServerProcess.FreePort();
        var empty = Directory.CreateTempSubdirectory("edgeserver-bench-models-");
        var clock = Stopwatch.StartNew();
        await using var process = server != Peer
            ? ServerProcess.StartEdge(server, server == EdgeAot ? s_edgeAot : edgeDll,
            [
                "--urls", $"http://127.0.0.1:{port}", "--models-dir", empty.FullName,
                "--EdgeServer:Models:0:Id=bench", $"--EdgeServer:Models:0:Path={model}",
                "--threads", $"{threads}", "--slots", $"{Slots}", "--ctx-size", $"{ContextPerSlot}",
                "--EdgeServer:Scheduler:QueueCapacity=64", "--Logging:LogLevel:Default=Warning",
                .. (s_edgeNative.Length > 0 ? new[] { "--native-dir", s_edgeNative } : []),
            ], port)
            : ServerProcess.Start(server, Path.Combine(peerBin, "llama-server"),
            [
                "-m", model, "-a", "bench", "--host", "127.0.0.1", "--port", $"{port}", "-t", $"{threads}", "-tb", $"{threads}",
                "-c", $"{Slots * ContextPerSlot}", "--parallel", $"{Slots}", "--no-webui",
            ], port);
        try
        {
            var load = new LoadGenerator(http, process.BaseAddress);
            await process.WaitHealthyAsync(http, TimeSpan.FromMinutes(5));
            await load.CompleteAsync(LoadGenerator.Prompt(16, -1), 1);
            samples.Add(server, "cold_start_s", clock.Elapsed.TotalSeconds);
            samples.Add(server, "rss_after_load_mib", process.Memory().Rss / 1048576.0);

            var seed = round * 100_000 + (server == Peer ? 50_000 : 0);
            for (var i = 0; i < 3; i++)
            {
                var r = await load.CompleteAsync(LoadGenerator.Prompt(32, seed++), spec.MaxTokens);
                samples.Add(server, "decode_tps", r.DecodeTokensPerSecond);
            }

            for (var i = 0; i < 2; i++)
            {
                var r = await load.JsonSchemaAsync(LoadGenerator.Prompt(32, seed++), JsonChars);
                samples.Add(server, "json_tps", r.DecodeTokensPerSecond);
            }

            for (var i = 0; i < 5; i++)
            {
                var r = await load.CompleteAsync(LoadGenerator.Prompt(112, seed++), 4);
                samples.Add(server, "ttft_112_s", r.TimeToFirstToken.TotalSeconds);
            }

            for (var i = 0; i < 2; i++)
            {
                var r = await load.CompleteAsync(LoadGenerator.Prompt(512, seed++), 1);
                samples.Add(server, "pp512_tps", 512 / r.TimeToFirstToken.TotalSeconds);
            }

            foreach (var c in Concurrency)
            {
                samples.Add(server, $"aggregate_{c}", await load.AggregateAsync(c, 32, spec.MaxTokens, seed));
                seed += c;
            }

            // A 1000-token conversation: the second turn with the first turn's KV cached, and the same length cold.
            var firstTurn = LoadGenerator.Prompt(1000, seed++);
            var reply = await load.CompleteAsync(firstTurn, 16);
            var secondTurn = firstTurn + reply.Text + " " + LoadGenerator.Prompt(18, seed++);
            samples.Add(server, "turn2_cached_ttft_s", (await load.CompleteAsync(secondTurn, 4)).TimeToFirstToken.TotalSeconds);
            samples.Add(server, "turn2_cold_ttft_s", (await load.CompleteAsync(LoadGenerator.Prompt(1040, seed++), 4)).TimeToFirstToken.TotalSeconds);

            samples.Add(server, "peak_rss_mib", process.Memory().Peak / 1048576.0);
            await Task.Delay(TimeSpan.FromSeconds(3));
            samples.Add(server, "idle_rss_mib", process.Memory().Rss / 1048576.0);
        }
        catch (HttpRequestException)
        {
            Console.Error.WriteLine(process.Describe());
            throw;
        }
        finally
        {
            empty.Delete(recursive: true);
        }
    }

    private static async Task<(double Pp512, double Tg128)> LlamaBenchAsync(string llamaBench, string model, int threads)
    {
        var info = new ProcessStartInfo(llamaBench) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-m", model, "-t", $"{threads}", "-p", "512", "-n", "128", "-r", "3", "-o", "json" })
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var json = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"llama-bench failed: {await stderr}");
        }

        double pp = 0, tg = 0;
        foreach (var test in JsonDocument.Parse(json).RootElement.EnumerateArray())
        {
            var avg = test.GetProperty("avg_ts").GetDouble();
            if (test.GetProperty("n_prompt").GetInt32() == 512)
            {
                pp = avg;
            }
            else if (test.GetProperty("n_gen").GetInt32() == 128)
            {
                tg = avg;
            }
        }

        return (pp, tg);
    }

    private static void Append(StringBuilder md, Models.Spec spec, double sizeMiB, (double Pp512, double Tg128) ceiling, Samples s, int threads)
    {
        md.AppendLine(CultureInfo.InvariantCulture, $"### {spec.Name} ({sizeMiB:0} MiB file, {spec.Type})");
        md.AppendLine();
        var aot = s_edgeAot.Length > 0;
        md.AppendLine(aot
            ? "| metric | EdgeServer | llama-server | EdgeServer / llama-server | EdgeServer, Native AOT | Native AOT / llama-server | target |"
            : "| metric | EdgeServer | llama-server | EdgeServer / llama-server | target |");
        md.AppendLine(aot ? "|---|---|---|---|---|---|---|" : "|---|---|---|---|---|");
        void Row(string label, string key, string format, string target, bool lowerIsBetter = false, Func<List<double>, double>? stat = null)
        {
            stat ??= Stats.Median;
            var p = stat(s[Peer, key]);
            string Value(string server) => stat(s[server, key]).ToString(format, CultureInfo.InvariantCulture);
            string Ratio(string server) => p == 0 ? "n/a" : (stat(s[server, key]) / p).ToString("0.00", CultureInfo.InvariantCulture);
            md.AppendLine(aot
                ? $"| {label} | {Value(Edge)} | {Value(Peer)} | {Ratio(Edge)} | {Value(EdgeAot)} | {Ratio(EdgeAot)} | {target} |"
                : $"| {label} | {Value(Edge)} | {Value(Peer)} | {Ratio(Edge)} | {target} |");
        }

        Row($"single-stream decode, tokens/s ({spec.MaxTokens} tokens)", "decode_tps", "0.0", ">= 1.00");
        Row($"JSON-schema decode, tokens/s (a {JsonChars}-character string, grammar-constrained)", "json_tps", "0.0", "");
        Row("time to first token p50, s (112-token prompt)", "ttft_112_s", "0.000", "<= 1.00", true);
        Row("time to first token p95, s (112-token prompt)", "ttft_112_s", "0.000", "", true, v => Stats.Percentile(v, 0.95));
        Row("prompt processing, tokens/s (512-token prompt)", "pp512_tps", "0.0", "");
        foreach (var c in Concurrency)
        {
            Row($"aggregate tokens/s, {c} stream{(c == 1 ? "" : "s")}", $"aggregate_{c}", "0.0", c >= 4 ? ">= 1.00" : "");
        }

        Row("second turn of a 1000-token chat, TTFT with cache, s", "turn2_cached_ttft_s", "0.000", "", true);
        Row("second turn of a 1000-token chat, TTFT cold, s", "turn2_cold_ttft_s", "0.000", "", true);
        Row("resident memory after load, MiB", "rss_after_load_mib", "0", "", true);
        Row("resident memory idle after the run, MiB", "idle_rss_mib", "0", "", true);
        Row("peak resident memory, MiB", "peak_rss_mib", "0", "", true);
        Row("cold start to first completion, s", "cold_start_s", "0.00", "<= 1.00", true);
        md.AppendLine();
        var edgeDecode = Stats.Median(s[Edge, "decode_tps"]);
        var peerDecode = Stats.Median(s[Peer, "decode_tps"]);
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Engine ceiling (llama-bench, {threads} threads, same model): pp512 {ceiling.Pp512:0.0} t/s, tg128 {ceiling.Tg128:0.0} t/s. " +
            $"Single-stream decode as a fraction of tg128: EdgeServer {edgeDecode / ceiling.Tg128:0.00} (target >= 0.97), " +
            $"{(aot ? FormattableString.Invariant($"Native AOT {Stats.Median(s[EdgeAot, "decode_tps"]) / ceiling.Tg128:0.00}, ") : "")}" +
            $"llama-server {peerDecode / ceiling.Tg128:0.00}.");
        md.AppendLine();
        var edgeCache = Stats.Median(s[Edge, "turn2_cached_ttft_s"]) / Stats.Median(s[Edge, "turn2_cold_ttft_s"]);
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Prefix cache: EdgeServer's second-turn TTFT with the cache is {edgeCache:0.00} of the cold one (target <= 0.20); resident memory above the file's size after load: " +
            $"EdgeServer {Stats.Median(s[Edge, "rss_after_load_mib"]) - sizeMiB:0} MiB, " +
            $"{(aot ? FormattableString.Invariant($"Native AOT {Stats.Median(s[EdgeAot, "rss_after_load_mib"]) - sizeMiB:0} MiB, ") : "")}" +
            $"llama-server {Stats.Median(s[Peer, "rss_after_load_mib"]) - sizeMiB:0} MiB.");
        md.AppendLine();
    }

    private static string Document(string tables, int threads, int rounds, TimeSpan elapsed, string commandLine, string chartFile)
    {
        var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
        return $"""
            # Benchmarks: EdgeServer and llama-server side by side

            Both servers run the same GGUF file on the same machine with the same threads ({threads}), slots ({Slots}) and
            context per slot ({ContextPerSlot} tokens), measured in one run. llama-server, llama-bench and llama-quantize are built
            from the llama.cpp source inside `node-llama-cpp@3.22.1` (release v0.5.0, the release EdgeServer's bundled
            libraries come from; CPU, Release, `GGML_NATIVE=ON`). EdgeServer runs its bundled libraries (the
            `@node-llama-cpp` builds, with ggml's per-CPU variants).

            The models are made by EdgeServer's own GGUF writer with real shapes and random weights (Llama 3.2 1B in
            Q4_0, MobileLLM 125M in Q8_0): speed and memory do not depend on weight values, only on shapes and types.
            Every request is a streamed `/v1/completions` call with greedy sampling and `ignore_eos`, so each server
            generates exactly the requested number of tokens; prompts are unique per request (so no prompt cache helps,
            except in the second-turn rows, which are about it). The servers are started {rounds} times each, each one
            first in turn, and each figure is the median over those starts (time to first token: p50 and p95 over 5
            requests per start). "Target" is what EdgeServer aims for.{AotNote()}

            Machine: {cpu}, {Environment.ProcessorCount} cores, {Math.Round(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1073741824.0)} GiB.
            Measured on {DateTimeOffset.UtcNow:yyyy-MM-dd}; the run took {elapsed.TotalMinutes:0} minutes.
            Reproduce from a clean clone (it builds the peer and the models on first use, and caches both outside the
            repository; from a clean clone with nothing cached the whole command took 27 minutes on 2 cores):

            ```sh
            {commandLine}
            ```

            {tables}
            Where EdgeServer falls short of the targets, and why (with a run on llama-server's own libraries that separates the
            server from the libraries): [benchmarks-analysis.md](benchmarks-analysis.md).

            ![Aggregate generated tokens/s against concurrent streams]({chartFile})

            What the metrics mean: decode tokens/s is (generated tokens - 1) / (time from the first to the last token) of one
            stream; time to first token is from sending the request to the first token's event, as the client sees it;
            prompt processing is 512 / time to first token with a 512-token prompt; aggregate tokens/s is all tokens
            generated by N simultaneous streams over the wall time; cold start is from process start to the end of the first
            completion (EdgeServer loads a model on its first request, llama-server before it reports healthy); resident
            memory is VmRSS, and the peak VmHWM.
            """;
    }

    private static string AotNote() => s_edgeAot.Length == 0 ? "" : "\n\n" + """
            "EdgeServer" is the publish the Dockerfile and the systemd install ship (framework-dependent here, with
            ReadyToRun code, run by `dotnet`); "EdgeServer, Native AOT" is the same code published with Native AOT
            (`-p:PublishAot=true`: one executable, compiled ahead of time, no JIT), the build for the smallest boxes
            (docs/edge.md).
            """;

    /// <summary>
    /// The sections written by other commands (residency, from its output with its own method; memory, by its command)
    /// are kept as they are, from the first of them to the end.
    /// </summary>
    private static string KeptSection(string output)
    {
        string[] headings = ["## Resident memory: mmap and repacking", MemoryScenario.Heading];
        var existing = File.Exists(output) ? File.ReadAllText(output) : "";
        var at = headings.Select(h => existing.IndexOf("\n" + h, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        return at < 0 ? "" : "\n" + existing[at..];
    }


    private sealed class Samples
    {
        private readonly Dictionary<(string, string), List<double>> _values = [];

        public List<double> this[string server, string metric] => _values.TryGetValue((server, metric), out var v) ? v : [];

        public void Add(string server, string metric, double value)
        {
            if (!_values.TryGetValue((server, metric), out var list))
            {
                _values[(server, metric)] = list = [];
            }

            list.Add(value);
        }
    }
}

internal static class Chart
{
    public static void Write(string path, List<(string Label, double[] Xs, double[] Ys)> series)
    {
        var plot = new ScottPlot.Plot();
        foreach (var (label, xs, ys) in series)
        {
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = label;
            line.LinePattern = label.StartsWith("llama-server", StringComparison.Ordinal) ? ScottPlot.LinePattern.Dashed : ScottPlot.LinePattern.Solid;
        }

        plot.Title("Aggregate generated tokens/s against concurrent streams");
        plot.XLabel("concurrent streams");
        plot.YLabel("tokens/s (all streams)");
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        plot.SavePng(path, 900, 540);
    }
}
