using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using EdgeServer.Bench;
using EdgeServer.Inference.Gguf;

// Soak test: starts the real server on 127.0.0.1 with a generated model and sends a bounded number of mixed
// requests: streams (some cancelled mid-way), whole responses, tool calls, JSON output, logprobs with n = 2,
// embeddings, the Responses API, and bad requests. It reports outcomes by kind and
// the server's resident memory over time, checks the server still answers, and stops by itself.
//
//   dotnet run --project bench/EdgeServer.Soak -c Release -- [--requests 3000] [--concurrency 8] [--seed 1]

var requests = Arg("--requests", 3000);
var concurrency = Arg("--concurrency", 8);
var seed = Arg("--seed", 1);
var deadline = TimeSpan.FromMinutes(Arg("--minutes", 15));
var work = Directory.CreateTempSubdirectory("edgeserver-soak-");
var model = Path.Combine(work.FullName, "soak.gguf");
// Random weights, realistic tokenizer size: output is arbitrary tokens, byte tokens included, so the UTF-8 and stop
// handling are exercised under load.
LlamaModelBuilder.Write(model, new LlamaShape(256, 4, 4, 2, 512, 2048), new SpmVocabulary([], padToCount: 4000), new RandomLlamaWeights(seed, 0.08f), name: "soak");

var port = ServerProcess.FreePort();
var serverDll = Path.Combine(AppContext.BaseDirectory, "EdgeServer.dll");
if (!File.Exists(serverDll))
{
    serverDll = FindServerDll();
}

var server = ServerProcess.Start("EdgeServer", "dotnet",
    [serverDll, "--model", model, "--urls", $"http://127.0.0.1:{port}", "--slots", "4", "--ctx-size", "1024", "--EdgeServer:Scheduler:QueueCapacity=8", "--Logging:LogLevel:Default=Warning"], port);

using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(120) };
try
{
    await server.WaitHealthyAsync(http, TimeSpan.FromMinutes(1));
    await Send(http, Kind.Whole, new Random(0), CancellationToken.None); // load the model
    var rssStart = server.Memory().Rss;
    var outcomes = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
    var samples = new List<(int Done, long Rss)> { (0, rssStart) };
    var done = 0;
    var clock = Stopwatch.StartNew();
    using var stop = new CancellationTokenSource(deadline);

    await Parallel.ForEachAsync(Enumerable.Range(0, requests), new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = stop.Token }, async (i, ct) =>
    {
        var random = new Random(seed * 100_003 + i);
        var kind = random.Next(100) switch
        {
            < 45 => Kind.Stream,
            < 60 => Kind.StreamCancelled,
            < 70 => Kind.Whole,
            < 80 => Kind.Structured,
            _ => Kind.Bad,
        };
        var outcome = await Send(http, kind, random, ct);
        outcomes.AddOrUpdate(outcome, 1, (_, n) => n + 1);
        var n = Interlocked.Increment(ref done);
        if (n % 500 == 0)
        {
            lock (samples)
            {
                samples.Add((n, server.Memory().Rss));
            }
        }
    });

    var elapsed = clock.Elapsed;
    var rssEnd = server.Memory().Rss;
    await Task.Delay(TimeSpan.FromSeconds(10));
    var rssSettled = server.Memory().Rss;
    var healthy = (await http.GetAsync("/health")).IsSuccessStatusCode && (await Send(http, Kind.Whole, new Random(1), CancellationToken.None)) == "ok";

    Console.WriteLine($"# Soak: {done} requests, concurrency {concurrency}, {elapsed.TotalSeconds:0} s ({done / elapsed.TotalSeconds:0.0} req/s)");
    Console.WriteLine();
    Console.WriteLine("| outcome | requests |");
    Console.WriteLine("|---|---|");
    foreach (var (name, count) in outcomes.OrderBy(o => o.Key, StringComparer.Ordinal))
    {
        Console.WriteLine($"| {name} | {count} |");
    }

    Console.WriteLine();
    Console.WriteLine("| requests done | server RSS MiB |");
    Console.WriteLine("|---|---|");
    foreach (var (n, rss) in samples)
    {
        Console.WriteLine($"| {n} | {rss / 1048576.0:0.0} |");
    }

    Console.WriteLine($"| {done} (end) | {rssEnd / 1048576.0:0.0} |");
    Console.WriteLine($"| {done} (+10 s idle) | {rssSettled / 1048576.0:0.0} |");
    Console.WriteLine();
    var unexpected = outcomes.Where(o => o.Key.StartsWith("UNEXPECTED", StringComparison.Ordinal)).Sum(o => o.Value);
    Console.WriteLine($"server still answers: {(healthy ? "yes" : "NO")}; unexpected outcomes: {unexpected}");
    return healthy && unexpected == 0 && done == requests ? 0 : 1;
}
finally
{
    await server.DisposeAsync();
    work.Delete(recursive: true);
}

static async Task<string> Send(HttpClient http, Kind kind, Random random, CancellationToken ct)
{
    var maxTokens = random.Next(1, 64);
    var chat = $$"""{"model":"soak","messages":[{"role":"user","content":"request {{random.Next()}}"}],"max_tokens":{{maxTokens}},"temperature":{{(random.NextDouble() * 1.2).ToString("0.00", CultureInfo.InvariantCulture)}},"seed":{{random.Next()}}""";
    try
    {
        switch (kind)
        {
            case Kind.Whole:
            {
                using var response = await http.PostAsync("/v1/chat/completions", Json(chat + "}"), ct);
                _ = await response.Content.ReadAsStringAsync(ct);
                return response.StatusCode switch
                {
                    HttpStatusCode.OK => "ok",
                    HttpStatusCode.TooManyRequests => "busy (429)",
                    var s => $"UNEXPECTED {(int)s}",
                };
            }

            case Kind.Stream:
            case Kind.StreamCancelled:
            {
                using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(chat + ""","stream":true}""") };
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
                if (response.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    return "busy (429)";
                }

                if (response.StatusCode != HttpStatusCode.OK)
                {
                    return $"UNEXPECTED {(int)response.StatusCode}";
                }

                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
                var events = 0;
                var cancelAfter = kind == Kind.StreamCancelled ? random.Next(1, 8) : int.MaxValue;
                while (await reader.ReadLineAsync(cancel.Token) is { } line)
                {
                    if (line.StartsWith("data: ", StringComparison.Ordinal))
                    {
                        if (line == "data: [DONE]")
                        {
                            return "ok (stream)";
                        }

                        if (line.Contains("\"error\"", StringComparison.Ordinal))
                        {
                            return "UNEXPECTED error event";
                        }

                        if (++events >= cancelAfter)
                        {
                            return "cancelled mid-stream";
                        }
                    }
                }

                return events < cancelAfter && kind == Kind.StreamCancelled ? "ok (stream ended before cancel)" : "UNEXPECTED stream ended without [DONE]";
            }

            case Kind.Structured:
                return await SendStructured(http, random, maxTokens, ct);

            default:
            {
                var (name, body, expected) = BadRequests[random.Next(BadRequests.Length)];
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = content };
                request.Headers.ExpectContinue = body.Length > 65536;
                using var response = await http.SendAsync(request, ct);
                var text = await response.Content.ReadAsStringAsync(ct);
                return (int)response.StatusCode == expected && text.Contains("\"error\"", StringComparison.Ordinal)
                    ? $"bad request answered {expected} ({name})"
                    : $"UNEXPECTED {(int)response.StatusCode} for {name}";
            }
        }
    }
    catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException && !ct.IsCancellationRequested)
    {
        return $"UNEXPECTED {e.GetType().Name}";
    }
}

// Grammar-constrained and other newer requests: whatever the random model does, a finished reply must parse.
static async Task<string> SendStructured(HttpClient http, Random random, int maxTokens, CancellationToken ct)
{
    const string Schema = """{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"string","maxLength":8},"b":{"type":"array","items":{"type":"integer"},"maxItems":3}},"required":["a","b"]}}}""";
    const string Tool = """[{"type":"function","function":{"name":"set_light","parameters":{"type":"object","properties":{"room":{"enum":["kitchen","hall"]},"on":{"type":"boolean"},"level":{"type":"integer"}},"required":["room","on"]}}}]""";
    var user = $$"""[{"role":"user","content":"request {{random.Next()}}"}]""";
    var (path, body, name) = random.Next(6) switch
    {
        0 => ("/v1/chat/completions", $$"""{"model":"soak","messages":{{user}},"max_tokens":{{maxTokens * 4}},"tools":{{Tool}},"tool_choice":"required"}""", "tool call"),
        1 => ("/v1/chat/completions", $$"""{"model":"soak","messages":{{user}},"max_tokens":{{maxTokens * 4}},"response_format":""" + Schema + "}", "json_schema"),
        2 => ("/v1/chat/completions", $$"""{"model":"soak","messages":{{user}},"max_tokens":{{maxTokens}},"logprobs":true,"top_logprobs":3,"n":2,"stream":{{(random.Next(2) == 0 ? "true" : "false")}}}""", "logprobs, n 2"),
        3 => ("/v1/embeddings", $$"""{"model":"soak","input":["request {{random.Next()}}","another"]}""", "embeddings"),
        4 => ("/v1/responses", $$"""{"model":"soak","input":"request {{random.Next()}}","max_output_tokens":{{maxTokens}}}""", "responses"),
        _ => ("/v1/chat/completions", $$"""{"model":"soak","messages":{{user}},"max_tokens":{{maxTokens}},"response_format":{"type":"json_object"},"temperature":1.2}""", "json_object"),
    };
    using var response = await http.PostAsync(path, Json(body), ct);
    var text = await response.Content.ReadAsStringAsync(ct);
    if (response.StatusCode == HttpStatusCode.TooManyRequests)
    {
        return "busy (429)";
    }

    if (response.StatusCode != HttpStatusCode.OK)
    {
        return $"UNEXPECTED {(int)response.StatusCode} for {name}";
    }

    if (name is "logprobs, n 2" or "embeddings" or "responses")
    {
        return $"ok ({name})";
    }

    using var doc = System.Text.Json.JsonDocument.Parse(text);
    var choice = doc.RootElement.GetProperty("choices")[0];
    var finish = choice.GetProperty("finish_reason").GetString();
    try
    {
        if (finish == "tool_calls")
        {
            using var args = System.Text.Json.JsonDocument.Parse(choice.GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function").GetProperty("arguments").GetString()!);
            return $"ok ({name})";
        }

        if (finish == "stop")
        {
            using var json = System.Text.Json.JsonDocument.Parse(choice.GetProperty("message").GetProperty("content").GetString()!);
            return name == "tool call" ? "UNEXPECTED tool call finished without a call" : $"ok ({name})";
        }
    }
    catch (System.Text.Json.JsonException)
    {
        return $"UNEXPECTED unparsable {name}";
    }

    return $"ok ({name}, cut by max_tokens)";
}

static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

static string FindServerDll()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        var candidates = Directory.Exists(Path.Combine(dir.FullName, "src", "EdgeServer", "bin"))
            ? Directory.GetFiles(Path.Combine(dir.FullName, "src", "EdgeServer", "bin"), "EdgeServer.dll", SearchOption.AllDirectories)
            : [];
        if (candidates.Length > 0)
        {
            return candidates.OrderByDescending(File.GetLastWriteTimeUtc).First();
        }
    }

    throw new FileNotFoundException("EdgeServer.dll not found; build src/EdgeServer first.");
}

int Arg(string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}

internal enum Kind
{
    Stream,
    StreamCancelled,
    Whole,
    Structured,
    Bad,
}

internal static partial class Program
{
    private static readonly (string Name, byte[] Body, int Status)[] BadRequests =
    [
        ("malformed JSON", "{\"model\":"u8.ToArray(), 400),
        ("unknown model", """{"model":"nope","messages":[{"role":"user","content":"hi"}]}"""u8.ToArray(), 404),
        ("temperature 9", """{"model":"soak","messages":[{"role":"user","content":"hi"}],"temperature":9}"""u8.ToArray(), 400),
        ("max_tokens over the cap", """{"model":"soak","messages":[{"role":"user","content":"hi"}],"max_tokens":999999}"""u8.ToArray(), 400),
        ("prompt over the context", Encoding.UTF8.GetBytes("{\"model\":\"soak\",\"messages\":[{\"role\":\"user\",\"content\":\"" + string.Join(' ', Enumerable.Repeat("word", 3000)) + "\"}]}"), 400),
        ("invalid UTF-8", [.. "{\"model\":\"soak\",\"messages\":[{\"role\":\"user\",\"content\":\""u8, 0xC3, 0x28, .. "\"}]}"u8], 400),
        ("2 MB body", Encoding.UTF8.GetBytes("{\"model\":\"soak\",\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('x', 2 << 20) + "\"}]}"), 413),
        ("wrong type", """{"model":"soak","messages":"hello"}"""u8.ToArray(), 400),
    ];
}
