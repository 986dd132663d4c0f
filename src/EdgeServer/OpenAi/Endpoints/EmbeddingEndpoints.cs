using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.OpenAi;

/// <summary>/v1/embeddings, and llama-server's /tokenize and /detokenize.</summary>
public static class EmbeddingEndpoints
{
    private const int MaxInputs = 2048;

    public static void MapEmbeddings(this RouteGroupBuilder v1) =>
        v1.MapPost("/embeddings", EmbeddingsAsync)
            .Accepts<EmbeddingRequest>("application/json")
            .Produces<EmbeddingList>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest);

    /// <summary>Maps /tokenize and /detokenize at the root, where llama-server has them.</summary>
    public static RouteGroupBuilder MapTokenizer(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup(string.Empty).WithTags("Tokenizer");
        group.MapPost("/tokenize", TokenizeAsync).Accepts<TokenizeRequest>("application/json").Produces<TokenizeResponse>();
        group.MapPost("/detokenize", DetokenizeAsync).Accepts<DetokenizeRequest>("application/json").Produces<DetokenizeResponse>();
        return group;
    }

    internal static async Task<IResult> EmbeddingsAsync(HttpContext context, IInferenceEngine engine, Admission admission, IOptions<EdgeServerOptions> options)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.EmbeddingRequest, context.RequestAborted);
        RequestMapper.RejectUnrecognized(body.Unrecognized, string.Empty);
        var model = string.IsNullOrEmpty(body.Model) ? throw OpenAiException.MissingParameter("model") : body.Model;
        var inputs = ReadInputs(body.Input, options.Value.Limits);
        var base64 = body.EncodingFormat switch
        {
            null or "float" => false,
            "base64" => true,
            _ => throw OpenAiException.InvalidRequest($"Invalid value for 'encoding_format': '{body.EncodingFormat}'. Supported values are: 'float' and 'base64'.", "encoding_format", "invalid_value"),
        };
        if (engine.FindModel(model) is null)
        {
            throw new ModelNotFoundException(model);
        }

        if (context.Features.Get<EdgeServer.Telemetry.GenerationOutcome>() is { } outcome)
        {
            outcome.Model = model;
        }

        // The same admission as generation: a place among the model's slots, the deadline, 429 when full.
        var result = await admission.RunAsync(model, ct => new ValueTask<EmbeddingResult>(engine.EmbedAsync(model, inputs, ct)), context.RequestAborted);
        if (body.Dimensions is { } dimensions && dimensions != result.Dimensions)
        {
            throw OpenAiException.InvalidRequest($"'dimensions' is {dimensions}, but '{model}' makes {result.Dimensions}-dimensional vectors and EdgeServer does not shorten them.", "dimensions", "unsupported_value");
        }

        var data = result.Vectors.Select((v, i) => new EmbeddingDto("embedding", i, base64
            ? JsonSerializer.SerializeToElement(Convert.ToBase64String(MemoryMarshal.AsBytes(v.AsSpan())), OpenAiJsonContext.Web.String)
            : JsonSerializer.SerializeToElement(v, OpenAiJsonContext.Web.SingleArray))).ToList();
        return OpenAiResults.Json(new EmbeddingList("list", data, model, new EmbeddingUsage(result.PromptTokens, result.PromptTokens)), OpenAiJsonContext.Web.EmbeddingList);
    }

    private static List<EmbeddingInput> ReadInputs(JsonElement? input, LimitsOptions limits)
    {
        if (input is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("input");
        }

        var inputs = new List<EmbeddingInput>();
        if (value.ValueKind == JsonValueKind.String)
        {
            inputs.Add(Text(value, "input", limits));
        }
        else if (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0 && value[0].ValueKind == JsonValueKind.Number)
        {
            inputs.Add(new EmbeddingInput(null, Tokens(value, "input")));
        }
        else if (value.ValueKind == JsonValueKind.Array)
        {
            var i = 0;
            foreach (var item in value.EnumerateArray())
            {
                var param = $"input[{i++}]";
                inputs.Add(item.ValueKind switch
                {
                    JsonValueKind.String => Text(item, param, limits),
                    JsonValueKind.Array => new EmbeddingInput(null, Tokens(item, param)),
                    _ => throw OpenAiException.InvalidType(param, "a string or an array of token ids"),
                });
            }
        }
        else
        {
            throw OpenAiException.InvalidType("input", "a string, an array of strings, or token ids");
        }

        if (inputs.Count == 0)
        {
            throw OpenAiException.InvalidRequest("'input' must not be empty.", "input", "invalid_value");
        }

        return inputs.Count > MaxInputs
            ? throw OpenAiException.InvalidRequest($"'input' has {inputs.Count} items; the limit is {MaxInputs}.", "input", "array_above_max_length")
            : inputs;
    }

    private static EmbeddingInput Text(JsonElement value, string param, LimitsOptions limits)
    {
        var text = RequestMapper.Text(value, param);
        if (text.Length == 0)
        {
            throw OpenAiException.InvalidRequest($"'{param}' must not be empty.", param, "invalid_value");
        }

        return text.Length > limits.MaxMessageChars
            ? throw RequestMapper.Limit(param, $"'{param}' has {text.Length} characters", limits.MaxMessageChars, nameof(limits.MaxMessageChars))
            : new EmbeddingInput(text);
    }

    private static int[] Tokens(JsonElement array, string param)
    {
        var tokens = new List<int>();
        foreach (var t in array.EnumerateArray())
        {
            tokens.Add(t.ValueKind == JsonValueKind.Number && t.TryGetInt32(out var id) ? id : throw OpenAiException.InvalidType(param, "an array of integer token ids"));
        }

        return tokens.Count == 0 ? throw OpenAiException.InvalidRequest($"'{param}' must not be empty.", param, "invalid_value") : tokens.ToArray();
    }

    internal static async Task<IResult> TokenizeAsync(HttpContext context, IInferenceEngine engine)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.TokenizeRequest, context.RequestAborted);
        RequestMapper.RejectUnrecognized(body.Unrecognized, string.Empty);
        var model = ResolveModel(engine, body.Model);
        var content = body.Content ?? throw OpenAiException.MissingParameter("content");
        var pieces = await engine.TokenizeAsync(model, content, body.AddSpecial == true, body.ParseSpecial != false, context.RequestAborted);
        return body.WithPieces == true
            ? OpenAiResults.Json(new TokenizeWithPiecesResponse(pieces.Select(p => new TokenPieceDto(p.Id, p.Piece)).ToList()), OpenAiJsonContext.Web.TokenizeWithPiecesResponse)
            : OpenAiResults.Json(new TokenizeResponse(pieces.Select(p => p.Id).ToList()), OpenAiJsonContext.Web.TokenizeResponse);
    }

    internal static async Task<IResult> DetokenizeAsync(HttpContext context, IInferenceEngine engine)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.DetokenizeRequest, context.RequestAborted);
        RequestMapper.RejectUnrecognized(body.Unrecognized, string.Empty);
        var model = ResolveModel(engine, body.Model);
        var tokens = body.Tokens ?? throw OpenAiException.MissingParameter("tokens");
        return OpenAiResults.Json(new DetokenizeResponse(await engine.DetokenizeAsync(model, tokens, context.RequestAborted)), OpenAiJsonContext.Web.DetokenizeResponse);
    }

    /// <summary>The named model, or the only servable one when none is named (as llama-server serves one).</summary>
    private static string ResolveModel(IInferenceEngine engine, string? model)
    {
        if (!string.IsNullOrEmpty(model))
        {
            return engine.FindModel(model) is null ? throw new ModelNotFoundException(model) : model;
        }

        var servable = engine.ListModels().Where(m => m.Status != ModelStatus.Unavailable).ToList();
        return servable.Count == 1
            ? servable[0].Id
            : throw OpenAiException.InvalidRequest($"'model' is required: this server has {servable.Count} models ({string.Join(", ", servable.Select(m => m.Id))}).", "model", "missing_required_parameter");
    }
}
