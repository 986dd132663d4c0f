using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>An error to send in OpenAI's shape <c>{"error":{"message","type","param","code"}}</c>.</summary>
public sealed class OpenAiException(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    public TimeSpan? RetryAfter { get; init; }

    public ErrorResponse ToResponse() => new(new ErrorBody(Message, Type, Param, Code));

    public static OpenAiException InvalidRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static OpenAiException MissingParameter(string param) =>
        InvalidRequest($"Missing required parameter: '{param}'.", param, "missing_required_parameter");

    public static OpenAiException InvalidType(string param, string expected) =>
        InvalidRequest($"Invalid type for '{param}': expected {expected}.", param, "invalid_type");

    /// <summary>
    /// Maps the inference library's typed errors to HTTP, naming fields as <paramref name="names"/> (the API the
    /// request came in by; the chat API's names when none is given). Anything else is a 500.
    /// </summary>
    public static OpenAiException From(Exception exception, IFieldNames? names = null) => exception switch
    {
        OpenAiException e => e,
        ModelNotFoundException e => new(StatusCodes.Status404NotFound, e.Message, "invalid_request_error", "model", "model_not_found"),
        ModelUnavailableException e => new(StatusCodes.Status503ServiceUnavailable, e.Message, "server_error", "model", "model_unavailable"),
        ModelTooLargeException e => new(StatusCodes.Status507InsufficientStorage, e.Message, "server_error", "model", "model_too_large"),
        ModelBusyException e => new(StatusCodes.Status409Conflict, e.Message, "invalid_request_error", "model", "model_busy"),
        ContextLengthExceededException e => new(StatusCodes.Status400BadRequest, e.Message, "invalid_request_error", (names ?? ApiFieldNames.Chat).Name(e.Field), "context_length_exceeded"),
        InvalidGenerationParameterException e => InvalidRequest(e.Describe(names ?? ApiFieldNames.Chat), (names ?? ApiFieldNames.Chat).Name(e.Field), CodeOf(e.Failure)),
        Polly.Timeout.TimeoutRejectedException e => new(StatusCodes.Status504GatewayTimeout,
            $"The request did not finish within its deadline of {e.Timeout.TotalSeconds:0} s (setting EdgeServer:Scheduler:RequestTimeoutSeconds).", "server_error", null, "timeout"),
        ShuttingDownException e => new(StatusCodes.Status503ServiceUnavailable, e.Message, "server_error", null, "shutting_down"),
        ServerBusyException e => new(StatusCodes.Status429TooManyRequests, e.Message, "rate_limit_error", null, "server_busy") { RetryAfter = e.RetryAfter },
        _ => new(StatusCodes.Status500InternalServerError, "The server had an error while processing your request.", "server_error", null, "internal_error"),
    };

    private static string CodeOf(ValidationFailure failure) => failure switch
    {
        ValidationFailure.Missing => "missing_required_parameter",
        ValidationFailure.BelowMinimum => "integer_below_min_value",
        ValidationFailure.LimitExceeded => "limit_exceeded",
        ValidationFailure.TooLong => "string_above_max_length",
        ValidationFailure.TooMany => "array_above_max_length",
        _ => "invalid_value",
    };
}
