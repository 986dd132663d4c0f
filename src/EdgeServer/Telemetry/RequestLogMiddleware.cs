using System.Diagnostics;
using System.Globalization;
using EdgeServer.Inference;
using EdgeServer.Inference.Diagnostics;

namespace EdgeServer.Telemetry;

/// <summary>
/// What an endpoint learned about its request (the model; for a generation its usage, timings and finish), for the
/// request line and metrics. One per request (a scoped service): the endpoint fills it, the log middleware reads it.
/// </summary>
public sealed class GenerationOutcome
{
    public string? Model { get; set; }

    public GenerationUsage? Usage { get; private set; }

    public GenerationTimings? Timings { get; private set; }

    public FinishReason? FinishReason { get; private set; }

    /// <summary>The client closed the connection before the response was complete (logged as status 499).</summary>
    public bool ClientLeft { get; set; }

    public void Record(GenerationUsage usage, GenerationTimings? timings, FinishReason? finishReason) =>
        (Usage, Timings, FinishReason) = (usage, timings, finishReason);
}

/// <summary>
/// One structured log line and one counter increment per /v1 request: endpoint, model, status, and for
/// generations the tokens, time to first token, tokens/s and, where the box measures it, the energy.
/// </summary>
internal sealed partial class RequestLogMiddleware(RequestDelegate next, HostMetrics metrics, ILogger<RequestLogMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context, GenerationOutcome outcome)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await next(context);
        }
        finally
        {
            var endpoint = context.GetEndpoint() is RouteEndpoint route ? route.RoutePattern.RawText ?? context.Request.Path.Value! : "unmatched";
            var status = (context.RequestAborted.IsCancellationRequested || outcome.ClientLeft) && outcome.FinishReason is null && outcome.Usage is null ? 499 : context.Response.StatusCode;
            var model = outcome.Model ?? "none";
            metrics.Request(endpoint, model, status);
            var elapsedMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            if (outcome is { Usage: { } usage, Timings: { } timings })
            {
                var finish = outcome.FinishReason?.Name() ?? "none";
                var tokensPerSecond = usage.CompletionTokens > 1 && timings.Generation > TimeSpan.Zero ? (usage.CompletionTokens - 1) / timings.Generation.TotalSeconds : 0;
                // Text, so a box without a sensor says so instead of logging a number it does not have.
                var energy = usage.EnergyJoules is { } joules ? joules.ToString("0.000", CultureInfo.InvariantCulture) : "unavailable";
                var perToken = usage.EnergyJoules is { } j && usage.CompletionTokens > 0 ? (j / usage.CompletionTokens).ToString("0.0000", CultureInfo.InvariantCulture) : "unavailable";
                LogGeneration(logger, context.Request.Method, endpoint, status, model, usage.PromptTokens, usage.CachedPromptTokens, usage.CompletionTokens,
                    timings.TimeToFirstToken.TotalMilliseconds, tokensPerSecond, elapsedMs, finish, energy, perToken);
            }
            else
            {
                LogRequest(logger, context.Request.Method, endpoint, status, model, elapsedMs);
            }
        }
    }

    [LoggerMessage(EventId = EventIds.Generation, Level = LogLevel.Information,
        Message = "{Method} {Endpoint} {Status} model={Model} prompt_tokens={PromptTokens} cached_tokens={CachedTokens} completion_tokens={CompletionTokens} ttft_ms={TtftMs:0} tokens_per_s={TokensPerSecond:0.0} elapsed_ms={ElapsedMs:0} finish={FinishReason} energy_j={EnergyJoules} j_per_token={JoulesPerToken}")]
    private static partial void LogGeneration(ILogger logger, string method, string endpoint, int status, string model, int promptTokens, int cachedTokens,
        int completionTokens, double ttftMs, double tokensPerSecond, double elapsedMs, string finishReason, string energyJoules, string joulesPerToken);

    [LoggerMessage(EventId = EventIds.Request, Level = LogLevel.Information, Message = "{Method} {Endpoint} {Status} model={Model} elapsed_ms={ElapsedMs:0}")]
    private static partial void LogRequest(ILogger logger, string method, string endpoint, int status, string model, double elapsedMs);
}
