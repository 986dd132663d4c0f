using EdgeServer.OpenAi;

namespace EdgeServer.Anthropic;

/// <summary>Errors and JSON results of the Anthropic routes (under /v1/messages).</summary>
internal static class AnthropicResults
{
    public static bool Owns(HttpRequest request) => request.Path.StartsWithSegments("/v1/messages");

    /// <summary>A 400; the status travels in an <see cref="OpenAiException"/>, the shared error path.</summary>
    public static OpenAiException BadRequest(string message) => new(StatusCodes.Status400BadRequest, message, "invalid_request_error");

    public static IResult Json<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo) =>
        Results.Json(value, typeInfo, contentType: "application/json");

    /// <summary>
    /// The error's status as Anthropic names its error types. Anthropic's shape has no param, so a message that does
    /// not name its field is prefixed with it, as Anthropic words field errors (<c>max_tokens: ...</c>).
    /// </summary>
    public static AnthropicError ToError(OpenAiException error) => new(new AnthropicErrorBody(error.Status switch
    {
        StatusCodes.Status401Unauthorized => "authentication_error",
        StatusCodes.Status403Forbidden => "permission_error",
        StatusCodes.Status404NotFound => "not_found_error",
        StatusCodes.Status413PayloadTooLarge => "request_too_large",
        StatusCodes.Status429TooManyRequests => "rate_limit_error",
        StatusCodes.Status503ServiceUnavailable or 529 => "overloaded_error",
        >= 500 => "api_error",
        _ => "invalid_request_error",
    }, error.Param is { Length: > 0 } param && !error.Message.Contains(param, StringComparison.Ordinal) ? $"{param}: {error.Message}" : error.Message));

    /// <summary><c>{"type":"error","error":{"type","message"}}</c> with the error's status.</summary>
    public static Task WriteErrorAsync(HttpContext context, OpenAiException error) =>
        context.Response.WriteAsJsonAsync(ToError(error), AnthropicJsonContext.Web.AnthropicError, "application/json", context.RequestAborted);
}
