using EdgeServer.OpenAi;

namespace EdgeServer.Ollama;

/// <summary>Errors and JSON results of the Ollama routes (under /api).</summary>
internal static class OllamaResults
{
    public static bool Owns(HttpRequest request) => request.Path.StartsWithSegments("/api");

    /// <summary>A 400 with Ollama's wording; the status travels in an <see cref="OpenAiException"/>, the shared error path.</summary>
    public static OpenAiException BadRequest(string message) => new(StatusCodes.Status400BadRequest, message, "invalid_request_error");

    public static IResult Json<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo) =>
        Results.Json(value, typeInfo, contentType: "application/json; charset=utf-8");

    /// <summary><c>{"error": "..."}</c> with the error's status (Ollama's clients read only the message).</summary>
    public static Task WriteErrorAsync(HttpContext context, OpenAiException error) =>
        context.Response.WriteAsJsonAsync(new OllamaError(error.Message), OllamaJsonContext.Web.OllamaError, "application/json; charset=utf-8", context.RequestAborted);
}
