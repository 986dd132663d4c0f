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

    /// <summary>Maps the inference library's typed errors to HTTP; anything else is a 500.</summary>
    public static OpenAiException From(Exception exception) => exception switch
    {
        OpenAiException e => e,
        ModelNotFoundException e => new(StatusCodes.Status404NotFound, e.Message, "invalid_request_error", "model", "model_not_found"),
        ModelUnavailableException e => new(StatusCodes.Status503ServiceUnavailable, e.Message, "server_error", "model", "model_unavailable"),
        ContextLengthExceededException e => new(StatusCodes.Status400BadRequest, e.Message, "invalid_request_error", "messages", "context_length_exceeded"),
        InvalidGenerationParameterException e => InvalidRequest(e.Message, e.Parameter, "invalid_value"),
        Polly.RateLimiting.RateLimiterRejectedException e => new(StatusCodes.Status429TooManyRequests,
            "The model is busy: every slot is in use and the wait queue is full. Retry shortly.", "rate_limit_error", null, "server_busy")
        {
            RetryAfter = e.RetryAfter ?? TimeSpan.FromSeconds(1),
        },
        Polly.Timeout.TimeoutRejectedException e => new(StatusCodes.Status504GatewayTimeout,
            $"The request did not finish within its deadline of {e.Timeout.TotalSeconds:0} s (setting EdgeServer:Scheduler:RequestTimeoutSeconds).", "server_error", null, "timeout"),
        ShuttingDownException e => new(StatusCodes.Status503ServiceUnavailable, e.Message, "server_error", null, "shutting_down"),
        ServerBusyException e => new(StatusCodes.Status429TooManyRequests, e.Message, "rate_limit_error", null, "server_busy") { RetryAfter = e.RetryAfter },
        _ => new(StatusCodes.Status500InternalServerError, "The server had an error while processing your request.", "server_error", null, "internal_error"),
    };
}
