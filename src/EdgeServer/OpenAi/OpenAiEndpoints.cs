using System.Text;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Telemetry;
using Microsoft.Extensions.Options;

namespace EdgeServer.OpenAi;

/// <summary>The OpenAI-compatible routes under /v1.</summary>
public static partial class OpenAiEndpoints
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
        v1.MapGet("/models", ListModels).Produces<ModelList>();
        v1.MapGet("/models/{**id}", GetModel).Produces<ModelDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return v1;
    }

    internal static async Task<IResult> ChatCompletionsAsync(HttpContext context, IInferenceEngine engine, Admission admission, TimeProvider clock, IOptions<EdgeServerOptions> options, ILoggerFactory loggers)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.ChatCompletionRequest, context.RequestAborted);
        var request = RequestMapper.FromChat(body, options.Value.Limits);
        var shape = new ChatShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine));
        return await GenerateAsync(context, engine, admission, request, shape, RequestMapper.IsStreaming(body), RequestMapper.IncludeUsage(body), loggers);
    }

    internal static async Task<IResult> CompletionsAsync(HttpContext context, IInferenceEngine engine, Admission admission, TimeProvider clock, IOptions<EdgeServerOptions> options, ILoggerFactory loggers)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CompletionRequest, context.RequestAborted);
        var request = RequestMapper.FromCompletion(body, options.Value.Limits);
        var shape = new CompletionShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine));
        return await GenerateAsync(context, engine, admission, request, shape, RequestMapper.IsStreaming(body), RequestMapper.IncludeUsage(body), loggers);
    }

    internal static IResult ListModels(IInferenceEngine engine) =>
        OpenAiResults.Json(new ModelList("list", engine.ListModels().Select(ToDto).ToList()), OpenAiJsonContext.Web.ModelList);

    internal static IResult GetModel(string id, IInferenceEngine engine) => engine.FindModel(id) is { } model
        ? OpenAiResults.Json(ToDto(model), OpenAiJsonContext.Web.ModelDto)
        : throw OpenAiException.From(new ModelNotFoundException(id));

    private static async Task<IResult> GenerateAsync(HttpContext context, IInferenceEngine engine, Admission admission, GenerationRequest request,
        IResponseShape shape, bool stream, bool includeUsage, ILoggerFactory loggers)
    {
        // An unknown model is refused before it takes a place in any queue.
        if (engine.FindModel(request.Model) is null)
        {
            throw new ModelNotFoundException(request.Model);
        }

        var sse = stream ? new ServerSentEvents(context.Response) : null;
        try
        {
            return await admission.RunAsync(request.Model, ct => GenerateAdmittedAsync(context, engine, request, shape, sse, includeUsage, loggers, ct), context.RequestAborted);
        }
        catch (Polly.Timeout.TimeoutRejectedException e) when (sse is { Started: true })
        {
            // The deadline passed mid-stream: headers are gone, so the error is the last event.
            await sse.WriteAsync(OpenAiException.From(e).ToResponse(), OpenAiJsonContext.Web.ErrorResponse, CancellationToken.None);
            return Results.Empty;
        }
    }

    private static async ValueTask<IResult> GenerateAdmittedAsync(HttpContext context, IInferenceEngine engine, GenerationRequest request,
        IResponseShape shape, ServerSentEvents? sse, bool includeUsage, ILoggerFactory loggers, CancellationToken aborted)
    {
        var outcome = context.Features.Get<GenerationOutcome>();
        if (outcome is not null)
        {
            outcome.Model = request.Model;
        }

        // Every error up to here, and any from admission, is still an ordinary JSON error response.
        var session = await engine.StartAsync(request, aborted);
        if (sse is null)
        {
            var text = new StringBuilder();
            await foreach (var chunk in session.ReadAllAsync(aborted))
            {
                text.Append(chunk.Text);
                if (chunk.IsFinal)
                {
                    Record(outcome, chunk);
                    return shape.Complete(text.ToString(), chunk.FinishReason!.Value, chunk.Usage!);
                }
            }

            throw new OperationCanceledException("The generation ended without a result.");
        }

        await sse.StartAsync(aborted);
        try
        {
            await shape.WriteFirstAsync(sse, aborted);
            await foreach (var chunk in session.ReadAllAsync(aborted))
            {
                if (chunk.Text.Length > 0)
                {
                    await shape.WriteTextAsync(sse, chunk.Text, aborted);
                }

                if (chunk.IsFinal)
                {
                    Record(outcome, chunk);
                    await shape.WriteFinishAsync(sse, chunk.FinishReason!.Value, aborted);
                    if (includeUsage)
                    {
                        await shape.WriteUsageAsync(sse, chunk.Usage!, aborted);
                    }

                    await sse.WriteDoneAsync(aborted);
                    break;
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException && !context.RequestAborted.IsCancellationRequested)
        {
            // Headers are gone; the error travels as a last event, as llama-server does.
            var error = OpenAiException.From(e);
            LogStreamFailed(loggers.CreateLogger("EdgeServer.OpenAi"), e, request.Model);
            await sse.WriteAsync(error.ToResponse(), OpenAiJsonContext.Web.ErrorResponse, CancellationToken.None);
        }

        return Results.Empty;
    }

    private static void Record(GenerationOutcome? outcome, GenerationChunk final)
    {
        if (outcome is not null)
        {
            outcome.Usage = final.Usage;
            outcome.Timings = final.Timings;
            outcome.FinishReason = final.FinishReason;
        }
    }

    private static ModelDto ToDto(ModelDescriptor m) => new(m.Id, "model", m.Created.ToUnixTimeSeconds(), "edgeserver",
        new ModelDetails(m.Status.ToString().ToLowerInvariant(), m.Error, m.Architecture, m.Quantization, m.ParameterCount, m.FileSize, m.ContextLength, m.ChatTemplate));

    private static string Fingerprint(IInferenceEngine engine) => engine is InferenceEngine e ? $"fp_edgeserver_llama.cpp-{e.Runtime.Version}" : "fp_edgeserver";

    [LoggerMessage(EventId = 4000, Level = LogLevel.Error, Message = "Streaming generation for {Model} failed after the response started")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, string model);
}
