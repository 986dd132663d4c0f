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
        v1.MapEmbeddings();
        v1.MapResponses();
        v1.MapGet("/models", ListModels).Produces<ModelList>();
        v1.MapGet("/models/{**id}", GetModel).Produces<ModelDto>().Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        return v1;
    }

    internal static async Task<IResult> ChatCompletionsAsync(HttpContext context, IInferenceEngine engine, Admission admission, TimeProvider clock, IOptions<EdgeServerOptions> options, ILoggerFactory loggers)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.ChatCompletionRequest, context.RequestAborted);
        var request = RequestMapper.FromChat(body, options.Value.Limits);
        var shape = new ChatShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine), request.Logprobs);
        return await GenerateAsync(context, engine, admission, request, RequestMapper.Choices(body), shape, RequestMapper.IsStreaming(body), RequestMapper.IncludeUsage(body), loggers);
    }

    internal static async Task<IResult> CompletionsAsync(HttpContext context, IInferenceEngine engine, Admission admission, TimeProvider clock, IOptions<EdgeServerOptions> options, ILoggerFactory loggers)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CompletionRequest, context.RequestAborted);
        var request = RequestMapper.FromCompletion(body, options.Value.Limits);
        var shape = new CompletionShape(request.Model, clock.GetUtcNow().ToUnixTimeSeconds(), Fingerprint(engine), request.Logprobs);
        return await GenerateAsync(context, engine, admission, request, RequestMapper.Choices(body), shape, RequestMapper.IsStreaming(body), RequestMapper.IncludeUsage(body), loggers);
    }

    internal static IResult ListModels(IInferenceEngine engine) =>
        OpenAiResults.Json(new ModelList("list", engine.ListModels().Select(ToDto).ToList()), OpenAiJsonContext.Web.ModelList);

    internal static IResult GetModel(string id, IInferenceEngine engine) => engine.FindModel(id) is { } model
        ? OpenAiResults.Json(ToDto(model), OpenAiJsonContext.Web.ModelDto)
        : throw OpenAiException.From(new ModelNotFoundException(id));

    private static async Task<IResult> GenerateAsync(HttpContext context, IInferenceEngine engine, Admission admission, GenerationRequest request,
        int choices, IResponseShape shape, bool stream, bool includeUsage, ILoggerFactory loggers)
    {
        // An unknown model is refused before it takes a place in any queue.
        if (engine.FindModel(request.Model) is null)
        {
            throw new ModelNotFoundException(request.Model);
        }

        var sse = stream ? new ServerSentEvents(context.Response) : null;
        try
        {
            return await admission.RunAsync(request.Model, ct => GenerateAdmittedAsync(context, engine, request, choices, shape, sse, includeUsage, loggers, ct), context.RequestAborted);
        }
        catch (Polly.Timeout.TimeoutRejectedException e) when (sse is { Started: true })
        {
            // The deadline passed mid-stream: headers are gone, so the error is the last event.
            await sse.WriteAsync(OpenAiException.From(e).ToResponse(), OpenAiJsonContext.Web.ErrorResponse, CancellationToken.None);
            return Results.Empty;
        }
    }

    private static async ValueTask<IResult> GenerateAdmittedAsync(HttpContext context, IInferenceEngine engine, GenerationRequest request, int choices,
        IResponseShape shape, ServerSentEvents? sse, bool includeUsage, ILoggerFactory loggers, CancellationToken aborted)
    {
        var outcome = context.Features.Get<GenerationOutcome>();
        if (outcome is not null)
        {
            outcome.Model = request.Model;
        }

        // Every error up to here, and any from admission, is still an ordinary JSON error response.
        // n > 1: each choice is its own sequence, decoded side by side; a given seed s becomes s, s+1, ...
        var sessions = new IGenerationSession[choices];
        for (var i = 0; i < choices; i++)
        {
            var variant = i == 0 || request.Sampling.Seed is not { } seed ? request : request with { Sampling = request.Sampling with { Seed = unchecked(seed + (uint)i) } };
            sessions[i] = await engine.StartAsync(variant, aborted);
        }

        if (sse is null)
        {
            var results = await Task.WhenAll(sessions.Select(s => CollectAsync(s, aborted)));
            var usage = Combine(results.Select(r => r.Final).ToList());
            Record(outcome, results[0].Final, usage);
            return shape.Complete(results.Select(r => r.Choice).ToList(), usage);
        }

        await sse.StartAsync(aborted);
        try
        {
            await shape.WriteFirstAsync(sse, choices, aborted);
            var finals = new GenerationChunk[choices];
            await foreach (var (index, chunk) in MergeAsync(sessions, aborted))
            {
                await shape.WriteChunkAsync(sse, index, chunk, aborted);
                if (chunk.IsFinal)
                {
                    finals[index] = chunk;
                    await shape.WriteFinishAsync(sse, index, chunk.FinishReason!.Value, aborted);
                }
            }

            var usage = Combine(finals);
            Record(outcome, finals[0], usage);
            if (includeUsage)
            {
                await shape.WriteUsageAsync(sse, usage, aborted);
            }

            await sse.WriteDoneAsync(aborted);
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

    private static async Task<(ChoiceResult Choice, GenerationChunk Final)> CollectAsync(IGenerationSession session, CancellationToken aborted)
    {
        var text = new StringBuilder();
        List<TokenLogprob>? logprobs = null;
        await foreach (var chunk in session.ReadAllAsync(aborted))
        {
            text.Append(chunk.Text);
            if (chunk.Logprobs is { } lp)
            {
                (logprobs ??= []).AddRange(lp);
            }

            if (chunk.IsFinal)
            {
                return (new ChoiceResult(text.ToString(), chunk.FinishReason!.Value, logprobs, chunk.ToolCalls), chunk);
            }
        }

        throw new OperationCanceledException("The generation ended without a result.");
    }

    /// <summary>The chunks of several sessions as they come, each tagged with its choice index.</summary>
    private static async IAsyncEnumerable<(int Index, GenerationChunk Chunk)> MergeAsync(IGenerationSession[] sessions,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken aborted)
    {
        if (sessions.Length == 1)
        {
            await foreach (var chunk in sessions[0].ReadAllAsync(aborted))
            {
                yield return (0, chunk);
            }

            yield break;
        }

        // Leaving early (an error, a disconnect) cancels the other choices, which frees their slots.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        var channel = System.Threading.Channels.Channel.CreateUnbounded<(int, GenerationChunk)>(new() { SingleReader = true });
        var pumps = sessions.Select(async (session, index) =>
        {
            await foreach (var chunk in session.ReadAllAsync(stop.Token))
            {
                await channel.Writer.WriteAsync((index, chunk), stop.Token);
            }
        }).ToList();
        _ = Task.WhenAll(pumps).ContinueWith(t => channel.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        try
        {
            await foreach (var item in channel.Reader.ReadAllAsync(aborted))
            {
                yield return item;
            }
        }
        finally
        {
            await stop.CancelAsync();
        }
    }

    /// <summary>One prompt, several completions: the prompt counts once, generated tokens add up.</summary>
    private static GenerationUsage Combine(IReadOnlyList<GenerationChunk> finals) => new(
        finals[0].Usage!.PromptTokens,
        finals.Sum(f => f.Usage!.CompletionTokens),
        finals[0].Usage!.CachedPromptTokens);

    private static void Record(GenerationOutcome? outcome, GenerationChunk final, GenerationUsage usage)
    {
        if (outcome is not null)
        {
            outcome.Usage = usage;
            outcome.Timings = final.Timings;
            outcome.FinishReason = final.FinishReason;
        }
    }

    private static ModelDto ToDto(ModelDescriptor m) => new(m.Id, "model", m.Created.ToUnixTimeSeconds(), "edgeserver",
        new ModelDetails(m.Status.ToString().ToLowerInvariant(), m.Error, m.Architecture, m.Quantization, m.ParameterCount, m.FileSize, m.ContextLength, m.ChatTemplate));

    private static string Fingerprint(IInferenceEngine engine) => $"fp_edgeserver_llama.cpp-{engine.RuntimeVersion}";

    [LoggerMessage(EventId = 4000, Level = LogLevel.Error, Message = "Streaming generation for {Model} failed after the response started")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, string model);
}
