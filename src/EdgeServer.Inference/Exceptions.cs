namespace EdgeServer.Inference;

/// <summary>Base of every error the inference library raises on purpose.</summary>
public class InferenceException : Exception
{
    public InferenceException(string message) : base(message) { }

    public InferenceException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The llama.cpp native libraries could not be found, loaded, or are of the wrong version.</summary>
public sealed class NativeLibraryException(string message, Exception? inner = null)
    : InferenceException(message, inner ?? new DllNotFoundException(message));

/// <summary>
/// A GGUF file is truncated, corrupt, not GGUF at all, or holds values llama.cpp would abort on. Raised before
/// llama.cpp sees the file. The message names the file but not its folder, as it reaches clients; log <see cref="Path"/>.
/// </summary>
public sealed class GgufFormatException(string path, string reason)
    : InferenceException($"'{System.IO.Path.GetFileName(path)}' is not a valid GGUF model: {ModelFileText.Redact(reason, path)}")
{
    public string Path { get; } = path;

    public string Reason { get; } = ModelFileText.Redact(reason, path);
}

/// <summary>
/// llama.cpp refused a model file (unsupported architecture, missing tensors, out of memory, ...) or crashed on it
/// in the probe child. The message names the file but not its folder; log <see cref="Path"/>.
/// </summary>
public sealed class ModelLoadException(string path, string reason)
    : InferenceException($"Could not load model '{System.IO.Path.GetFileName(path)}': {ModelFileText.Redact(reason, path)}")
{
    public string Path { get; } = path;

    public string Reason { get; } = ModelFileText.Redact(reason, path);
}

/// <summary>Keeps model folders out of texts that reach clients (llama.cpp and IO messages quote the full path).</summary>
internal static class ModelFileText
{
    public static string Redact(string text, string path)
    {
        if (string.IsNullOrEmpty(path))
        {
            return text;
        }

        var name = Path.GetFileName(path);
        var full = Path.GetFullPath(path); // IO messages quote the full path of a relative one
        return text.Replace(full, name, StringComparison.Ordinal).Replace(path, name, StringComparison.Ordinal);
    }
}

/// <summary>ggml could not make a thread pool for a llama_context.</summary>
public sealed class ThreadPoolException(int threads)
    : InferenceException($"ggml could not make a thread pool of {threads} threads (out of memory). Free memory, or lower EdgeServer:Runtime:Threads.")
{
    public int Threads { get; } = threads;
}

/// <summary>No model is known by the requested name.</summary>
public sealed class ModelNotFoundException(string model)
    : InferenceException($"The model '{model}' does not exist.")
{
    public string Model { get; } = model;
}

/// <summary>The model is known but could not be loaded; the reason says why.</summary>
public sealed class ModelUnavailableException(string model, string reason)
    : InferenceException($"The model '{model}' is unavailable: {reason}")
{
    public string Model { get; } = model;
}

/// <summary>A model can never be loaded within the memory budget; the message gives the numbers.</summary>
public sealed class ModelTooLargeException(string model, string why)
    : InferenceException($"The model '{model}' cannot be loaded: {why}")
{
    public string Model { get; } = model;
}

/// <summary>A model asked to unload has requests queued or running.</summary>
public sealed class ModelBusyException(string model)
    : InferenceException($"The model '{model}' has requests queued or running; it unloads once they finish (ask again with wait=true to wait for them).")
{
    public string Model { get; } = model;
}

/// <summary>Prompt plus requested completion does not fit the context of a slot.</summary>
public sealed class ContextLengthExceededException(int promptTokens, int maxTokens, int contextLength, GenerationField field = GenerationField.Messages)
    : InferenceException(
        $"This model's maximum context length is {contextLength} tokens. However, you requested {promptTokens + maxTokens} tokens " +
        $"({promptTokens} in the {(field == GenerationField.Prompt ? "prompt" : "messages")}, {maxTokens} in the completion). Please reduce the length of the {(field == GenerationField.Prompt ? "prompt" : "messages")} or completion.")
{
    public int PromptTokens { get; } = promptTokens;

    public int ContextLength { get; } = contextLength;

    /// <summary>What was too long: the chat messages or the raw prompt.</summary>
    public GenerationField Field { get; } = field;
}

/// <summary>
/// A request field is invalid. The error knows which field (<see cref="Field"/>) and what is wrong
/// (<see cref="Failure"/>); its text is written with the field names of the API that asks
/// (<see cref="Describe"/>), so a Responses client reads 'max_output_tokens' where a chat client reads 'max_tokens'.
/// </summary>
public class InvalidGenerationParameterException : InferenceException
{
    private readonly Func<IFieldNames, string> _describe;

    public InvalidGenerationParameterException(FieldRef field, Func<IFieldNames, string> describe, ValidationFailure failure = ValidationFailure.InvalidValue)
        : base(describe(FieldNames.Canonical))
    {
        Field = field;
        Failure = failure;
        _describe = describe;
    }

    /// <summary>A message that names no field but the one it is about, which <paramref name="describe"/> receives.</summary>
    public InvalidGenerationParameterException(FieldRef field, string message, ValidationFailure failure = ValidationFailure.InvalidValue)
        : this(field, _ => message, failure)
    {
    }

    public FieldRef Field { get; }

    public ValidationFailure Failure { get; }

    /// <summary>The engine's name of the field, for logs.</summary>
    public string Parameter => FieldNames.Canonical.Name(Field);

    /// <summary>The message with the field and setting names of one API.</summary>
    public string Describe(IFieldNames names) => _describe(names);
}

/// <summary>A request is over a configured limit; the message names the setting that raises it.</summary>
public sealed class RequestLimitException(FieldRef field, GenerationLimit limit, int value, Func<IFieldNames, string> what)
    : InvalidGenerationParameterException(field, names => $"{what(names)}; the limit is {value} (setting {names.Setting(limit)}).", ValidationFailure.LimitExceeded)
{
    public GenerationLimit Limit { get; } = limit;
}

/// <summary>llama_decode failed. The status is llama.cpp's return code.</summary>
public sealed class DecodeException(int status)
    : InferenceException(status switch
    {
        1 => "llama_decode could not find space in the KV cache for the batch (status 1).",
        2 => "llama_decode was aborted (status 2).",
        -1 => "llama_decode rejected the batch as invalid (status -1).",
        _ => $"llama_decode failed with status {status}.",
    })
{
    public int Status { get; } = status;
}

/// <summary>The model's wait queue is full; the caller should try again later.</summary>
public sealed class ServerBusyException(string model, TimeSpan retryAfter)
    : InferenceException($"The model '{model}' is busy: all slots are in use and the wait queue is full. Retry after {retryAfter.TotalSeconds:0} s.")
{
    public TimeSpan RetryAfter { get; } = retryAfter;
}

/// <summary>The engine is shutting down and takes no new requests.</summary>
public sealed class ShuttingDownException()
    : InferenceException("The server is shutting down and takes no new requests.");

/// <summary>Sampling one token took longer than the model's sampling budget (a costly output grammar).</summary>
public sealed class SamplingBudgetExceededException(string model, TimeSpan budget)
    : InferenceException($"Sampling one token of '{model}' took longer than the budget of {budget.TotalSeconds:0.###} s, so this request was ended. The output grammar (response_format or tools) is too costly; simplify the schema.")
{
    public TimeSpan Budget { get; } = budget;
}
