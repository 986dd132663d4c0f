using System.Threading.Channels;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Pool;
using EdgeServer.OpenAi;
using Microsoft.Extensions.Options;

namespace EdgeServer.Pull;

/// <summary>
/// <c>POST /v1/models/pull</c>: what <c>EdgeServer pull</c> does, for apps. Everything checked before the first byte
/// (the name, the source, disk space, the memory fit, a pull of the same file already running) is a plain
/// OpenAI-shaped error; then the progress streams as server-sent events, ending with <c>done</c> once the model is
/// in the folder and listed by <c>/v1/models</c>, or with an error event. It is protected as the other routes of
/// /v1 are (model load and unload among them): with API keys set it needs one.
/// </summary>
public static partial class PullEndpoints
{
    public static RouteHandlerBuilder MapModelPull(this RouteGroupBuilder v1) =>
        v1.MapPost("/models/pull", PullAsync)
            .WithSummary("Downloads a model (owner/repo[:quant], owner/repo/file.gguf, or a URL) into the models folder, streaming progress as server-sent events.")
            .Accepts<PullRequestBody>("application/json")
            .Produces<PullEvent>(StatusCodes.Status200OK, "text/event-stream")
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest)
            .Produces<ErrorResponse>(StatusCodes.Status404NotFound)
            .Produces<ErrorResponse>(StatusCodes.Status409Conflict)
            .Produces<ErrorResponse>(StatusCodes.Status429TooManyRequests)
            .Produces<ErrorResponse>(StatusCodes.Status507InsufficientStorage);

    internal static async Task PullAsync(HttpContext context, IInferenceEngine engine, IOptions<EdgeServerOptions> options, PullSlots slots, TimeProvider clock, ILogger<PullHttp> logger)
    {
        var aborted = context.RequestAborted;
        var body = await OpenAiResults.ReadBodyAsync(context.Request, PullJsonContext.Default.PullRequestBody, aborted);
        if (string.IsNullOrWhiteSpace(body.Model))
        {
            throw OpenAiException.MissingParameter("model");
        }

        using var place = slots.TryTake() ?? throw new OpenAiException(StatusCodes.Status429TooManyRequests,
            $"{slots.Limit} pull(s) are running, as many as EdgeServer:Pull:MaxConcurrent allows. Try again when one is done.",
            "rate_limit_error", "model", "too_many_pulls") { RetryAfter = TimeSpan.FromSeconds(30) };

        var settings = options.Value;
        var memory = engine.Memory;
        var budget = new MemoryBudget(memory.BudgetBytes ?? long.MaxValue, memory.BudgetDerivation ?? "no budget");
        using var http = new PullHttp(settings.Pull.Hub, Environment.GetEnvironmentVariable(PullCommand.HubTokenVariable), publicOnly: !settings.Pull.AllowPrivateAddresses);
        var puller = new ModelPuller(http, PullCommand.Target(settings, CpuRepackFeatures.Current, budget), clock);
        var notes = new List<string>();
        PullPlan plan;
        try
        {
            plan = await puller.PlanAsync(body.Model, body.Force, notes.Add, aborted);
        }
        catch (PullException e)
        {
            LogPullRefused(logger, body.Model, e.Message);
            throw ToOpenAi(e);
        }

        using (plan)
        {
            var from = PullHttp.Describe(plan.Url); // without the query, which may hold a CDN's signature
            LogPullStarted(logger, plan.Name, from, plan.Size);
            var sse = ServerSentEvents.Open(context.Response);
            await sse.StartAsync(aborted);
            await sse.WriteAsync(new PullEvent("checking") { Model = plan.ModelId, File = plan.Name, Total = plan.Size, Message = string.Join(' ', notes) }, PullJsonContext.Default.PullEvent, aborted);

            // The download reports synchronously; the events go out from here, the latest kept when the client is slow.
            var events = Channel.CreateBounded<PullEvent>(new BoundedChannelOptions(16) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
            var writer = Task.Run(async () =>
            {
                await foreach (var e in events.Reader.ReadAllAsync(aborted))
                {
                    await sse.WriteAsync(e, PullJsonContext.Default.PullEvent, aborted);
                }
            }, aborted);
            PullException? failure = null;
            try
            {
                var path = await puller.DownloadAsync(plan, e => events.Writer.TryWrite(e), aborted);
                events.Writer.Complete();
                await writer;
                // Served now rather than at the folder watcher's next look, so "done" means /v1/models lists it.
                await Task.Run(engine.RescanModelsFolder, aborted);
                var listed = engine.FindModel(plan.ModelId);
                LogPullFinished(logger, plan.Name, path);
                await sse.WriteAsync(new PullEvent("done")
                {
                    Model = plan.ModelId, File = plan.Name, Completed = plan.Size, Total = plan.Size,
                    Message = listed is null
                        ? $"{plan.Name} is in the models folder but not served: another model has the name '{plan.ModelId}'."
                        : $"model '{plan.ModelId}' is {listed.Status.ToString().ToLowerInvariant()}{(listed.Error is { } error ? $": {error}" : string.Empty)}",
                }, PullJsonContext.Default.PullEvent, aborted);
                await sse.WriteDoneAsync(aborted);
            }
            catch (PullException e)
            {
                failure = e;
            }
            catch (OperationCanceledException) when (aborted.IsCancellationRequested)
            {
                // The client left: the partial file stays for a resume.
                events.Writer.TryComplete();
                LogPullCancelled(logger, plan.Name);
                return;
            }

            if (failure is not null)
            {
                // Headers are gone: the error travels as the last event.
                events.Writer.TryComplete();
                LogPullFailed(logger, plan.Name, failure.Message);
                try
                {
                    await writer;
                    await sse.WriteAsync(ToOpenAi(failure).ToResponse(), OpenAiJsonContext.Web.ErrorResponse, aborted);
                }
                catch (OperationCanceledException) when (aborted.IsCancellationRequested)
                {
                }
            }
        }
    }

    internal static OpenAiException ToOpenAi(PullException e) =>
        new(e.Status, e.Message, e.Status < 500 ? "invalid_request_error" : "server_error", "model", e.Code);

    [LoggerMessage(EventId = EventIds.PullStarted, Level = LogLevel.Information, Message = "Pulling {File} ({Bytes} bytes) from {Url}")]
    private static partial void LogPullStarted(ILogger logger, string file, string url, long bytes);

    [LoggerMessage(EventId = EventIds.PullFinished, Level = LogLevel.Information, Message = "Pulled {File} into {Path}")]
    private static partial void LogPullFinished(ILogger logger, string file, string path);

    [LoggerMessage(EventId = EventIds.PullFailed, Level = LogLevel.Warning, Message = "Pulling {File} failed: {Reason}")]
    private static partial void LogPullFailed(ILogger logger, string file, string reason);

    [LoggerMessage(EventId = EventIds.PullRefused, Level = LogLevel.Information, Message = "Pull of {Source} refused: {Reason}")]
    private static partial void LogPullRefused(ILogger logger, string source, string reason);

    [LoggerMessage(EventId = EventIds.PullCancelled, Level = LogLevel.Information, Message = "Pulling {File} stopped: the client left; the partial file is kept for a resume")]
    private static partial void LogPullCancelled(ILogger logger, string file);
}
