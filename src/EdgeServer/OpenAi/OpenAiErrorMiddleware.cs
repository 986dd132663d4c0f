using Microsoft.AspNetCore.Connections;

namespace EdgeServer.OpenAi;

/// <summary>
/// Turns every failure under /v1 into OpenAI's error shape with the right status: thrown <see cref="OpenAiException"/>s,
/// the inference library's typed errors, unknown routes (404) and wrong methods (405). Nothing escapes as a bare 500.
/// </summary>
internal sealed partial class OpenAiErrorMiddleware(RequestDelegate next, ILogger<OpenAiErrorMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
            // Routing answers these itself, with an empty body; give them the OpenAI shape too.
            if (!context.Response.HasStarted && RoutingError(context) is { } error)
            {
                await OpenAiResults.WriteErrorAsync(context, error);
            }
        }
        catch (OperationCanceledException e) when (context.RequestAborted.IsCancellationRequested || e is ConnectionAbortedException)
        {
            // The client went away (a stop button mid-stream); there is nobody to answer.
        }
        catch (Exception e)
        {
            var error = OpenAiException.From(e);
            if (error.Status >= 500)
            {
                LogUnhandled(logger, e, context.Request.Method, context.Request.Path);
            }

            if (context.Response.HasStarted)
            {
                context.Abort();
                return;
            }

            context.Response.Clear();
            await OpenAiResults.WriteErrorAsync(context, error);
        }
    }

    private static OpenAiException? RoutingError(HttpContext context) => context.Response.StatusCode switch
    {
        StatusCodes.Status404NotFound => new(StatusCodes.Status404NotFound, $"Unknown request URL: {context.Request.Method} {context.Request.Path}.", "invalid_request_error", null, "unknown_url"),
        StatusCodes.Status405MethodNotAllowed => new(StatusCodes.Status405MethodNotAllowed, $"Method {context.Request.Method} is not allowed for {context.Request.Path}.", "invalid_request_error", null, "method_not_allowed"),
        StatusCodes.Status415UnsupportedMediaType => new(StatusCodes.Status415UnsupportedMediaType, $"Content-Type must be application/json; got '{context.Request.ContentType}'.", "invalid_request_error", null, "unsupported_media_type"),
        _ => null,
    };

    [LoggerMessage(EventId = EventIds.RequestFailed, Level = LogLevel.Error, Message = "Request {Method} {Path} failed")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string path);
}
