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
        return v1;
    }

    internal static async Task<IResult> ChatCompletionsAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, TimeProvider clock)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.ChatCompletionRequest, context.RequestAborted);
        var (request, names) = ChatMapper.FromChat(body);
        var shape = new ChatShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine), request.Logprobs, ChatMapper.IncludeUsage(body));
        return await runner.RunAsync(context, outcome, request, names, shape, ChatMapper.IsStreaming(body));
    }

    internal static async Task<IResult> CompletionsAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, TimeProvider clock, IOptions<EdgeServerOptions> options)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CompletionRequest, context.RequestAborted);
        var (request, names) = ChatMapper.FromCompletion(body, options.Value.Limits.MaxTokens);
        var shape = new CompletionShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine), request.Logprobs, ChatMapper.IncludeUsage(body));
        return await runner.RunAsync(context, outcome, request, names, shape, ChatMapper.IsStreaming(body));
    }

    internal static IResult ListModels(IInferenceEngine engine) =>
        OpenAiResults.Json(new ModelList("list", engine.ListModels().Select(ToDto).ToList()), OpenAiJsonContext.Web.ModelList);

    internal static IResult GetModel(string id, IInferenceEngine engine) => engine.FindModel(id) is { } model
        ? OpenAiResults.Json(ToDto(model), OpenAiJsonContext.Web.ModelDto)
        : throw OpenAiException.From(new ModelNotFoundException(id));

    private static ModelDto ToDto(ModelDescriptor m) => new(m.Id, "model", m.Created.ToUnixTimeSeconds(), "edgeserver",
        new ModelDetails(m.Status.ToString().ToLowerInvariant(), m.Error, m.Architecture, m.Quantization, m.ParameterCount, m.FileSize, m.ContextLength, m.ChatTemplate));

    private static string Fingerprint(IInferenceEngine engine) => $"fp_edgeserver_llama.cpp-{engine.RuntimeVersion}";
}
