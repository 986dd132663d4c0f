using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Soak;

/// <summary>
/// Normal requests whose latency is compared with and without an attack: request i is the same in every phase (its
/// prompt, seed and max_tokens come from i), so only what runs beside it differs. Even i is a whole chat completion
/// (timed to its last byte), odd i a stream (timed to its first token event, after the role event).
/// </summary>
internal sealed class LatencyProbe(HttpClient http, string model, int maxTokens)
{
    public sealed class Phase(string name)
    {
        public string Name => name;

        public List<double> WholeMs { get; } = [];

        public List<double> FirstTokenMs { get; } = [];

        public long CompletionTokens { get; set; }

        public int Failed { get; set; }
    }

    public async Task SendAsync(int i, Phase phase, CancellationToken ct)
    {
        var whole = i % 2 == 0;
        var body = $$"""{"model":"{{model}}","messages":[{"role":"user","content":"probe {{i}}"}],"max_tokens":{{maxTokens}},"temperature":0.7,"seed":{{i}},"stream":{{(whole ? "false" : "true")}}""" +
            (whole ? "}" : ""","stream_options":{"include_usage":true}}""");
        var clock = Stopwatch.StartNew();
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("/v1/chat/completions", UriKind.Relative)) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                Record(phase, failed: true);
                return;
            }

            if (whole)
            {
                var text = await response.Content.ReadAsStringAsync(ct);
                var elapsed = clock.Elapsed.TotalMilliseconds;
                using var doc = JsonDocument.Parse(text);
                Record(phase, wholeMs: elapsed, tokens: doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
                return;
            }

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
            double? firstToken = null;
            var events = 0;
            var tokens = 0;
            while (await reader.ReadLineAsync(ct) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    continue;
                }

                if (line == "data: [DONE]")
                {
                    Record(phase, firstTokenMs: firstToken, tokens: tokens, failed: firstToken is null);
                    return;
                }

                if (++events == 2)
                {
                    firstToken = clock.Elapsed.TotalMilliseconds;
                }

                if (line.Contains("\"usage\":{", StringComparison.Ordinal))
                {
                    using var doc = JsonDocument.Parse(line.AsMemory(6));
                    tokens = doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
                }
            }

            Record(phase, failed: true);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException || e is TaskCanceledException && !ct.IsCancellationRequested)
        {
            Record(phase, failed: true);
        }
    }

    private static void Record(Phase phase, double? wholeMs = null, double? firstTokenMs = null, int tokens = 0, bool failed = false)
    {
        lock (phase)
        {
            if (wholeMs is { } w)
            {
                phase.WholeMs.Add(w);
            }

            if (firstTokenMs is { } f)
            {
                phase.FirstTokenMs.Add(f);
            }

            phase.CompletionTokens += tokens;
            phase.Failed += failed ? 1 : 0;
        }
    }

    /// <summary>The value below which <paramref name="p"/> percent of the sorted values fall (nearest rank).</summary>
    public static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToList();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }

    public static string Row(string label, List<double> values) =>
        string.Create(CultureInfo.InvariantCulture, $"| {label} | {values.Count} | {Percentile(values, 50):0} | {Percentile(values, 95):0} | {Percentile(values, 99):0} |");
}
