using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Inference.Gguf;
using EdgeServer.OpenAi;
using EdgeServer.Telemetry;
using Microsoft.Extensions.Options;

namespace EdgeServer.Ollama;

/// <summary>
/// Ollama's native API under /api, for apps that only speak it (Home Assistant's Ollama integration, Open WebUI):
/// thin mappings onto the same engine, runner, admission, keys and request log as /v1.
/// </summary>
public static class OllamaEndpoints
{
    /// <summary>The Ollama release whose API shapes these routes follow; clients that gate features on the version read it.</summary>
    public const string ApiVersion = "0.12.0";

    public static RouteGroupBuilder MapOllamaApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Ollama");
        api.MapGet("/version", () => OllamaResults.Json(new OllamaVersionResponse(ApiVersion), OllamaJsonContext.Web.OllamaVersionResponse));
        api.MapGet("/tags", ListModels).Produces<OllamaTagsResponse>();
        api.MapGet("/ps", RunningModels).Produces<OllamaPsResponse>();
        api.MapPost("/show", ShowAsync).Produces<OllamaShowResponse>();
        api.MapPost("/chat", ChatAsync).Produces<OllamaChatResponse>();
        api.MapPost("/generate", GenerateAsync).Produces<OllamaGenerateResponse>();
        api.MapPost("/embed", EmbedAsync).Produces<OllamaEmbedResponse>();
        api.MapPost("/embeddings", EmbeddingsAsync).Produces<OllamaEmbeddingResponse>();
        foreach (var route in new[] { "/pull", "/push", "/create", "/copy" })
        {
            api.MapPost(route, NotImplemented).Produces<OllamaError>(StatusCodes.Status501NotImplemented);
        }

        api.MapDelete("/delete", NotImplemented).Produces<OllamaError>(StatusCodes.Status501NotImplemented);
        return api;
    }

    internal static async Task<IResult> ChatAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, RequestDeadline deadline, TimeProvider clock)
    {
        var started = clock.GetTimestamp();
        var body = await ReadAsync(context, OllamaJsonContext.Web.OllamaChatRequest);
        var model = OllamaMapper.ResolveModel(engine, body.Model);
        runner.SelectModel(model, outcome);
        if (body.Messages is not { Count: > 0 })
        {
            var reason = await LoadOrUnloadAsync(context, engine, deadline, model, body.KeepAlive);
            return OllamaResults.Json(new OllamaChatResponse(body.Model!, Now(clock), new OllamaMessage { Role = "assistant", Content = string.Empty }, true) { DoneReason = reason },
                OllamaJsonContext.Web.OllamaChatResponse);
        }

        var request = OllamaMapper.FromChat(body, model, runner.DefaultSampling(model), Thinks(engine, model));
        return await runner.RunAsync(context, outcome, request, OllamaFieldNames.Chat, new OllamaChatShape(body.Model!, clock, started), OllamaMapper.IsStreaming(body));
    }

    internal static async Task<IResult> GenerateAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, RequestDeadline deadline, TimeProvider clock)
    {
        var started = clock.GetTimestamp();
        var body = await ReadAsync(context, OllamaJsonContext.Web.OllamaGenerateRequest);
        var model = OllamaMapper.ResolveModel(engine, body.Model);
        runner.SelectModel(model, outcome);
        if (string.IsNullOrEmpty(body.Prompt) && string.IsNullOrEmpty(body.System))
        {
            var reason = await LoadOrUnloadAsync(context, engine, deadline, model, body.KeepAlive);
            return OllamaResults.Json(new OllamaGenerateResponse(body.Model!, Now(clock), string.Empty, true) { DoneReason = reason }, OllamaJsonContext.Web.OllamaGenerateResponse);
        }

        var request = OllamaMapper.FromGenerate(body, model, runner.DefaultSampling(model), Thinks(engine, model));
        return await runner.RunAsync(context, outcome, request, OllamaFieldNames.Generate, new OllamaGenerateShape(body.Model!, clock, started), OllamaMapper.IsStreaming(body));
    }

    private static bool Thinks(IInferenceEngine engine, string model) => engine.FindModel(model)?.Reasoning is not null;

    /// <summary>A request with nothing to generate loads the model, or with keep_alive 0 unloads it, as in Ollama.</summary>
    private static async Task<string> LoadOrUnloadAsync(HttpContext context, IInferenceEngine engine, RequestDeadline deadline, string model, JsonElement? keepAlive)
    {
        var own = OllamaMapper.KeepAlive(keepAlive);
        var unload = own == TimeSpan.Zero;
        await deadline.RunAsync(async ct =>
        {
            if (unload)
            {
                // As in Ollama, a busy model is unloaded once its requests finish; the reply does not wait for them.
                await engine.UnloadWhenIdleAsync(model, ct);
            }
            else
            {
                await engine.LoadAsync(model, own, ct);
            }

            return true;
        }, context.RequestAborted);
        return unload ? "unload" : "load";
    }

    internal static async Task<IResult> EmbedAsync(HttpContext context, IInferenceEngine engine, GenerationRunner runner, RequestDeadline deadline, GenerationOutcome outcome, TimeProvider clock)
    {
        var started = clock.GetTimestamp();
        var body = await ReadAsync(context, OllamaJsonContext.Web.OllamaEmbedRequest);
        var model = OllamaMapper.ResolveModel(engine, body.Model);
        runner.SelectModel(model, outcome);
        OllamaOptions.Read(body.Options, SamplingParameters.Default);
        OllamaMapper.KeepAlive(body.KeepAlive);
        var texts = body.Input switch
        {
            null or { ValueKind: JsonValueKind.Null } => [],
            { ValueKind: JsonValueKind.String } one => [WireReader.Text(one, "input")],
            { ValueKind: JsonValueKind.Array } list => list.EnumerateArray().Select(item => item.ValueKind == JsonValueKind.String ? WireReader.Text(item, "input") : throw OllamaResults.BadRequest("invalid input type")).ToList(),
            _ => throw OllamaResults.BadRequest("invalid input type"),
        };
        if (texts.Count == 0)
        {
            await LoadOrUnloadAsync(context, engine, deadline, model, body.KeepAlive);
            return OllamaResults.Json(new OllamaEmbedResponse(body.Model!, [], 0, 0, 0), OllamaJsonContext.Web.OllamaEmbedResponse);
        }

        // A list's texts are input[i]; a single string is input, as the request named it.
        IFieldNames names = body.Input is { ValueKind: JsonValueKind.Array } ? OllamaFieldNames.Chat : new OneEmbeddingText("input");
        var result = await EmbedTextsAsync(context, engine, deadline, model, texts, names);
        if (body.Dimensions is { } dimensions && dimensions != result.Dimensions)
        {
            throw OllamaResults.BadRequest($"dimensions is {dimensions}, but '{body.Model}' makes {result.Dimensions}-dimensional vectors and EdgeServer does not shorten them");
        }

        var total = clock.GetElapsedTime(started).Ticks * 100;
        return OllamaResults.Json(new OllamaEmbedResponse(body.Model!, result.Vectors, total, 0, result.PromptTokens), OllamaJsonContext.Web.OllamaEmbedResponse);
    }

    /// <summary>The older /api/embeddings: one prompt, one vector (empty for an empty prompt).</summary>
    internal static async Task<IResult> EmbeddingsAsync(HttpContext context, IInferenceEngine engine, GenerationRunner runner, RequestDeadline deadline, GenerationOutcome outcome)
    {
        var body = await ReadAsync(context, OllamaJsonContext.Web.OllamaEmbedRequest);
        var model = OllamaMapper.ResolveModel(engine, body.Model);
        runner.SelectModel(model, outcome);
        OllamaOptions.Read(body.Options, SamplingParameters.Default);
        OllamaMapper.KeepAlive(body.KeepAlive);
        if (string.IsNullOrEmpty(body.Prompt))
        {
            return OllamaResults.Json(new OllamaEmbeddingResponse([]), OllamaJsonContext.Web.OllamaEmbeddingResponse);
        }

        var result = await EmbedTextsAsync(context, engine, deadline, model, [body.Prompt], new OneEmbeddingText("prompt"));
        return OllamaResults.Json(new OllamaEmbeddingResponse(result.Vectors[0]), OllamaJsonContext.Web.OllamaEmbeddingResponse);
    }

    private static async Task<EmbeddingResult> EmbedTextsAsync(HttpContext context, IInferenceEngine engine, RequestDeadline deadline, string model, List<string> texts, IFieldNames names)
    {
        try
        {
            // Admitted as a generation: a place among the model's slots and queue, 429 when full.
            return await deadline.RunAsync(ct => new ValueTask<EmbeddingResult>(engine.EmbedAsync(model, texts.Select(t => new EmbeddingInput(t)).ToList(), ct)), context.RequestAborted);
        }
        catch (Exception e) when (e is InvalidGenerationParameterException or ContextLengthExceededException)
        {
            throw OpenAiException.From(e, names);
        }
    }

    /// <summary>This server's models and, on a gateway, every box's (each once, by the first box that lists it).</summary>
    internal static IResult ListModels(IInferenceEngine engine, Gateway.BoxDirectory boxes, IOptions<EdgeServerOptions> options)
    {
        var local = engine.ListModels().Where(m => m.Status != ModelStatus.Unavailable).ToList();
        var entries = local.Select(m => new OllamaModelEntry(OllamaMapper.Tagged(m.Id), OllamaMapper.Tagged(m.Id), Iso(m.Created), m.FileSize,
            Digest(m.Id, m.FileSize, m.Created), Details(m.Architecture, m.ParameterCount, m.Quantization))).ToList();
        entries.AddRange(BoxModels(local, boxes, options).Select(m => new OllamaModelEntry(OllamaMapper.Tagged(m.Id), OllamaMapper.Tagged(m.Id),
            Iso(DateTimeOffset.FromUnixTimeSeconds(m.Created)), m.Details.FileSize, Digest(m.Id, m.Details.FileSize, DateTimeOffset.FromUnixTimeSeconds(m.Created)),
            Details(m.Details.Architecture, m.Details.Parameters, m.Details.Quantization))));
        return OllamaResults.Json(new OllamaTagsResponse(entries), OllamaJsonContext.Web.OllamaTagsResponse);
    }

    /// <summary>Loaded models (on a gateway, the boxes' too); a model with requests, or kept until it must make room, shows no expiry as the far future.</summary>
    internal static IResult RunningModels(IInferenceEngine engine, Gateway.BoxDirectory boxes, IOptions<EdgeServerOptions> options)
    {
        var all = engine.ListModels();
        var running = all.Where(m => m.Status == ModelStatus.Loaded)
            .Select(m => new OllamaRunningModel(OllamaMapper.Tagged(m.Id), OllamaMapper.Tagged(m.Id), m.MemoryBytes, Digest(m.Id, m.FileSize, m.Created),
                Details(m.Architecture, m.ParameterCount, m.Quantization), Iso(m.ExpiresAt ?? DateTimeOffset.MaxValue), 0)).ToList();
        running.AddRange(BoxModels(all.Where(m => m.Status != ModelStatus.Unavailable).ToList(), boxes, options).Where(m => m.Details.Status == "loaded")
            .Select(m => new OllamaRunningModel(OllamaMapper.Tagged(m.Id), OllamaMapper.Tagged(m.Id), m.Details.MemoryBytes,
                Digest(m.Id, m.Details.FileSize, DateTimeOffset.FromUnixTimeSeconds(m.Created)), Details(m.Details.Architecture, m.Details.Parameters, m.Details.Quantization),
                Iso(m.Details.ExpiresAt is { } expires ? DateTimeOffset.FromUnixTimeSeconds(expires) : DateTimeOffset.MaxValue), 0)));
        return OllamaResults.Json(new OllamaPsResponse(running), OllamaJsonContext.Web.OllamaPsResponse);
    }

    /// <summary>On a gateway, the models the boxes list that this server does not serve itself; elsewhere none.</summary>
    private static IEnumerable<ModelDto> BoxModels(IReadOnlyList<ModelDescriptor> local, Gateway.BoxDirectory boxes, IOptions<EdgeServerOptions> options) =>
        options.Value.Gateway.Enabled
            ? Gateway.GatewayHosting.Union([], boxes).Where(m => !local.Any(l => l.Id == m.Id))
            : [];

    internal static async Task<IResult> ShowAsync(HttpContext context, IInferenceEngine engine)
    {
        var body = await ReadAsync(context, OllamaJsonContext.Web.OllamaShowRequest);
        var name = OllamaMapper.ResolveModel(engine, body.Model ?? body.Name);
        var m = engine.FindModel(name) ?? throw new ModelNotFoundException(name);
        GgufFile? gguf = null;
        try
        {
            // An unavailable file may be no model at all (a FIFO would block the read): it shows without metadata.
            gguf = m.Status == ModelStatus.Unavailable ? null : GgufReader.Read(m.Path);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or FormatException or GgufFormatException)
        {
            // The catalog checked the file when it found it; gone or changed since, it shows without metadata.
        }

        var parameters = Parameters(m.Sampling);
        var modelfile = new StringBuilder("# Modelfile generated by EdgeServer; TEMPLATE would be the model's Jinja chat template\nFROM ").Append(m.Id).Append('\n');
        foreach (var line in parameters.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            modelfile.Append("PARAMETER ").Append(line).Append('\n');
        }

        var capabilities = new List<string> { "completion", "tools" };
        if (m.Reasoning is not null)
        {
            capabilities.Add("thinking");
        }

        if (gguf?.Architecture is { } arch && gguf.Metadata.ContainsKey($"{arch}.pooling_type"))
        {
            capabilities.Add("embedding");
        }

        return OllamaResults.Json(new OllamaShowResponse(modelfile.ToString(), parameters, gguf?.ChatTemplate ?? string.Empty, Details(m.Architecture, m.ParameterCount, m.Quantization), ModelInfo(gguf, m, body.Verbose == true), capabilities, Iso(m.Created)),
            OllamaJsonContext.Web.OllamaShowResponse);
    }

    internal static IResult NotImplemented(HttpContext context) => Results.Json(
        new OllamaError($"{context.Request.Path.Value!["/api/".Length..]} is not supported: EdgeServer serves the GGUF files in its models folder (EdgeServer:ModelsDirectory); put a model there and it is listed by /api/tags."),
        OllamaJsonContext.Web.OllamaError, contentType: "application/json; charset=utf-8", statusCode: StatusCodes.Status501NotImplemented);

    private static Task<T> ReadAsync<T>(HttpContext context, JsonTypeInfo<T> typeInfo)
        where T : class => OpenAiResults.ReadBodyAsync(context.Request, typeInfo, context.RequestAborted, anyContentType: true);

    private static string Now(TimeProvider clock) => Iso(clock.GetUtcNow());

    private static string Iso(DateTimeOffset time) => time.UtcDateTime.ToString("o", CultureInfo.InvariantCulture);

    /// <summary>Ollama's digest is its manifest's hash; here a stable stand-in from the id, size and time (hashing gigabytes per listing would be too slow).</summary>
    private static string Digest(string id, long fileSize, DateTimeOffset created) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{id}\n{fileSize}\n{created.UtcTicks}"))));

    private static OllamaModelDetails Details(string? architecture, ulong parameters, string? quantization)
    {
        var family = architecture ?? "unknown";
        return new OllamaModelDetails(string.Empty, "gguf", family, [family], ParameterSize(parameters), quantization ?? "unknown");
    }

    /// <summary>"8.0B", "1.2B", "135.3M", as Ollama shows sizes.</summary>
    private static string ParameterSize(ulong count) => count switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{count / 1e9:0.0}B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{count / 1e6:0.##}M"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{count / 1e3:0.##}K"),
    };

    /// <summary>The model's default sampling as Ollama lists parameters: a name, spaces, a value per line.</summary>
    private static string Parameters(SamplingParameters s)
    {
        var text = new StringBuilder();
        void Add(string name, object value) => text.Append(CultureInfo.InvariantCulture, $"{name,-30} {value}\n");
        Add("temperature", s.Temperature);
        Add("top_k", s.TopK);
        Add("top_p", s.TopP);
        Add("min_p", s.MinP);
        Add("repeat_penalty", s.RepeatPenalty);
        Add("repeat_last_n", s.RepeatLastN);
        Add("presence_penalty", s.PresencePenalty);
        Add("frequency_penalty", s.FrequencyPenalty);
        return text.ToString().TrimEnd('\n');
    }

    /// <summary>The GGUF metadata: numbers, strings and booleans as they are; arrays empty unless <paramref name="verbose"/> and short.</summary>
    private static JsonElement ModelInfo(GgufFile? gguf, ModelDescriptor m, bool verbose)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (gguf is not null)
            {
                foreach (var (key, value) in gguf.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    json.WritePropertyName(key);
                    WriteValue(json, value, verbose);
                }
            }

            if (gguf?.Metadata.ContainsKey("general.parameter_count") != true)
            {
                json.WriteNumber("general.parameter_count", m.ParameterCount);
            }

            json.WriteEndObject();
        }

        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        return document.RootElement.Clone();
    }

    private static void WriteValue(Utf8JsonWriter json, object? value, bool verbose)
    {
        switch (value)
        {
            case string s: json.WriteStringValue(s); break;
            case bool b: json.WriteBooleanValue(b); break;
            case float f when float.IsFinite(f): json.WriteNumberValue(f); break;
            case double d when double.IsFinite(d): json.WriteNumberValue(d); break;
            case byte or sbyte or short or ushort or int or uint or long: json.WriteNumberValue(Convert.ToInt64(value, CultureInfo.InvariantCulture)); break;
            case ulong ul: json.WriteNumberValue(ul); break;
            case GgufArray array:
                json.WriteStartArray();
                if (verbose && array.Values is { } values)
                {
                    foreach (var item in values)
                    {
                        WriteValue(json, item, verbose);
                    }
                }

                json.WriteEndArray();
                break;
            default: json.WriteNullValue(); break;
        }
    }

    /// <summary>A request with one text to embed, named <paramref name="name"/> (<c>input</c> of /api/embed, <c>prompt</c> of /api/embeddings).</summary>
    private sealed class OneEmbeddingText(string name) : IFieldNames
    {
        public string Name(FieldRef field) => field.Field == GenerationField.EmbeddingInput ? name : OllamaFieldNames.Chat.Name(field);

        public string Setting(GenerationLimit limit) => OllamaFieldNames.Chat.Setting(limit);
    }
}
