using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>How one endpoint shapes a generation into OpenAI objects, streamed or whole.</summary>
internal interface IResponseShape
{
    Task WriteFirstAsync(ServerSentEvents sse, CancellationToken cancellationToken);

    Task WriteTextAsync(ServerSentEvents sse, string text, CancellationToken cancellationToken);

    Task WriteFinishAsync(ServerSentEvents sse, FinishReason reason, CancellationToken cancellationToken);

    Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken cancellationToken);

    IResult Complete(string text, FinishReason reason, GenerationUsage usage);
}

internal abstract class ResponseShapeBase(string idPrefix, string model, long created, string fingerprint)
{
    protected string Id { get; } = idPrefix + Guid.NewGuid().ToString("N")[..24];

    protected string Model => model;

    protected long Created => created;

    protected string Fingerprint => fingerprint;

    protected static string Reason(FinishReason reason) => reason == FinishReason.Length ? "length" : "stop";

    protected static Usage ToUsage(GenerationUsage u) =>
        new(u.PromptTokens, u.CompletionTokens, u.TotalTokens, new PromptTokensDetails(u.CachedPromptTokens));
}

/// <summary>/v1/chat/completions: chat.completion and chat.completion.chunk.</summary>
internal sealed class ChatShape(string model, long created, string fingerprint)
    : ResponseShapeBase("chatcmpl-", model, created, fingerprint), IResponseShape
{
    public Task WriteFirstAsync(ServerSentEvents sse, CancellationToken ct) =>
        Write(sse, new ChunkDelta("assistant", string.Empty), null, null, ct);

    public Task WriteTextAsync(ServerSentEvents sse, string text, CancellationToken ct) =>
        Write(sse, new ChunkDelta(null, text), null, null, ct);

    public Task WriteFinishAsync(ServerSentEvents sse, FinishReason reason, CancellationToken ct) =>
        Write(sse, new ChunkDelta(null, null), Reason(reason), null, ct);

    public Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) =>
        sse.WriteAsync(new ChatCompletionChunk(Id, "chat.completion.chunk", Created, Model, Fingerprint, [], ToUsage(usage)),
            OpenAiJsonContext.Web.ChatCompletionChunk, ct);

    public IResult Complete(string text, FinishReason reason, GenerationUsage usage) => OpenAiResults.Json(
        new ChatCompletionResponse(Id, "chat.completion", Created, Model, Fingerprint,
            [new ChatChoice(0, new ResponseMessage("assistant", text, null), null, Reason(reason))], ToUsage(usage)),
        OpenAiJsonContext.Web.ChatCompletionResponse);

    private Task Write(ServerSentEvents sse, ChunkDelta delta, string? finish, Usage? usage, CancellationToken ct) =>
        sse.WriteAsync(new ChatCompletionChunk(Id, "chat.completion.chunk", Created, Model, Fingerprint, [new ChunkChoice(0, delta, null, finish)], usage),
            OpenAiJsonContext.Web.ChatCompletionChunk, ct);
}

/// <summary>/v1/completions: text_completion, the same object streamed and whole.</summary>
internal sealed class CompletionShape(string model, long created, string fingerprint)
    : ResponseShapeBase("cmpl-", model, created, fingerprint), IResponseShape
{
    public Task WriteFirstAsync(ServerSentEvents sse, CancellationToken ct) => Task.CompletedTask;

    public Task WriteTextAsync(ServerSentEvents sse, string text, CancellationToken ct) => Write(sse, text, null, ct);

    public Task WriteFinishAsync(ServerSentEvents sse, FinishReason reason, CancellationToken ct) => Write(sse, string.Empty, Reason(reason), ct);

    public Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) =>
        sse.WriteAsync(new CompletionResponse(Id, "text_completion", Created, Model, Fingerprint, [], ToUsage(usage)),
            OpenAiJsonContext.Web.CompletionResponse, ct);

    public IResult Complete(string text, FinishReason reason, GenerationUsage usage) => OpenAiResults.Json(
        new CompletionResponse(Id, "text_completion", Created, Model, Fingerprint, [new CompletionChoice(text, 0, null, Reason(reason))], ToUsage(usage)),
        OpenAiJsonContext.Web.CompletionResponse);

    private Task Write(ServerSentEvents sse, string text, string? finish, CancellationToken ct) =>
        sse.WriteAsync(new CompletionResponse(Id, "text_completion", Created, Model, Fingerprint, [new CompletionChoice(text, 0, null, finish)], null),
            OpenAiJsonContext.Web.CompletionResponse, ct);
}
