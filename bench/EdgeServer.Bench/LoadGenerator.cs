using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Bench;

/// <summary>What one streamed completion did, timed by the client.</summary>
internal sealed record StreamResult(TimeSpan TimeToFirstToken, TimeSpan Total, int Events, string Text)
{
    /// <summary>Tokens after the first, per second of generation (each event carries one token).</summary>
    public double DecodeTokensPerSecond => Events > 1 && Total > TimeToFirstToken ? (Events - 1) / (Total - TimeToFirstToken).TotalSeconds : 0;
}

/// <summary>
/// Drives any OpenAI-compatible server with the same requests: /v1/completions, streamed over SSE, a prompt of a
/// fixed number of tokens, a fixed number of generated tokens (end-of-text ignored), greedy sampling, to one model.
/// </summary>
internal sealed class LoadGenerator(HttpClient http, Uri baseAddress, string model = "bench")
{
    /// <summary>A prompt of exactly <paramref name="tokens"/> tokens for the benchmark vocabulary, unique per seed.</summary>
    public static string Prompt(int tokens, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder(tokens);
        for (var i = 0; i < tokens - 2; i++)
        {
            text.Append((char)('a' + random.Next(26)));
        }

        return text.ToString();
    }

    public Task<StreamResult> CompleteAsync(string prompt, int maxTokens, CancellationToken cancellationToken = default) =>
        StreamAsync("/v1/completions", new Dictionary<string, object>
        {
            ["model"] = model,
            ["prompt"] = prompt,
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
            ["stream"] = true,
        }, cancellationToken);

    /// <summary>
    /// A streamed chat reply constrained by response_format json_schema to {"t": a string of exactly
    /// <paramref name="chars"/> characters}: grammar-constrained decoding, which both servers implement themselves.
    /// </summary>
    public Task<StreamResult> JsonSchemaAsync(string prompt, int chars, CancellationToken cancellationToken = default) =>
        StreamAsync("/v1/chat/completions", new Dictionary<string, object>
        {
            ["model"] = model,
            ["messages"] = new[] { new Dictionary<string, object> { ["role"] = "user", ["content"] = prompt } },
            ["max_tokens"] = chars * 4,
            ["temperature"] = 0,
            ["stream"] = true,
            ["response_format"] = JsonSerializer.Deserialize<JsonElement>(
                "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"bench\",\"schema\":{\"type\":\"object\",\"properties\":{\"t\":{\"type\":\"string\"," +
                $"\"minLength\":{chars},\"maxLength\":{chars}" + "}},\"required\":[\"t\"]}}}"),
        }, cancellationToken);

    private async Task<StreamResult> StreamAsync(string path, Dictionary<string, object> fields, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.Serialize(fields);
        Stopwatch clock;
        HttpResponseMessage response;
        for (var attempt = 1; ; attempt++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseAddress, path))
            {
                Content = new StringContent(body, Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
            };
            clock = Stopwatch.StartNew();
            try
            {
                response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
                break;
            }
            catch (HttpRequestException e) when (attempt == 1 && e.HttpRequestError == HttpRequestError.ResponseEnded)
            {
                // A pooled keep-alive connection the server had already closed: nothing reached it; send again,
                // on a new connection, with a fresh clock.
            }
        }

        using var _ = response;
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"{baseAddress}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }

        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        TimeSpan? first = null;
        var events = 0;
        var text = new StringBuilder();
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
            {
                continue;
            }

            var data = line.AsSpan(6);
            if (data.SequenceEqual("[DONE]"))
            {
                break;
            }

            using var doc = JsonDocument.Parse(data.ToString());
            if (!doc.RootElement.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0
                || !(choices[0].TryGetProperty("text", out var piece) || (choices[0].TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out piece)))
                || piece.ValueKind != JsonValueKind.String || piece.GetString() is not { Length: > 0 } s)
            {
                continue;
            }

            first ??= clock.Elapsed;
            events++;
            text.Append(s);
        }

        return new StreamResult(first ?? clock.Elapsed, clock.Elapsed, events, text.ToString());
    }

    /// <summary>Starts <paramref name="streams"/> completions at once; returns generated tokens per second over the wall time.</summary>
    public async Task<double> AggregateAsync(int streams, int promptTokens, int maxTokens, int seed)
    {
        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(Enumerable.Range(0, streams).Select(i => CompleteAsync(Prompt(promptTokens, seed + i), maxTokens)));
        return results.Sum(r => r.Events) / clock.Elapsed.TotalSeconds;
    }
}
