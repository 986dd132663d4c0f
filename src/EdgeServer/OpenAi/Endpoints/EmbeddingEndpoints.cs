using System.Runtime.InteropServices;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Telemetry;

namespace EdgeServer.OpenAi;

/// <summary>/v1/embeddings, and llama-server's /tokenize and /detokenize.</summary>
public static class EmbeddingEndpoints
{
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

    internal static async Task<IResult> EmbeddingsAsync(HttpContext context, IInferenceEngine engine, GenerationRunner runner, RequestDeadline deadline, GenerationOutcome outcome)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.EmbeddingRequest, context.RequestAborted);
        WireReader.RejectUnrecognized(body.Unrecognized, string.Empty);
        var model = WireReader.RequireModel(body.Model);
        var inputs = ReadInputs(body.Input);
        var base64 = body.EncodingFormat switch
        {
            null or "float" => false,
            "base64" => true,
            _ => throw OpenAiException.InvalidRequest($"Invalid value for 'encoding_format': '{body.EncodingFormat}'. Supported values are: 'float' and 'base64'.", "encoding_format", "invalid_value"),
        };
        runner.SelectModel(model, outcome);

        // The engine admits it as a generation: a place among the model's slots and queue, 429 when full.
        EmbeddingResult result;
        try
        {
            result = await deadline.RunAsync(ct => new ValueTask<EmbeddingResult>(engine.EmbedAsync(model, inputs, ct)), context.RequestAborted);
        }
        catch (InvalidGenerationParameterException e)
        {
            throw OpenAiException.From(e, new EmbeddingFieldNames(body.Input is { ValueKind: JsonValueKind.Array } list && list.GetArrayLength() > 0 && list[0].ValueKind != JsonValueKind.Number));
        }

        if (body.Dimensions is { } dimensions && dimensions != result.Dimensions)
        {
            throw OpenAiException.InvalidRequest($"'dimensions' is {dimensions}, but '{model}' makes {result.Dimensions}-dimensional vectors and EdgeServer does not shorten them.", "dimensions", "unsupported_value");
        }

        var data = result.Vectors.Select((v, i) => new EmbeddingDto("embedding", i, base64
            ? JsonSerializer.SerializeToElement(Convert.ToBase64String(MemoryMarshal.AsBytes(v.AsSpan())), OpenAiJsonContext.Web.String)
            : JsonSerializer.SerializeToElement(v, OpenAiJsonContext.Web.SingleArray))).ToList();
        return OpenAiResults.Json(new EmbeddingList("list", data, model, new EmbeddingUsage(result.PromptTokens, result.PromptTokens)), OpenAiJsonContext.Web.EmbeddingList);
    }

    /// <summary>A string, an array of strings, token ids, or arrays of token ids; what they hold the engine checks.</summary>
    private static List<EmbeddingInput> ReadInputs(JsonElement? input)
    {
        if (input is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("input");
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return [new EmbeddingInput(WireReader.Text(value, "input"))];
        }

        if (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() > 0 && value[0].ValueKind == JsonValueKind.Number)
        {
            return [new EmbeddingInput(null, Tokens(value, "input"))];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.InvalidType("input", "a string, an array of strings, or token ids");
        }

        var inputs = new List<EmbeddingInput>();
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            var param = $"input[{i++}]";
            inputs.Add(item.ValueKind switch
            {
                JsonValueKind.String => new EmbeddingInput(WireReader.Text(item, param)),
                JsonValueKind.Array => new EmbeddingInput(null, Tokens(item, param)),
                _ => throw OpenAiException.InvalidType(param, "a string or an array of token ids"),
            });
        }

        return inputs;
    }

    private static int[] Tokens(JsonElement array, string param)
    {
        var tokens = new List<int>();
        foreach (var t in array.EnumerateArray())
        {
            tokens.Add(t.ValueKind == JsonValueKind.Number && t.TryGetInt32(out var id) ? id : throw OpenAiException.InvalidType(param, "an array of integer token ids"));
        }

        return tokens.ToArray();
    }

    internal static async Task<IResult> TokenizeAsync(HttpContext context, IInferenceEngine engine)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.TokenizeRequest, context.RequestAborted);
        WireReader.RejectUnrecognized(body.Unrecognized, string.Empty);
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
        WireReader.RejectUnrecognized(body.Unrecognized, string.Empty);
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
