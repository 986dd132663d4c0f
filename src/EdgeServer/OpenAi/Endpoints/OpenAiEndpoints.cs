using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Telemetry;
using Microsoft.Extensions.Options;

namespace EdgeServer.OpenAi;

/// <summary>The OpenAI-compatible routes under /v1.</summary>
public static class OpenAiEndpoints
{
    public static RouteGroupBuilder MapOpenAiApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").WithTags("OpenAI");
        v1.MapPost("/chat/completions", ChatCompletionsAsync)
            .Accepts<ChatCompletionRequest>("application/json")
            .Produces<ChatCompletionResponse>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest);
        v1.MapPost("/completions", CompletionsAsync)
            .Accepts<CompletionRequest>("application/json")
            .Produces<CompletionResponse>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest);
        v1.MapEmbeddings();
        v1.MapResponses();
        v1.MapGet("/models", ListModels).Produces<ModelList>();
        v1.MapGet("/models/{**id}", GetModel).Produces<ModelDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        v1.MapPost("/models/{**action}", ModelActionAsync)
            .WithSummary("POST /v1/models/{id}/load loads a model now; POST /v1/models/{id}/unload frees it (?wait=false: 409 while it has requests).")
            .Produces<ModelDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound).Produces<ErrorResponse>(StatusCodes.Status409Conflict).Produces<ErrorResponse>(StatusCodes.Status507InsufficientStorage);
        return v1;
    }

    internal static async Task<IResult> ChatCompletionsAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, TimeProvider clock)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.ChatCompletionRequest, context.RequestAborted);
        var (request, names) = ChatMapper.FromChat(body, runner.DefaultSampling(body.Model));
        var shape = new ChatShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine), request.Logprobs, ChatMapper.IncludeUsage(body));
        return await runner.RunAsync(context, outcome, request, names, shape, ChatMapper.IsStreaming(body));
    }

    internal static async Task<IResult> CompletionsAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, TimeProvider clock, IOptions<EdgeServerOptions> options)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CompletionRequest, context.RequestAborted);
        var (request, names) = ChatMapper.FromCompletion(body, runner.DefaultSampling(body.Model), options.Value.Limits.MaxTokens);
        var shape = new CompletionShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine), request.Logprobs, ChatMapper.IncludeUsage(body));
        return await runner.RunAsync(context, outcome, request, names, shape, ChatMapper.IsStreaming(body));
    }

    internal static IResult ListModels(IInferenceEngine engine, Gateway.BoxDirectory boxes, IOptions<EdgeServerOptions> options)
    {
        var memory = engine.Memory;
        var models = engine.ListModels().Select(ToDto).ToList();
        return OpenAiResults.Json(new ModelList("list", options.Value.Gateway.Enabled ? Gateway.GatewayHosting.Union(models, boxes) : models, new MemoryDto(memory.BudgetBytes, memory.UsedBytes)), OpenAiJsonContext.Web.ModelList);
    }

    /// <summary>One model by id or alias; on a gateway, a box's model too (with the boxes that have it).</summary>
    internal static IResult GetModel(string id, IInferenceEngine engine, Gateway.BoxDirectory boxes, IOptions<EdgeServerOptions> options)
    {
        if (engine.FindModel(id) is { } model)
        {
            return OpenAiResults.Json(ToDto(model), OpenAiJsonContext.Web.ModelDto);
        }

        var remote = options.Value.Gateway.Enabled
            ? Gateway.GatewayHosting.Union([], boxes).FirstOrDefault(m => m.Id == id || m.Details.Aliases?.Contains(id, StringComparer.Ordinal) == true)
            : null;
        return remote is not null
            ? OpenAiResults.Json(remote, OpenAiJsonContext.Web.ModelDto)
            : throw OpenAiException.From(new ModelNotFoundException(id));
    }

    /// <summary>{id}/load or {id}/unload (ids may hold slashes, so the action is the last segment).</summary>
    internal static async Task<IResult> ModelActionAsync(string action, HttpContext context, IInferenceEngine engine, RequestDeadline deadline, GenerationOutcome outcome)
    {
        var cut = action.LastIndexOf('/');
        var (id, verb) = cut > 0 ? (action[..cut], action[(cut + 1)..]) : (action, string.Empty);
        if (verb is not ("load" or "unload"))
        {
            throw new OpenAiException(StatusCodes.Status404NotFound, $"Unknown request URL: POST /v1/models/{action}. Use /v1/models/{{id}}/load or /v1/models/{{id}}/unload.", "invalid_request_error", null, "unknown_url");
        }

        var model = engine.FindModel(id) ?? throw new ModelNotFoundException(id);
        outcome.Model = model.Id;
        var wait = context.Request.Query["wait"].ToString() switch
        {
            "" or "true" => true,
            "false" => false,
            var other => throw OpenAiException.InvalidRequest($"Invalid value for 'wait': '{other}'. Use true or false.", "wait", "invalid_value"),
        };
        await deadline.RunAsync(async ct =>
        {
            if (verb == "load")
            {
                await engine.LoadAsync(id, cancellationToken: ct);
            }
            else
            {
                await engine.UnloadAsync(id, wait, ct);
            }

            return true;
        }, context.RequestAborted);
        return OpenAiResults.Json(ToDto(engine.FindModel(id) ?? throw new ModelNotFoundException(id)), OpenAiJsonContext.Web.ModelDto);
    }

    internal static ModelDto ToDto(ModelDescriptor m) => new(m.Id, "model", m.Created.ToUnixTimeSeconds(), "edgeserver",
        new ModelDetails(m.Status.ToString().ToLowerInvariant(), m.Error, m.Architecture, m.Quantization, m.ParameterCount, m.FileSize, m.ContextLength, m.ChatTemplate,
            m.MemoryBytes, m.MemoryParts, m.ExpiresAt?.ToUnixTimeSeconds(), m.Aliases.Count > 0 ? m.Aliases : null) { Requests = m.Requests });

    private static string Fingerprint(IInferenceEngine engine) => $"fp_edgeserver_llama.cpp-{engine.RuntimeVersion}";
}
