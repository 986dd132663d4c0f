using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Bench;

/// <summary>
/// Three models requested in turn on servers that may hold two of them (docs/benchmarks.md, "Memory: three models,
/// room for two"): EdgeServer with a memory budget, llama-server in router mode with <c>--models-max 2</c> (mapped,
/// its default, and read). Records each server's peak resident memory over all its processes, the time from a request
/// for a model that is not loaded to its first token, which model was unloaded, resident memory against the loaded
/// models' file + KV cache, and whether a server or one of its processes died.
/// </summary>
internal static class MemoryScenario
{
    public const string Heading = "## Memory: three models, room for two";
    private const int Slots = 2;
    private const int ContextPerSlot = 2048;
    private const int PromptTokens = 16;
    private const int MaxTokens = 8;

    /// <summary>A, B, C, A, B, C: with room for two and least-recently-used eviction, every request from the third on is a switch that unloads one.</summary>
    private static readonly int[] Sequence = [0, 1, 2, 0, 1, 2];

    private sealed record Contender(string Label, string Limit, Func<string, int, ServerProcess> Start);

    private sealed record Listing(string[] Loaded, double? UsedMiB, string[] Failed);

    private sealed record Step(string Model, string[] Unloaded, string[] Loaded, double FirstTokenS, double LoadedFirstTokenS, double RssMiB, double AnonMiB, double FileKvMiB, double? CountedMiB);

    private sealed record Round(double BaseRssMiB, List<Step> Steps, Sampler.Peaks Peaks, string Ending, double LoadAverage);

    public static async Task<int> RunAsync(string peerBin, string edgeDll, string modelsDir, int rounds, string output, int threads, string commandLine, string only = "")
    {
        var started = DateTimeOffset.UtcNow;
        var loadBefore = File.ReadAllText("/proc/loadavg").Split(' ')[..3];
        var specs = Models.Memory;
        var directory = Directory.CreateTempSubdirectory("edgeserver-bench-memory-");
        try
        {
            // Both servers name a model after its file in the folder they are given; the folder links to the cached files.
            foreach (var spec in specs)
            {
                File.CreateSymbolicLink(Path.Combine(directory.FullName, spec.Name + ".gguf"), Models.Ensure(spec, modelsDir));
            }

            var names = specs.Select(s => s.Name).ToArray();
            var fileMiB = specs.ToDictionary(s => s.Name, s => new FileInfo(Models.Ensure(s, modelsDir)).Length / 1048576.0);
            var kvMiB = specs.ToDictionary(s => s.Name, s => Models.KvCacheMiB(s, Slots, ContextPerSlot));
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };

            var estimates = await EstimatesAsync(edgeDll, directory.FullName, threads, http);
            var sorted = names.Select(n => estimates[n]).Order().ToArray();
            var budgetMiB = Math.Ceiling(sorted[1] + sorted[2] + sorted[0] / 2);
            Console.Error.WriteLine(FormattableString.Invariant($"estimates {string.Join(", ", names.Select(n => $"{n} {estimates[n]:0}"))} MiB; budget {budgetMiB:0} MiB"));

            string[] common = ["--host", "127.0.0.1", "-t", $"{threads}", "-tb", $"{threads}", "-c", $"{Slots * ContextPerSlot}", "--parallel", $"{Slots}", "--no-webui", "--models-max", "2"];
            Contender[] contenders =
            [
                new("EdgeServer", FormattableString.Invariant($"`Memory:Budget` {budgetMiB:0} MiB"), (dir, port) => ServerProcess.StartEdge("EdgeServer", edgeDll,
                [
                    "--urls", $"http://127.0.0.1:{port}", "--models-dir", dir, "--threads", $"{threads}",
                    "--slots", $"{Slots}", "--ctx-size", $"{ContextPerSlot}", FormattableString.Invariant($"--EdgeServer:Memory:Budget={budgetMiB:0}mb"),
                    "--EdgeServer:Memory:KeepAlive=-1", "--Logging:LogLevel:Default=Warning",
                ], port)),
                new("llama-server", "`--models-max 2`", (dir, port) => ServerProcess.Start("llama-server", Path.Combine(peerBin, "llama-server"),
                    ["--models-dir", dir, "--port", $"{port}", .. common], port)),
                new("llama-server --load-mode none", "`--models-max 2`", (dir, port) => ServerProcess.Start("llama-server --load-mode none", Path.Combine(peerBin, "llama-server"),
                    ["--models-dir", dir, "--port", $"{port}", "--load-mode", "none", .. common], port)),
            ];

            contenders = contenders.Where(c => only.Length == 0 || c.Label.Contains(only, StringComparison.Ordinal)).ToArray();
            var results = contenders.ToDictionary(c => c, _ => new List<Round>());
            for (var round = 0; round < rounds; round++)
            {
                // The order rotates between rounds, so a slow spell of the machine does not fall on one server.
                for (var i = 0; i < contenders.Length; i++)
                {
                    var contender = contenders[(i + round) % contenders.Length];
                    Console.Error.WriteLine($"== round {round + 1}/{rounds}: {contender.Label}");
                    var result = await RoundAsync(contender, directory.FullName, names, fileMiB, kvMiB, round * 1000, http);
                    Console.Error.WriteLine(FormattableString.Invariant(
                        $"   load average {result.LoadAverage:0.0}; base {result.BaseRssMiB:0} MiB, peak {result.Peaks.RssMiB:0} MiB (anonymous {result.Peaks.AnonMiB:0}), {result.Ending}; first token after each request: {string.Join(", ", result.Steps.Select(s => $"{s.Model.Split('-')[0]} {s.FirstTokenS:0.00} s (then {s.LoadedFirstTokenS:0.000} s)"))}"));
                    results[contender].Add(result);
                }
            }

            var elapsed = DateTimeOffset.UtcNow - started;
            var loadAfter = File.ReadAllText("/proc/loadavg").Split(' ')[..3];
            var section = Section(specs, fileMiB, kvMiB, estimates, budgetMiB, contenders, results, threads, rounds, elapsed, loadBefore, loadAfter, commandLine);
            await File.WriteAllTextAsync(output, Markdown.ReplaceSection(File.Exists(output) ? await File.ReadAllTextAsync(output) : "", Heading, section));
            Console.Error.WriteLine($"wrote the section \"{Heading[3..]}\" of {output} in {elapsed.TotalMinutes:0.0} min");
            return 0;
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>What EdgeServer estimates each model takes (its <c>memory_bytes</c> before loading), in MiB.</summary>
    private static async Task<Dictionary<string, double>> EstimatesAsync(string edgeDll, string directory, int threads, HttpClient http)
    {
        var port = ServerProcess.FreePort();
        await using var process = ServerProcess.StartEdge("EdgeServer", edgeDll,
        [
            "--urls", $"http://127.0.0.1:{port}", "--models-dir", directory, "--threads", $"{threads}",
            "--slots", $"{Slots}", "--ctx-size", $"{ContextPerSlot}", "--Logging:LogLevel:Default=Warning",
        ], port);
        await process.WaitHealthyAsync(http, TimeSpan.FromMinutes(2));
        using var doc = JsonDocument.Parse(await http.GetStringAsync(new Uri(process.BaseAddress, "/v1/models")));
        return doc.RootElement.GetProperty("data").EnumerateArray().ToDictionary(
            m => m.GetProperty("id").GetString()!,
            m => m.GetProperty("details").GetProperty("memory_bytes").GetInt64() / 1048576.0);
    }

    private static async Task<Round> RoundAsync(Contender contender, string directory, string[] names, Dictionary<string, double> fileMiB,
        Dictionary<string, double> kvMiB, int seed, HttpClient http)
    {
        var port = ServerProcess.FreePort();
        var loadAverage = double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);
        var kernelLog = KernelLog();
        var steps = new List<Step>();
        await using var process = contender.Start(directory, port);
        using var sampler = new Sampler(process);
        var ending = "";
        double baseRss = 0;
        try
        {
            await process.WaitHealthyAsync(http, TimeSpan.FromMinutes(2));
            await Task.Delay(TimeSpan.FromSeconds(1));
            baseRss = TreeResidency(process).Rss;
            foreach (var index in Sequence)
            {
                var model = names[index];
                var before = await ListAsync(http, process);
                var load = new LoadGenerator(http, process.BaseAddress, model);
                var first = await load.CompleteAsync(LoadGenerator.Prompt(PromptTokens, seed++), MaxTokens);
                var again = await load.CompleteAsync(LoadGenerator.Prompt(PromptTokens, seed++), MaxTokens);
                var after = await ListAsync(http, process);
                var (rss, anon) = TreeResidency(process);
                steps.Add(new Step(model, before.Loaded.Except(after.Loaded).ToArray(), after.Loaded, first.TimeToFirstToken.TotalSeconds,
                    again.TimeToFirstToken.TotalSeconds, rss, anon, after.Loaded.Sum(m => fileMiB[m] + kvMiB[m]), after.UsedMiB));
            }

            var final = await ListAsync(http, process);
            ending = final.Failed.Length > 0 ? "model processes that failed: " + string.Join(", ", final.Failed) : "";
        }
        catch (Exception e) when (e is HttpRequestException or IOException or InvalidOperationException or TaskCanceledException)
        {
            ending = $"stopped at step {steps.Count + 1}: {e.Message}";
            Console.Error.WriteLine(process.Describe());
        }

        var peaks = await sampler.StopAsync();
        var killed = KernelLog()?.Skip(kernelLog?.Length ?? 0).Where(l => l.Contains("Killed process", StringComparison.Ordinal)
            && peaks.Processes.Any(pid => l.Contains($"Killed process {pid} ", StringComparison.Ordinal))).ToArray();
        var parts = new List<string>
        {
            process.ExitCode is { } code ? $"server exited with code {code}" : "server still running",
            killed is null ? "kernel log not readable" : killed.Length == 0 ? "no OOM kill in the kernel log" : "OOM-killed: " + string.Join("; ", killed),
        };
        if (ending.Length > 0)
        {
            parts.Add(ending);
        }

        return new Round(baseRss, steps, peaks, string.Join(", ", parts), loadAverage);
    }

    /// <summary>Resident memory of the server's processes together, and its anonymous part, in MiB.</summary>
    private static (double Rss, double Anonymous) TreeResidency(ServerProcess process)
    {
        double rss = 0, anonymous = 0;
        foreach (var pid in process.Tree())
        {
            try
            {
                var (r, a) = ServerProcess.Residency(pid);
                rss += r;
                anonymous += a;
            }
            catch (IOException)
            {
                // ended meanwhile
            }
        }

        return (rss, anonymous);
    }

    /// <summary>The loaded models, the budget's use (EdgeServer) and the model processes that failed (llama-server's router).</summary>
    private static async Task<Listing> ListAsync(HttpClient http, ServerProcess process)
    {
        using var doc = JsonDocument.Parse(await http.GetStringAsync(new Uri(process.BaseAddress, "/v1/models")));
        var loaded = new List<string>();
        var failed = new List<string>();
        foreach (var model in doc.RootElement.GetProperty("data").EnumerateArray())
        {
            var id = model.GetProperty("id").GetString()!;
            // EdgeServer: details.status; llama-server's router: status.value, with failed and exit_code for a model process that died.
            var state = model.TryGetProperty("details", out var details) ? details.GetProperty("status").GetString()
                : model.TryGetProperty("status", out var status) ? status.GetProperty("value").GetString() : null;
            if (state == "loaded")
            {
                loaded.Add(id);
            }

            if (model.TryGetProperty("status", out var s) && s.ValueKind == JsonValueKind.Object && s.TryGetProperty("failed", out var f) && f.ValueKind == JsonValueKind.True)
            {
                failed.Add($"{id} (exit code {(s.TryGetProperty("exit_code", out var c) ? c.ToString() : "?")})");
            }
        }

        double? used = doc.RootElement.TryGetProperty("memory", out var memory) ? memory.GetProperty("used_bytes").GetInt64() / 1048576.0 : null;
        return new Listing(loaded.Order(StringComparer.Ordinal).ToArray(), used, failed.ToArray());
    }

    /// <summary>The kernel's log lines (for OOM kills), or null where this user may not read them.</summary>
    private static string[]? KernelLog()
    {
        try
        {
            var info = new ProcessStartInfo("dmesg") { RedirectStandardOutput = true, RedirectStandardError = true };
            using var dmesg = Process.Start(info)!;
            var lines = dmesg.StandardOutput.ReadToEnd().Split('\n');
            dmesg.WaitForExit();
            return dmesg.ExitCode == 0 ? lines : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    /// <summary>
    /// Samples the resident memory of the server's processes every 100 ms (VmRSS and RssAnon summed over them) and
    /// keeps each process's own peak (VmHWM), so that a model process that has ended still counts.
    /// </summary>
    private sealed class Sampler : IDisposable
    {
        public sealed record Peaks(double RssMiB, double AnonMiB, double ProcessMiB, int[] Processes);

        private readonly ServerProcess _process;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task<Peaks> _loop;

        public Sampler(ServerProcess process)
        {
            _process = process;
            _loop = Task.Run(LoopAsync);
        }

        public async Task<Peaks> StopAsync()
        {
            await _stop.CancelAsync();
            return await _loop;
        }

        public void Dispose() => _stop.Dispose();

        private async Task<Peaks> LoopAsync()
        {
            double peakRss = 0, peakAnon = 0;
            var processPeaks = new Dictionary<int, double>();
            IReadOnlyList<int> tree = [];
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
            for (var tick = 0; !_stop.IsCancellationRequested; tick++)
            {
                if (tick % 5 == 0)
                {
                    tree = _process.Tree(); // a walk of /proc: every 0.5 s, not every sample
                }

                double rss = 0, anon = 0;
                foreach (var pid in tree)
                {
                    try
                    {
                        var status = File.ReadAllLines($"/proc/{pid}/status");
                        rss += Kib(status, "VmRSS:");
                        anon += Kib(status, "RssAnon:");
                        processPeaks[pid] = Math.Max(processPeaks.GetValueOrDefault(pid), Kib(status, "VmHWM:"));
                    }
                    catch (IOException)
                    {
                        // ended since the last walk
                    }
                }

                peakRss = Math.Max(peakRss, rss);
                peakAnon = Math.Max(peakAnon, anon);
                try
                {
                    await timer.WaitForNextTickAsync(_stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            return new Peaks(peakRss, peakAnon, processPeaks.Values.DefaultIfEmpty(0).Max(), processPeaks.Keys.ToArray());
        }

        private static double Kib(string[] status, string key) =>
            status.FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal)) is { } line
                ? long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0
                : 0;
    }

    private static string Section(Models.Spec[] specs, Dictionary<string, double> fileMiB, Dictionary<string, double> kvMiB, Dictionary<string, double> estimates,
        double budgetMiB, Contender[] contenders, Dictionary<Contender, List<Round>> results, int threads, int rounds, TimeSpan elapsed,
        string[] loadBefore, string[] loadAfter, string commandLine)
    {
        var md = new StringBuilder();
        string F(double v, string format = "0") => v.ToString(format, CultureInfo.InvariantCulture);
        string Short(string name) => name.Split('-')[0];
        md.AppendLine(Heading);
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"""
            Three models are requested in turn, A, B, C, A, B, C, each by two streamed `/v1/completions` calls
            ({PromptTokens}-token prompt, {MaxTokens} tokens), on a server that may hold two of them. The time to the first token of
            the first call is the switch time (for a model that is not loaded: unloading another, loading it, the
            prompt); the second call's is the time to first token with the model loaded. Both servers run {Slots} slots of
            {ContextPerSlot} tokens per model and {threads} threads; a fresh server per round, {rounds} rounds, servers in rotating
            order; figures are medians over the rounds.

            - EdgeServer: `EdgeServer:Memory:Budget` set to its own estimates of the two larger models plus half the
              smallest ({F(budgetMiB)} MiB), so any two fit and three never do; `KeepAlive` `-1`, so only the budget unloads.
            - llama-server: this release has a router mode (`--models-dir`, one child process per loaded model) whose only
              limit is a count, `--models-max 2`: when a third model is requested it stops the least recently used idle
              child (and waits for it to exit) before starting the next. Nothing weighs the models' memory against
              each other (`--fit`, on by default, only sizes one instance's unset settings, such as the context, to
              the memory free when it starts; the context is set here). It runs
              with its defaults (file mapped, weights repacked) and again with `--load-mode none` (read, not mapped:
              this release's spelling of `--no-mmap`, which it no longer accepts); the other arguments
              (`-c {Slots * ContextPerSlot} --parallel {Slots} -t {threads}`) are passed to every child.
            - Memory: resident memory (RSS) of the server's process and all its children together: sampled every
              0.1 s from `/proc/PID/status` for the peak, and read from `/proc/PID/smaps_rollup` after each step. The
              largest single-process peak is that process's own `VmHWM`. File + KV is the loaded models' file sizes plus
              their F16 KV caches ({Slots} x {ContextPerSlot} cells, capped at the training length).
            - Limits: nothing outside the servers enforced a limit. On this machine cgroup v2 has no memory controller
              and the cgroup v1 memory hierarchy is the system's own, so the benchmark made no cgroup and no server ran
              under a `memory.max`; "killed" is whether the server process was still running at the end, what
              llama-server's router reports about its children, and OOM kills of any of the server's processes in the
              kernel log. The peak is what a limit would have had to allow. The model files were in the page cache
              (warm), as after any earlier load.

            """);
        md.AppendLine("| model | file, MiB | KV cache, MiB | file + KV, MiB | EdgeServer's estimate, MiB |");
        md.AppendLine("|---|---|---|---|---|");
        foreach (var spec in specs)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"| {spec.Name} ({spec.Type}) | {F(fileMiB[spec.Name])} | {F(kvMiB[spec.Name])} | {F(fileMiB[spec.Name] + kvMiB[spec.Name])} | {F(estimates[spec.Name])} |");
        }

        md.AppendLine();
        md.AppendLine("| | " + string.Join(" | ", contenders.Select(c => c.Label)) + " |");
        md.AppendLine("|---|" + string.Concat(contenders.Select(_ => "---|")));
        void Row(string label, Func<Contender, List<Round>, string> cell) =>
            md.AppendLine("| " + label + " | " + string.Join(" | ", contenders.Select(c => cell(c, results[c]))) + " |");
        string Range(IEnumerable<double> values, string format)
        {
            var v = values.ToArray();
            return v.Length == 0 ? "n/a" : $"{F(Median(v), format)} ({F(v.Min(), format)}-{F(v.Max(), format)})";
        }

        IEnumerable<Step> StepsAt(List<Round> r, int from, int to) => r.SelectMany(x => x.Steps.Where((_, i) => i >= from && i < to));
        Row("limit", (c, _) => c.Limit);
        Row("load average (1 min) at the start of each round", (_, r) => string.Join(", ", r.Select(x => F(x.LoadAverage, "0.0"))));
        Row("resident before any model, MiB", (_, r) => F(Median(r.Select(x => x.BaseRssMiB))));
        Row("**peak resident memory, all processes, MiB** (min-max)", (_, r) => Range(r.Select(x => x.Peaks.RssMiB), "0"));
        Row("peak of its anonymous part, MiB", (_, r) => F(Median(r.Select(x => x.Peaks.AnonMiB))));
        Row("largest single-process peak (VmHWM), MiB", (_, r) => F(Median(r.Select(x => x.Peaks.ProcessMiB))));
        Row("first token, first two loads (no unloading), s", (_, r) => Range(StepsAt(r, 0, 2).Select(s => s.FirstTokenS), "0.00"));
        Row("**switch: first token when another model must be unloaded, s** (min-max)", (_, r) => Range(StepsAt(r, 2, Sequence.Length).Select(s => s.FirstTokenS), "0.00"));
        Row("first token with the model loaded, s", (_, r) => Range(r.SelectMany(x => x.Steps).Select(s => s.LoadedFirstTokenS), "0.000"));
        Row("unloaded the least recently used model each time", (_, r) => r.All(x => x.Steps.Count == Sequence.Length && x.Steps.Skip(2).All(s => s.Unloaded.Length == 1 && s.Loaded.Length == 2 && s.Loaded.Contains(s.Model))
            && x.Steps.Skip(2).Select((s, i) => s.Unloaded[0] == x.Steps[i].Model).All(b => b)) ? "yes" : "**no** (see the steps)");
        Row("**killed or exited**", (_, r) => string.Join("; ", r.Select(x => x.Ending).Distinct()));
        Row("RSS / (file + KV), one model loaded", (_, r) => F(Median(StepsAt(r, 0, 1).Select(s => s.RssMiB / s.FileKvMiB)), "0.00"));
        Row("**RSS / (file + KV), two models loaded**", (_, r) => F(Median(StepsAt(r, 1, Sequence.Length).Select(s => s.RssMiB / s.FileKvMiB)), "0.00"));
        Row("(RSS - resident before any model) / (file + KV), one model", (_, r) => F(Median(r.Where(x => x.Steps.Count > 0).Select(x => (x.Steps[0].RssMiB - x.BaseRssMiB) / x.Steps[0].FileKvMiB)), "0.00"));
        Row("(RSS - resident before any model) / (file + KV), two models", (_, r) => F(Median(r.SelectMany(x => x.Steps.Skip(1).Select(s => (s.RssMiB - x.BaseRssMiB) / s.FileKvMiB))), "0.00"));
        Row("RSS with the same two models loaded, after step 3 and after step 6, MiB", (_, r) =>
            $"{F(Median(StepsAt(r, 2, 3).Select(s => s.RssMiB)))} and {F(Median(StepsAt(r, 5, 6).Select(s => s.RssMiB)))}");
        md.AppendLine();

        md.AppendLine("Each step (medians over the rounds; the models loaded afterwards and the one unloaded are those of most rounds):");
        md.AppendLine();
        md.AppendLine("| step | requested | server | unloaded | loaded after | switch: first token, s | RSS after, MiB | anonymous | file + KV of the loaded | RSS / (file + KV) | the budget's use, MiB |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|");
        for (var i = 0; i < Sequence.Length; i++)
        {
            foreach (var contender in contenders)
            {
                var steps = results[contender].Where(r => r.Steps.Count > i).Select(r => r.Steps[i]).ToArray();
                if (steps.Length == 0)
                {
                    continue;
                }

                string Mode(Func<Step, string[]> f) => steps.Select(s => string.Join(", ", f(s).Select(Short))).GroupBy(x => x).MaxBy(g => g.Count())!.Key is { Length: > 0 } k ? k : "-";
                var counted = steps.Where(s => s.CountedMiB is not null).Select(s => s.CountedMiB!.Value).ToArray();
                md.AppendLine(CultureInfo.InvariantCulture,
                    $"| {(contender == contenders[0] ? $"{i + 1}" : "")} | {(contender == contenders[0] ? Short(steps[0].Model) : "")} | {contender.Label} | {Mode(s => s.Unloaded)} | {Mode(s => s.Loaded)} | {F(Median(steps.Select(s => s.FirstTokenS)), "0.00")} | {F(Median(steps.Select(s => s.RssMiB)))} | {F(Median(steps.Select(s => s.AnonMiB)))} | {F(Median(steps.Select(s => s.FileKvMiB)))} | {F(Median(steps.Select(s => s.RssMiB / s.FileKvMiB)), "0.00")} | {(counted.Length == 0 ? "" : F(Median(counted)))} |");
            }
        }

        md.AppendLine();
        var edge = contenders.FirstOrDefault(c => c.Label == "EdgeServer");
        var edgeBase = edge is null ? 0 : Median(results[edge].Select(x => x.BaseRssMiB));
        md.Append(CultureInfo.InvariantCulture, $"For scale (arithmetic on the figures above): EdgeServer's budget plus its own resident memory before any model is {F(budgetMiB + edgeBase)} MiB; ");
        md.AppendJoin("; ", contenders.Select(c => $"{c.Label} peaked at {F(Median(results[c].Select(x => x.Peaks.RssMiB)))} MiB ({F(Median(results[c].Select(x => x.Peaks.RssMiB)) - budgetMiB - edgeBase, "+0;-0")})"));
        md.AppendLine(".");
        if (edge is null)
        {
            md.AppendLine("(EdgeServer was left out of this run, so its resident memory before any model counts as 0 here.)");
        }
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Measured on {DateTimeOffset.UtcNow:yyyy-MM-dd} with {threads} threads, {rounds} rounds; the run took {elapsed.TotalMinutes:0.0} minutes; load average (1, 5, 15 min) {string.Join(" ", loadBefore)} before and {string.Join(" ", loadAfter)} after. Command (it builds the peer and writes the three models on first use, cached like the rest):");
        md.AppendLine();
        md.AppendLine("```sh");
        md.AppendLine(commandLine);
        md.AppendLine("```");
        return md.ToString();
    }

    /// <summary>The median; NaN (printed "NaN") when a failed round left nothing to take it of.</summary>
    private static double Median(IEnumerable<double> values) => values.ToArray() is { Length: > 0 } v ? Stats.Median(v) : double.NaN;
}
