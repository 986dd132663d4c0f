using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeServer.Bench;

/// <summary>
/// Single-stream decode of EdgeServer and llama-server on an idle box and with one CPU-bound background process
/// running through the whole measurement, the same process for both (docs/benchmarks.md, "Decode on a busy box").
/// Each server is started once per round: a warm-up completion, the idle completions, then the background process
/// starts, one more warm-up completion (so a server that adapts has the chance every server gets), and the busy
/// completions. EdgeServer's thread count at the end (its edgeserver.decode.threads metric) is recorded.
/// </summary>
internal static partial class BusyBox
{
    private const int Slots = 2;
    private const int ContextPerSlot = 1536;
    private const int Completions = 5;

    /// <summary>One server configuration.</summary>
    private sealed record Variant(string Label, bool Edge, string[] Arguments, string? Dll = null);

    private sealed record Sample(double IdleTps, double BusyTps, int? IdleThreads, int? BusyThreads, double LoadBefore, double LoadAfter);

    /// <param name="polls">EdgeServer's thread poll levels to run besides its default (with the cores as fixed threads).</param>
    /// <param name="peerThreads">llama-server's -t values; empty: the cores.</param>
    /// <param name="baselineDll">Another EdgeServer build (e.g. before thread pools) to run with the cores as fixed threads.</param>
    public static async Task<int> RunAsync(string peerBin, string edgeDll, string modelsDir, int rounds, string only, string output,
        string polls, string peerThreads, string baselineDll, double quietLoad, TimeSpan quietWait, string commandLine)
    {
        var cores = Environment.ProcessorCount;
        var variants = new List<Variant>
        {
            new("EdgeServer (adaptive threads)", true, []),
            new($"EdgeServer, {cores} threads fixed", true, ["--threads", $"{cores}"]),
        };
        // With one thread a pool has no workers to poll: the poll level shows with the cores as fixed threads.
        variants.AddRange(polls.Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => new Variant($"EdgeServer, {cores} threads fixed, poll {p}", true, ["--threads", $"{cores}", $"--EdgeServer:Runtime:ThreadPoll={p}"])));
        if (baselineDll.Length > 0)
        {
            variants.Add(new($"EdgeServer before thread pools, {cores} threads", true, ["--threads", $"{cores}"], baselineDll));
        }

        foreach (var t in peerThreads.Length == 0 ? [cores] : peerThreads.Split(',').Select(int.Parse))
        {
            variants.Add(new($"llama-server -t {t}", false, ["-t", $"{t}", "-tb", $"{t}"]));
        }

        var waited = await WaitForQuietAsync(quietLoad, quietWait);
        var started = DateTimeOffset.UtcNow;
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
        var report = new StringBuilder();
        foreach (var spec in Models.All.Where(m => only.Length == 0 || m.Name.Contains(only, StringComparison.Ordinal)))
        {
            var model = Models.Ensure(spec, modelsDir);
            var samples = variants.ToDictionary(v => v, _ => new List<Sample>());
            for (var round = 0; round < rounds; round++)
            {
                // The order rotates between rounds, so a slow spell of the machine does not fall on one server.
                for (var i = 0; i < variants.Count; i++)
                {
                    var variant = variants[(i + round) % variants.Count];
                    Console.Error.WriteLine($"== {spec.Name}, round {round + 1}/{rounds}: {variant.Label} (load {Stats.LoadAverage():0.00})");
                    var sample = await MeasureAsync(variant, spec, model, peerBin, edgeDll, round, http);
                    Console.Error.WriteLine(FormattableString.Invariant(
                        $"   idle {sample.IdleTps:0.0} t/s ({sample.IdleThreads?.ToString(CultureInfo.InvariantCulture) ?? "-"} threads), busy {sample.BusyTps:0.0} t/s ({sample.BusyThreads?.ToString(CultureInfo.InvariantCulture) ?? "-"} threads); load {sample.LoadBefore:0.00} -> {sample.LoadAfter:0.00}"));
                    samples[variant].Add(sample);
                }
            }

            Append(report, spec, samples, variants);
        }

        var elapsed = DateTimeOffset.UtcNow - started;
        report.AppendLine(CultureInfo.InvariantCulture,
            $"Measured on {DateTimeOffset.UtcNow:yyyy-MM-dd} with {cores} cores, {rounds} starts per server; {waited} The run took {elapsed.TotalMinutes:0} minutes.");
        await File.WriteAllTextAsync(output, Markdown.ReplaceSection(File.Exists(output) ? await File.ReadAllTextAsync(output) : "", Heading, Section(report.ToString(), commandLine)));
        Console.Error.WriteLine($"wrote {output} in {elapsed.TotalMinutes:0.0} min");
        return 0;
    }

    private const string Heading = "## Decode on a busy box";

    private static string Section(string tables, string commandLine) => $"""
        {Heading}

        Edge boxes are rarely idle: a board that serves models usually runs other services. This compares single-stream
        decode on an idle machine and with one CPU-bound process (a shell loop) running beside the server for the whole
        measurement, the same for every server. Each server is started once per round with 2 slots of
        {ContextPerSlot} tokens: one warm-up completion, {Completions} idle completions, then the background process
        starts, one more warm-up completion and {Completions} completions under load (so a server that adapts gets the
        warm-up every server gets). Each figure is the median over the starts of each start's median; the range is the
        lowest and highest start. "Threads chosen" is EdgeServer's `edgeserver.decode.threads` after the idle and the
        busy completions of each start. EdgeServer's default is adaptive threads (no `--threads`); llama-server runs
        with `-t` as given. Command:

        ```sh
        {commandLine}
        ```

        {tables}
        """;

    private static async Task<Sample> MeasureAsync(Variant variant, Models.Spec spec, string model, string peerBin, string edgeDll, int round, HttpClient http)
    {
        var port = ServerProcess.FreePort();
        var empty = Directory.CreateTempSubdirectory("edgeserver-bench-models-");
        await using var process = variant.Edge
            ? ServerProcess.StartEdge(variant.Label, variant.Dll ?? edgeDll,
            [
                "--urls", $"http://127.0.0.1:{port}", "--models-dir", empty.FullName,
                "--EdgeServer:Models:0:Id=bench", $"--EdgeServer:Models:0:Path={model}",
                "--slots", $"{Slots}", "--ctx-size", $"{ContextPerSlot}", "--Logging:LogLevel:Default=Warning",
                .. variant.Arguments,
            ], port)
            : ServerProcess.Start(variant.Label, Path.Combine(peerBin, "llama-server"),
            [
                "-m", model, "-a", "bench", "--host", "127.0.0.1", "--port", $"{port}",
                "-c", $"{Slots * ContextPerSlot}", "--parallel", $"{Slots}", "--no-webui", .. variant.Arguments,
            ], port);
        try
        {
            var load = new LoadGenerator(http, process.BaseAddress);
            await process.WaitHealthyAsync(http, TimeSpan.FromMinutes(5));
            var seed = round * 10_000;
            var loadBefore = Stats.LoadAverage();
            await load.CompleteAsync(LoadGenerator.Prompt(32, seed++), spec.MaxTokens);
            var idle = new List<double>();
            for (var i = 0; i < Completions; i++)
            {
                idle.Add((await load.CompleteAsync(LoadGenerator.Prompt(32, seed++), spec.MaxTokens)).DecodeTokensPerSecond);
            }

            var idleThreads = variant.Edge ? await ThreadsAsync(http, process.BaseAddress) : null;
            var busy = new List<double>();
            using (Burner.Start())
            {
                await load.CompleteAsync(LoadGenerator.Prompt(32, seed++), spec.MaxTokens);
                for (var i = 0; i < Completions; i++)
                {
                    busy.Add((await load.CompleteAsync(LoadGenerator.Prompt(32, seed++), spec.MaxTokens)).DecodeTokensPerSecond);
                }
            }

            var busyThreads = variant.Edge ? await ThreadsAsync(http, process.BaseAddress) : null;
            return new Sample(Stats.Median(idle), Stats.Median(busy), idleThreads, busyThreads, loadBefore, Stats.LoadAverage());
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

    private static void Append(StringBuilder md, Models.Spec spec, Dictionary<Variant, List<Sample>> samples, List<Variant> variants)
    {
        var peer = variants.First(v => !v.Edge);
        double M(Variant v, Func<Sample, double> f) => Stats.Median(samples[v].Select(f));
        string Ratio(Variant v, Func<Sample, double> f) => (M(v, f) / M(peer, f)).ToString("0.00", CultureInfo.InvariantCulture);
        string Range(Variant v, Func<Sample, double> f) => FormattableString.Invariant($"{M(v, f):0.0} ({samples[v].Min(f):0.0}-{samples[v].Max(f):0.0})");
        // A build without the metric (the baseline) has nothing to show.
        string Threads(Variant v, Func<Sample, int?> f) => samples[v].Any(s => f(s) is not null) ? string.Join(", ", samples[v].Select(s => f(s)?.ToString(CultureInfo.InvariantCulture) ?? "?")) : "";

        md.AppendLine(CultureInfo.InvariantCulture, $"#### {spec.Name} ({spec.MaxTokens} tokens per completion)");
        md.AppendLine();
        md.AppendLine($"| server | idle: decode t/s (min-max) | / {peer.Label} | threads chosen | one busy process: decode t/s (min-max) | / {peer.Label} | threads chosen | busy / idle |");
        md.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var v in variants)
        {
            md.AppendLine(CultureInfo.InvariantCulture,
                $"| {v.Label} | {Range(v, s => s.IdleTps)} | {Ratio(v, s => s.IdleTps)} | {Threads(v, s => s.IdleThreads)} | {Range(v, s => s.BusyTps)} | {Ratio(v, s => s.BusyTps)} | {Threads(v, s => s.BusyThreads)} | {M(v, s => s.BusyTps) / M(v, s => s.IdleTps):0.00} |");
        }

        var loads = samples.Values.SelectMany(s => s).SelectMany(s => new[] { s.LoadBefore, s.LoadAfter }).ToList();
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"1-minute load average at the start and end of each server's measurement: {loads.Min():0.00} to {loads.Max():0.00} (median {Stats.Median(loads):0.00}; the background process alone adds 1).");
        md.AppendLine();
    }

    /// <summary>Waits until the 1-minute load average is under <paramref name="threshold"/>, at most <paramref name="limit"/>; says how it went.</summary>
    private static async Task<string> WaitForQuietAsync(double threshold, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        var first = Stats.LoadAverage();
        while (Stats.LoadAverage() >= threshold && clock.Elapsed < limit)
        {
            Console.Error.WriteLine($"load average {Stats.LoadAverage():0.00}: waiting for it to fall under {threshold:0.00} ({clock.Elapsed.TotalSeconds:0} of {limit.TotalSeconds:0} s)");
            await Task.Delay(TimeSpan.FromSeconds(15));
        }

        var now = Stats.LoadAverage();
        return now < threshold
            ? FormattableString.Invariant($"the run began once the 1-minute load average was under {threshold:0.00} (it was {first:0.00}, then {now:0.00} after {clock.Elapsed.TotalSeconds:0} s).")
            : FormattableString.Invariant($"the machine did not become quiet: the 1-minute load average was {first:0.00}, and still {now:0.00} after {clock.Elapsed.TotalSeconds:0} s.");
    }


    /// <summary>EdgeServer's edgeserver.decode.threads for the benchmark model, from /metrics.</summary>
    private static async Task<int?> ThreadsAsync(HttpClient http, Uri server)
    {
        try
        {
            var text = await http.GetStringAsync(new Uri(server, "/metrics"));
            var match = ThreadsLine().Match(text);
            return match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : null;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    [GeneratedRegex(@"^edgeserver_decode_threads\{[^}]*model=""bench""[^}]*\} (\d+)", RegexOptions.Multiline)]
    private static partial Regex ThreadsLine();

    /// <summary>One CPU-bound process (a shell loop with no system calls), started and killed around a measurement.</summary>
    private sealed class Burner : IDisposable
    {
        private readonly Process _process;

        private Burner(Process process) => _process = process;

        public static Burner Start()
        {
            var info = new ProcessStartInfo("sh") { ArgumentList = { "-c", "while :; do :; done" } };
            return new Burner(Process.Start(info)!);
        }

        public void Dispose()
        {
            _process.Kill();
            _process.WaitForExit();
            _process.Dispose();
        }
    }
}
