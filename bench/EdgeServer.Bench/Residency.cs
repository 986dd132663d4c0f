using System.Globalization;
using System.Text;

namespace EdgeServer.Bench;

/// <summary>
/// Resident memory of EdgeServer after loading a model, anonymous and file-backed apart, with model files mapped or
/// read and with llama.cpp's weight repacking on or off, and the decode speed of each (docs/benchmarks.md,
/// "Resident memory: mmap and repacking"). The server runs with its default slots and context.
/// </summary>
internal static class Residency
{
    private sealed record Setting(string Label, string Mmap, bool Repack);

    private static readonly Setting[] Settings =
    [
        new("mmap on, repack on", "On", true),
        new("mmap off, repack on", "Off", true),
        new("mmap on, repack off", "On", false),
        new("mmap off, repack off", "Off", false),
        new("default (auto)", "", true),
    ];

    private sealed record Sample(double BaseRss, double BaseAnon, double Rss, double Anon, double RssAfter, double AnonAfter, double DecodeTps, double Pp512Tps);

    /// <param name="settingsFilter">Indices into the settings (0 = mapped and repacked, ..., 4 = the default), comma-separated; empty: all.</param>
    public static async Task<int> RunAsync(string edgeDll, string modelsDir, int rounds, string only, string output, int threads, string settingsFilter = "")
    {
        var settings = settingsFilter.Length == 0 ? Settings : settingsFilter.Split(',').Select(i => Settings[int.Parse(i, CultureInfo.InvariantCulture)]).ToArray();
        var started = DateTimeOffset.UtcNow;
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
        var report = new StringBuilder();
        foreach (var spec in Models.Residency.Where(m => only.Length == 0 || m.Name.Contains(only, StringComparison.Ordinal)))
        {
            var model = Models.Ensure(spec, modelsDir);
            var fileMiB = new FileInfo(model).Length / 1048576.0;
            var kvMiB = Models.KvCacheMiB(spec, 2, 4096); // the server's default slots and context
            var samples = settings.ToDictionary(s => s, _ => new List<Sample>());
            for (var round = 0; round < rounds; round++)
            {
                // Settings rotate between rounds, so a slow spell of the machine does not fall on one setting.
                for (var i = 0; i < settings.Length; i++)
                {
                    var setting = settings[(i + round) % settings.Length];
                    Console.Error.WriteLine($"== {spec.Name}, round {round + 1}/{rounds}: {setting.Label}");
                    var clock = System.Diagnostics.Stopwatch.StartNew();
                    var sample = await MeasureAsync(edgeDll, model, spec, setting, threads, round, http);
                    Console.Error.WriteLine(FormattableString.Invariant(
                        $"   base {sample.BaseRss:0} (anon {sample.BaseAnon:0}), after load {sample.Rss:0} (anon {sample.Anon:0}), after decode {sample.RssAfter:0} (anon {sample.AnonAfter:0}) MiB; decode {sample.DecodeTps:0.0} t/s, pp512 {sample.Pp512Tps:0.0} t/s; {clock.Elapsed.TotalSeconds:0} s"));
                    samples[setting].Add(sample);
                }
            }

            report.AppendLine(CultureInfo.InvariantCulture, $"#### {spec.Name} ({fileMiB:0} MiB file, {spec.Type}; KV cache {kvMiB:0} MiB; target <= {1.15 * (fileMiB + kvMiB):0} MiB)");
            report.AppendLine();
            report.AppendLine("| setting | RSS after load, MiB | anonymous | file-backed | RSS after decode, MiB | anonymous | file-backed | RSS / (file + KV) | decode t/s (min-max) | pp512 t/s (min-max) |");
            report.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
            foreach (var setting in settings)
            {
                var s = samples[setting];
                double M(Func<Sample, double> f) => Stats.Median(s.Select(f));
                string Range(Func<Sample, double> f) => FormattableString.Invariant($"{M(f):0.0} ({s.Min(f):0.0}-{s.Max(f):0.0})");
                report.AppendLine(CultureInfo.InvariantCulture,
                    $"| {setting.Label} | {M(x => x.Rss):0} | {M(x => x.Anon):0} | {M(x => x.Rss - x.Anon):0} | {M(x => x.RssAfter):0} | {M(x => x.AnonAfter):0} | {M(x => x.RssAfter - x.AnonAfter):0} | {M(x => x.Rss) / (fileMiB + kvMiB):0.00} | {Range(x => x.DecodeTps)} | {Range(x => x.Pp512Tps)} |");
            }

            report.AppendLine();
            report.AppendLine(CultureInfo.InvariantCulture, $"Server before loading any model: {Stats.Median(samples.Values.SelectMany(v => v).Select(x => x.BaseRss)):0} MiB resident, {Stats.Median(samples.Values.SelectMany(v => v).Select(x => x.BaseAnon)):0} MiB of it anonymous (median over all starts).");
            report.AppendLine();
        }

        var elapsed = DateTimeOffset.UtcNow - started;
        report.AppendLine(CultureInfo.InvariantCulture, $"Measured on {DateTimeOffset.UtcNow:yyyy-MM-dd} with {threads} threads, {rounds} starts per setting; the run took {elapsed.TotalMinutes:0} minutes.");
        await File.WriteAllTextAsync(output, report.ToString());
        Console.Error.WriteLine($"wrote {output} in {elapsed.TotalMinutes:0.0} min");
        return 0;
    }

    private static async Task<Sample> MeasureAsync(string edgeDll, string model, Models.Spec spec, Setting setting, int threads, int round, HttpClient http)
    {
        var port = ServerProcess.FreePort();
        var empty = Directory.CreateTempSubdirectory("edgeserver-bench-models-");
        await using var process = ServerProcess.StartEdge("EdgeServer", edgeDll,
        [
            "--urls", $"http://127.0.0.1:{port}", "--models-dir", empty.FullName,
            "--EdgeServer:Models:0:Id=bench", $"--EdgeServer:Models:0:Path={model}", "--threads", $"{threads}",
            "--Logging:LogLevel:Default=Warning",
            .. (setting.Mmap.Length > 0 ? new[] { $"--EdgeServer:Runtime:UseMmap={setting.Mmap}", $"--EdgeServer:Runtime:Repack={setting.Repack}" } : []),
        ], port);
        try
        {
            var load = new LoadGenerator(http, process.BaseAddress);
            await process.WaitHealthyAsync(http, TimeSpan.FromMinutes(5));
            var (baseRss, baseAnon) = process.Residency();
            await load.CompleteAsync(LoadGenerator.Prompt(16, -1), 1);
            await Task.Delay(TimeSpan.FromSeconds(1));
            var (rss, anon) = process.Residency();
            var seed = round * 1000;
            var decode = new List<double>();
            for (var i = 0; i < 3; i++)
            {
                decode.Add((await load.CompleteAsync(LoadGenerator.Prompt(32, seed++), spec.MaxTokens)).DecodeTokensPerSecond);
            }

            var pp = 512 / (await load.CompleteAsync(LoadGenerator.Prompt(512, seed++), 1)).TimeToFirstToken.TotalSeconds;
            var (rssAfter, anonAfter) = process.Residency();
            return new Sample(baseRss, baseAnon, rss, anon, rssAfter, anonAfter, Stats.Median(decode), pp);
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

}
