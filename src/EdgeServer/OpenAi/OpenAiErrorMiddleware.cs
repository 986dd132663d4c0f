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
            if (!context.Response.HasStarted && context.Response.StatusCode is StatusCodes.Status404NotFound or StatusCodes.Status405MethodNotAllowed
                && context.GetEndpoint() is null)
            {
                var error = context.Response.StatusCode == StatusCodes.Status404NotFound
                    ? new OpenAiException(StatusCodes.Status404NotFound, $"Unknown request URL: {context.Request.Method} {context.Request.Path}.", "invalid_request_error", null, "unknown_url")
                    : new OpenAiException(StatusCodes.Status405MethodNotAllowed, $"Method {context.Request.Method} is not allowed for {context.Request.Path}.", "invalid_request_error", null, "method_not_allowed");
                await OpenAiResults.WriteErrorAsync(context, error);
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is nobody to answer.
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

    [LoggerMessage(EventId = 4001, Level = LogLevel.Error, Message = "Request {Method} {Path} failed")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string path);
}
