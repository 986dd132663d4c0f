namespace EdgeServer.Pull;

/// <summary>
/// Why a pull stopped, as one line a user can act on, with the HTTP status and error code the API answers with.
/// <see cref="Transient"/> failures (a lost connection, a 5xx, a body cut short) are retried, resuming the file.
/// </summary>
public sealed class PullException(string message, int status, string code, bool transient = false, Exception? inner = null) : Exception(message, inner)
{
    public int Status { get; } = status;

    public string Code { get; } = code;

    public bool Transient { get; } = transient;

    public static PullException InvalidSource(string message) => new(message, StatusCodes.Status400BadRequest, "invalid_model_source");

    public static PullException NotFound(string message) => new(message, StatusCodes.Status404NotFound, "model_source_not_found");

    public static PullException Upstream(string message, bool transient = false, Exception? inner = null) =>
        new(message, StatusCodes.Status502BadGateway, "upstream_error", transient, inner);
}
