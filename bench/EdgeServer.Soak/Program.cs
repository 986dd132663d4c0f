using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using EdgeServer.Bench;
using EdgeServer.Inference.Gguf;
using EdgeServer.Soak;

// Soak test: starts the real server on 127.0.0.1 with a models folder (a generated model and a hostile file) and
// sends a bounded number of mixed requests: streams (some cancelled mid-way), whole responses, tool calls, JSON
// output, logprobs with n = 2, embeddings, the Responses API, bad requests and hostile requests (issue 19). Then it
// times the same normal requests with and without hostile requests beside them. It reports outcomes by kind,
// latency, the server's resident memory over time, checks the server process is the one it started and still
// answers, and stops by itself.
//
//   dotnet run --project bench/EdgeServer.Soak -c Release -- [--requests 3000] [--concurrency 8] [--seed 1]
//     [--latency-requests 1200] [--rounds 6] [--probe-concurrency 2] [--attack-concurrency 2] [--probe-tokens 16]
//     [--no-model-file-requests] [--write-models-only]

var requests = Arg("--requests", 3000);
var concurrency = Arg("--concurrency", 8);
var seed = Arg("--seed", 1);
var deadline = TimeSpan.FromMinutes(Arg("--minutes", 15));
var latencyRequests = Arg("--latency-requests", 1200);
var rounds = Arg("--rounds", 6);
var probeConcurrency = Arg("--probe-concurrency", 2);
var attackConcurrency = Arg("--attack-concurrency", 2);
var probeTokens = Arg("--probe-tokens", 16);
var hostileNames = HostileRequests.Names(includeModelFile: !args.Contains("--no-model-file-requests"));
var work = Directory.CreateTempSubdirectory("edgeserver-soak-");
var modelsDir = Directory.CreateDirectory(Path.Combine(work.FullName, "models")).FullName;
// Random weights, realistic tokenizer size: output is arbitrary tokens, byte tokens included, so the UTF-8 and stop
// handling are exercised under load.
LlamaModelBuilder.Write(Path.Combine(modelsDir, "soak.gguf"), new LlamaShape(256, 4, 4, 2, 512, 2048), new SpmVocabulary([], padToCount: 4000), new RandomLlamaWeights(seed, 0.08f), name: "soak");
HostileRequests.WriteModelFiles(modelsDir);
if (args.Contains("--write-models-only"))
{
    // To start the server on the same folder by hand.
    Console.WriteLine(modelsDir);
    return 0;
}

var port = ServerProcess.FreePort();
var serverDll = Path.Combine(AppContext.BaseDirectory, "EdgeServer.dll");
if (!File.Exists(serverDll))
{
    serverDll = FindServerDll();
}

var server = ServerProcess.Start("EdgeServer", "dotnet",
    [serverDll, "--models-dir", modelsDir, "--urls", $"http://127.0.0.1:{port}", "--slots", "4", "--ctx-size", "1024", "--EdgeServer:Scheduler:QueueCapacity=8", "--Logging:LogLevel:Default=Warning"], port);
var serverPid = server.Id;

using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(120) };
using var stop = new CancellationTokenSource(deadline);
var health = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
var monitor = Task.CompletedTask;
var stage = "starting";
var done = 0;
var run = Stopwatch.StartNew();
try
{
    await server.WaitHealthyAsync(http, TimeSpan.FromMinutes(1));
    // /health every second for the whole run: a decode loop that stops shows as a 503, a dead process as an error.
    monitor = Task.Run(async () =>
    {
        for (var tick = 1; !stop.IsCancellationRequested; tick++)
        {
            string state;
            try
            {
                using var response = await http.GetAsync(new Uri("/health", UriKind.Relative), stop.Token);
                state = ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                state = e.GetType().Name;
            }

            if (tick % 30 == 0)
            {
                Console.Error.WriteLine($"[{run.Elapsed:mm\\:ss}] {stage}: {Volatile.Read(ref done)} done");
            }

            health.AddOrUpdate(state, 1, (_, n) => n + 1);
            if (server.HasExited)
            {
                Console.Error.WriteLine(server.Describe());
                await stop.CancelAsync();
            }

            await Task.Delay(TimeSpan.FromSeconds(1), stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    });

    await Send(http, Kind.Whole, new Random(0), hostileNames, CancellationToken.None); // load the model
    var rssStart = Rss(server);
    var outcomes = new Outcomes();
    var samples = new List<(string Done, long Rss)> { ("0 (model loaded, one request served)", rssStart) };
    var loads = new List<string> { $"start {LoadAverage()}" };
    // The server probed it as servable at start-up; it is first asked for once traffic runs.
    HostileRequests.SwapModelFile(modelsDir);
    var clock = Stopwatch.StartNew();
    stage = "mix";

    await UntilStopped(stop.Token, () => Parallel.ForEachAsync(Enumerable.Range(0, requests), new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = stop.Token }, async (i, ct) =>
    {
        var random = new Random(seed * 100_003 + i);
        var kind = random.Next(100) switch
        {
            < 42 => Kind.Stream,
            < 55 => Kind.StreamCancelled,
            < 65 => Kind.Whole,
            < 75 => Kind.Structured,
            < 88 => Kind.Bad,
            _ => Kind.Hostile,
        };
        var started = Stopwatch.GetTimestamp();
        var outcome = await Send(http, kind, random, hostileNames, ct);
        if (server.HasExited)
        {
            await stop.CancelAsync();
        }

        outcomes.Add(outcome, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        var n = Interlocked.Increment(ref done);
        if (n % 500 == 0)
        {
            lock (samples)
            {
                samples.Add((n.ToString(CultureInfo.InvariantCulture), Rss(server)));
            }
        }
    }));

    var elapsed = clock.Elapsed;
    samples.Add(($"{done} (end of the mix)", Rss(server)));

    // Latency: the same normal requests in a baseline block, then in an attack block with hostile requests on their
    // own lane; blocks alternate over rounds so drift on a shared machine falls on both phases alike.
    loads.Add($"after the mix {LoadAverage()}");
    var probe = new LatencyProbe(http, "soak", probeTokens);
    var baseline = new LatencyProbe.Phase("baseline");
    var attack = new LatencyProbe.Phase("attack");
    var attackOutcomes = new Outcomes();
    var phaseTime = new Dictionary<string, TimeSpan> { ["baseline"] = TimeSpan.Zero, ["attack"] = TimeSpan.Zero };
    var perRound = Math.Max(1, latencyRequests / rounds);
    for (var round = 0; round < rounds && !stop.IsCancellationRequested; round++)
    {
        foreach (var phase in new[] { baseline, attack })
        {
            stage = $"latency round {round + 1}, {phase.Name}";
            using var attackStop = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
            var attackers = phase == attack
                ? Enumerable.Range(0, attackConcurrency).Select(a => Attack(http, new Random(seed * 7_919 + round * 101 + a), hostileNames, attackOutcomes, attackStop.Token)).ToArray()
                : [];
            var phaseClock = Stopwatch.StartNew();
            await UntilStopped(stop.Token, () => Parallel.ForEachAsync(Enumerable.Range(round * perRound, perRound), new ParallelOptions { MaxDegreeOfParallelism = probeConcurrency, CancellationToken = stop.Token },
                async (i, ct) =>
                {
                    await probe.SendAsync(i, phase, ct);
                    if (server.HasExited)
                    {
                        await stop.CancelAsync();
                    }
                }));
            phaseTime[phase.Name] += phaseClock.Elapsed;
            await attackStop.CancelAsync();
            await Task.WhenAll(attackers);
        }
    }

    loads.Add($"after the latency phases {LoadAverage()}");
    var cutShort = stop.IsCancellationRequested;
    var answers = false;
    if (!server.HasExited)
    {
        samples.Add(("after the latency phases", Rss(server)));
        await Task.Delay(TimeSpan.FromSeconds(10));
        samples.Add(("after 10 s idle", Rss(server)));
        try
        {
            using var healthNow = await http.GetAsync(new Uri("/health", UriKind.Relative));
            answers = healthNow.IsSuccessStatusCode && await Send(http, Kind.Whole, new Random(1), hostileNames, CancellationToken.None) == "ok";
        }
        catch (HttpRequestException)
        {
        }
    }

    var sameProcess = !server.HasExited && server.Id == serverPid;
    await stop.CancelAsync();
    await monitor;

    if (cutShort)
    {
        Console.WriteLine($"STOPPED EARLY ({(server.HasExited ? "the server process exited" : "deadline")}); figures below are up to then.");
    }

    Console.WriteLine($"# Soak: {done} requests, concurrency {concurrency}, {elapsed.TotalSeconds:0} s ({done / elapsed.TotalSeconds:0.0} req/s)");
    Console.WriteLine();
    outcomes.Print("outcome");

    Console.WriteLine();
    Console.WriteLine("| requests done | server RSS MiB |");
    Console.WriteLine("|---|---|");
    foreach (var (n, rss) in samples)
    {
        Console.WriteLine($"| {n} | {rss / 1048576.0:0.0} |");
    }

    Console.WriteLine();
    Console.WriteLine($"# Latency: {rounds} rounds of {perRound} normal requests per phase (half whole with max_tokens {probeTokens}, half streamed), {probeConcurrency} at a time; attack lane {attackConcurrency} at a time");
    Console.WriteLine();
    Console.WriteLine("| phase, measure | requests | p50 ms | p95 ms | p99 ms |");
    Console.WriteLine("|---|---|---|---|---|");
    foreach (var phase in new[] { baseline, attack })
    {
        Console.WriteLine(LatencyProbe.Row($"{phase.Name}, whole completion", phase.WholeMs));
        Console.WriteLine(LatencyProbe.Row($"{phase.Name}, stream to first token", phase.FirstTokenMs));
    }

    var wholeRatio = LatencyProbe.Percentile(attack.WholeMs, 95) / LatencyProbe.Percentile(baseline.WholeMs, 95);
    var firstRatio = LatencyProbe.Percentile(attack.FirstTokenMs, 95) / LatencyProbe.Percentile(baseline.FirstTokenMs, 95);
    Console.WriteLine();
    Console.WriteLine($"p95 attack / baseline: whole {wholeRatio:0.00}, first token {firstRatio:0.00} (target within 2): {(wholeRatio <= 2 && firstRatio <= 2 ? "yes" : "NO")}");
    foreach (var phase in new[] { baseline, attack })
    {
        Console.WriteLine($"{phase.Name}: {phaseTime[phase.Name].TotalSeconds:0} s, {phase.CompletionTokens} completion tokens, {phase.Failed} failed");
    }

    Console.WriteLine();
    attackOutcomes.Print("attack lane outcome");

    Console.WriteLine();
    var unexpected = outcomes.Unexpected + attackOutcomes.Unexpected + baseline.Failed + attack.Failed;
    var unhealthy = health.Where(h => h.Key != "200").Sum(h => h.Value);
    Console.WriteLine($"machine load average (1 min, {Environment.ProcessorCount} cores): {string.Join(", ", loads)}");
    Console.WriteLine($"/health during the run: {string.Join(", ", health.OrderBy(h => h.Key, StringComparer.Ordinal).Select(h => $"{h.Key} x{h.Value}"))}");
    Console.WriteLine($"server process {serverPid} the same and running at the end: {(sameProcess ? "yes" : "NO")}; still answers: {(answers ? "yes" : "NO")}; unexpected outcomes: {unexpected}");
    return answers && sameProcess && unexpected == 0 && unhealthy == 0 && done == requests && !cutShort ? 0 : 1;
}
finally
{
    await stop.CancelAsync();
    await monitor;
    await server.DisposeAsync();
    work.Delete(recursive: true);
}

// Other work on the machine shows here: a busy machine slows both latency phases, and the mix.
static string LoadAverage() => File.ReadAllText("/proc/loadavg").Split(' ')[0];

// Resident memory, or -1 once the process is gone (the report then says why).
static long Rss(ServerProcess server)
{
    try
    {
        return server.Memory().Rss;
    }
    catch (IOException)
    {
        return -1;
    }
}

// A bounded run that the deadline (or a dead server) may end early; the figures up to then are still reported.
static async Task UntilStopped(CancellationToken stop, Func<Task> run)
{
    try
    {
        await run();
    }
    catch (OperationCanceledException) when (stop.IsCancellationRequested)
    {
    }
}

// Hostile requests one after another until the phase ends; a request cut by the end is not counted.
static async Task Attack(HttpClient http, Random random, string[] names, Outcomes outcomes, CancellationToken ct)
{
    while (!ct.IsCancellationRequested)
    {
        string outcome;
        var started = Stopwatch.GetTimestamp();
        try
        {
            outcome = await Send(http, Kind.Hostile, random, names, ct);
        }
        catch (Exception) when (ct.IsCancellationRequested)
        {
            return;
        }

        if (!ct.IsCancellationRequested)
        {
            outcomes.Add(outcome, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }
}

static async Task<string> Send(HttpClient http, Kind kind, Random random, string[] hostileNames, CancellationToken ct)
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

            case Kind.Hostile:
                return await HostileRequests.SendAsync(http, hostileNames[random.Next(hostileNames.Length)], "soak", random, ct);

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
        return e is HttpRequestException { HttpRequestError: var error } ? $"UNEXPECTED {e.GetType().Name} ({error})" : $"UNEXPECTED {e.GetType().Name}";
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
    Hostile,
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
