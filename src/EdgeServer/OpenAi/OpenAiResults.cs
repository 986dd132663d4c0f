using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace EdgeServer.OpenAi;

/// <summary>Reads request bodies and writes JSON responses and errors with the source-generated context.</summary>
internal static class OpenAiResults
{
    /// <summary>
    /// Reads a JSON body; malformed JSON or a wrong type becomes a 400 naming the field. <paramref name="anyContentType"/>:
    /// read it whatever the Content-Type says, as Ollama does (its documented requests are <c>curl -d</c>, form-encoded),
    /// unless a browser sent it (an Origin header).
    /// </summary>
    public static async Task<T> ReadBodyAsync<T>(HttpRequest request, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken, bool anyContentType = false)
        where T : class
    {
        // A browser sends a form or text/plain body to another origin without asking it first (no CORS preflight), so
        // a web page could make a visitor's browser drive the API. Only clients that are not browsers (no Origin
        // header: curl, scripts, apps) get the lenient reading.
        if ((!anyContentType || request.Headers.Origin.Count > 0) && request.ContentType is { } contentType && !contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            throw new OpenAiException(StatusCodes.Status415UnsupportedMediaType, $"Content-Type must be application/json; got '{contentType}'.", "invalid_request_error", null, "unsupported_media_type");
        }

        try
        {
            return await JsonSerializer.DeserializeAsync(request.Body, typeInfo, cancellationToken)
                ?? throw OpenAiException.InvalidRequest("The request body must be a JSON object, not null.", null, "invalid_json");
        }
        catch (JsonException e)
        {
            // Conversion errors name a field; syntax errors (truncated, malformed) are about the body as a whole.
            var param = e.Message.StartsWith("The JSON value could not be converted", StringComparison.Ordinal) ? ParamFromPath(e.Path) : null;
            var message = param is null
                ? $"We could not parse the JSON body of your request: {Describe(e)} (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}). The API expects a JSON object."
                : $"Invalid type for '{param}': {Describe(e).Replace("System.Nullable`1[", "", StringComparison.Ordinal).Replace("System.", "", StringComparison.Ordinal).TrimEnd(']', '.')}.";
            throw OpenAiException.InvalidRequest(message, param, param is null ? "invalid_json" : "invalid_type");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            var limit = request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
            throw new OpenAiException(StatusCodes.Status413PayloadTooLarge,
                $"The request body is larger than the limit of {limit} bytes (setting EdgeServer:Limits:MaxRequestBody).",
                "invalid_request_error", null, "request_too_large");
        }
        catch (BadHttpRequestException e)
        {
            throw new OpenAiException(e.StatusCode, e.Message, "invalid_request_error", null, "bad_request");
        }
    }

    public static IResult Json<T>(T value, JsonTypeInfo<T> typeInfo, int status = StatusCodes.Status200OK) =>
        Results.Json(value, typeInfo, contentType: "application/json", statusCode: status);

    /// <summary>The error in the shape of the API its route belongs to (OpenAI's, Ollama's under /api, Anthropic's under /v1/messages).</summary>
    public static async Task WriteErrorAsync(HttpContext context, OpenAiException error)
    {
        context.Response.StatusCode = error.Status;
        if (error.RetryAfter is { } retry)
        {
            context.Response.Headers.RetryAfter = Math.Ceiling(retry.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        }

        if (Ollama.OllamaResults.Owns(context.Request))
        {
            await Ollama.OllamaResults.WriteErrorAsync(context, error);
            return;
        }

        if (Anthropic.AnthropicResults.Owns(context.Request))
        {
            await Anthropic.AnthropicResults.WriteErrorAsync(context, error);
            return;
        }

        await context.Response.WriteAsJsonAsync(error.ToResponse(), OpenAiJsonContext.Web.ErrorResponse, "application/json", context.RequestAborted);
    }

    /// <summary>"$.messages[0].content" → "messages[0].content"; "$" or null → null.</summary>
    internal static string? ParamFromPath(string? path)
    {
        if (string.IsNullOrEmpty(path) || path == "$")
        {
            return null;
        }

        return path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');
    }

    private static string Describe(JsonException e)
    {
        var message = e.Message;
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
