using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>One finished choice of a whole (non-streamed) response.</summary>
internal sealed record ChoiceResult(string Text, FinishReason Reason, IReadOnlyList<TokenLogprob>? Logprobs, IReadOnlyList<ToolCall>? ToolCalls);

/// <summary>How one endpoint shapes generations into OpenAI objects, streamed or whole; one choice per index.</summary>
internal interface IResponseShape
{
    Task WriteFirstAsync(ServerSentEvents sse, int choices, CancellationToken cancellationToken);

    /// <summary>Text, log probabilities and (on a final chunk) tool calls; the finish is written separately.</summary>
    Task WriteChunkAsync(ServerSentEvents sse, int index, GenerationChunk chunk, CancellationToken cancellationToken);

    Task WriteFinishAsync(ServerSentEvents sse, int index, FinishReason reason, CancellationToken cancellationToken);

    Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken cancellationToken);

    IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage);
}

internal abstract class ResponseShapeBase(string idPrefix, string model, long created, string fingerprint)
{
    protected string Id { get; } = idPrefix + Guid.NewGuid().ToString("N")[..24];

    protected string Model => model;

    protected long Created => created;

    protected string Fingerprint => fingerprint;

    protected static string Reason(FinishReason reason) => reason.Name();

    protected static Usage ToUsage(GenerationUsage u) =>
        new(u.PromptTokens, u.CompletionTokens, u.TotalTokens, new PromptTokensDetails(u.CachedPromptTokens));

    protected static int[] Bytes(byte[] bytes) => Array.ConvertAll(bytes, b => (int)b);
}

/// <summary>/v1/chat/completions: chat.completion and chat.completion.chunk.</summary>
internal sealed class ChatShape(string model, long created, string fingerprint, bool logprobs)
    : ResponseShapeBase("chatcmpl-", model, created, fingerprint), IResponseShape
{
    public async Task WriteFirstAsync(ServerSentEvents sse, int choices, CancellationToken ct)
    {
        for (var i = 0; i < choices; i++)
        {
            await Write(sse, i, new ChunkDelta("assistant", string.Empty), null, null, ct);
        }
    }

    public async Task WriteChunkAsync(ServerSentEvents sse, int index, GenerationChunk chunk, CancellationToken ct)
    {
        if (chunk.Text.Length > 0 || chunk.Logprobs is { Count: > 0 })
        {
            await Write(sse, index, new ChunkDelta(null, chunk.Text), ToLogprobs(chunk.Logprobs), null, ct);
        }

        if (chunk.ToolCalls is { } calls)
        {
            // As OpenAI streams them: each call opens with its id and name, then its arguments follow.
            for (var i = 0; i < calls.Count; i++)
            {
                await Write(sse, index, new ChunkDelta(null, null, [new ToolCallDelta(i, calls[i].Id, "function", new FunctionDelta(calls[i].Name, string.Empty))]), null, null, ct);
                await Write(sse, index, new ChunkDelta(null, null, [new ToolCallDelta(i, null, null, new FunctionDelta(null, calls[i].Arguments))]), null, null, ct);
            }
        }
    }

    public Task WriteFinishAsync(ServerSentEvents sse, int index, FinishReason reason, CancellationToken ct) =>
        Write(sse, index, new ChunkDelta(null, null), null, Reason(reason), ct);

    public Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) =>
        sse.WriteAsync(new ChatCompletionChunk(Id, "chat.completion.chunk", Created, Model, Fingerprint, [], ToUsage(usage)),
            OpenAiJsonContext.Web.ChatCompletionChunk, ct);

    public IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage) => OpenAiResults.Json(
        new ChatCompletionResponse(Id, "chat.completion", Created, Model, Fingerprint,
            choices.Select((c, i) => new ChatChoice(i, Message(c), logprobs ? ToLogprobs(c.Logprobs ?? []) : null, Reason(c.Reason))).ToList(), ToUsage(usage)),
        OpenAiJsonContext.Web.ChatCompletionResponse);

    private static ResponseMessage Message(ChoiceResult c)
    {
        if (c.ToolCalls is not { Count: > 0 } calls)
        {
            return new ResponseMessage("assistant", c.Text, null);
        }

        // With calls, OpenAI sends content null unless the model also wrote text.
        var content = string.IsNullOrWhiteSpace(c.Text) ? null : c.Text;
        return new ResponseMessage("assistant", content, null, calls.Select(t => new ToolCallOut(t.Id, "function", new FunctionOut(t.Name, t.Arguments))).ToList());
    }

    private ChoiceLogprobs? ToLogprobs(IReadOnlyList<TokenLogprob>? tokens) => !logprobs || tokens is null
        ? null
        : new ChoiceLogprobs(
            tokens.Select(t => new TokenLogprobDto(t.Token, t.Logprob, Bytes(t.Bytes), t.TopLogprobs.Select(c => new TopLogprobDto(c.Token, c.Logprob, Bytes(c.Bytes))).ToList())).ToList(),
            null);

    private Task Write(ServerSentEvents sse, int index, ChunkDelta delta, ChoiceLogprobs? lp, string? finish, CancellationToken ct) =>
        sse.WriteAsync(new ChatCompletionChunk(Id, "chat.completion.chunk", Created, Model, Fingerprint, [new ChunkChoice(index, delta, lp, finish)], null),
            OpenAiJsonContext.Web.ChatCompletionChunk, ct);
}

/// <summary>/v1/completions: text_completion, the same object streamed and whole.</summary>
internal sealed class CompletionShape(string model, long created, string fingerprint, bool logprobs)
    : ResponseShapeBase("cmpl-", model, created, fingerprint), IResponseShape
{
    private readonly Dictionary<int, int> _offsets = [];

    public Task WriteFirstAsync(ServerSentEvents sse, int choices, CancellationToken ct) => Task.CompletedTask;

    public Task WriteChunkAsync(ServerSentEvents sse, int index, GenerationChunk chunk, CancellationToken ct) =>
        chunk.Text.Length > 0 || chunk.Logprobs is { Count: > 0 } ? Write(sse, index, chunk.Text, ToLogprobs(index, chunk.Logprobs), null, ct) : Task.CompletedTask;

    public Task WriteFinishAsync(ServerSentEvents sse, int index, FinishReason reason, CancellationToken ct) => Write(sse, index, string.Empty, null, Reason(reason), ct);

    public Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) =>
        sse.WriteAsync(new CompletionResponse(Id, "text_completion", Created, Model, Fingerprint, [], ToUsage(usage)),
            OpenAiJsonContext.Web.CompletionResponse, ct);

    public IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage) => OpenAiResults.Json(
        new CompletionResponse(Id, "text_completion", Created, Model, Fingerprint,
            choices.Select((c, i) => new CompletionChoice(c.Text, i, ToLogprobs(i, c.Logprobs ?? []), Reason(c.Reason))).ToList(), ToUsage(usage)),
        OpenAiJsonContext.Web.CompletionResponse);

    /// <summary>Legacy shape: parallel lists, with each token's character offset in the generated text.</summary>
    private CompletionLogprobs? ToLogprobs(int index, IReadOnlyList<TokenLogprob>? tokens)
    {
        if (!logprobs || tokens is null)
        {
            return null;
        }

        var offsets = new List<int>(tokens.Count);
        var offset = _offsets.GetValueOrDefault(index);
        foreach (var t in tokens)
        {
            offsets.Add(offset);
            offset += t.Token.Length;
        }

        _offsets[index] = offset;
        return new CompletionLogprobs(
            tokens.Select(t => t.Token).ToList(),
            tokens.Select(t => t.Logprob).ToList(),
            tokens.Select(t =>
            {
                var top = new Dictionary<string, float>(StringComparer.Ordinal);
                foreach (var c in t.TopLogprobs)
                {
                    top.TryAdd(c.Token, c.Logprob);
                }

                return top;
            }).ToList(),
            offsets);
    }

    private Task Write(ServerSentEvents sse, int index, string text, CompletionLogprobs? lp, string? finish, CancellationToken ct) =>
        sse.WriteAsync(new CompletionResponse(Id, "text_completion", Created, Model, Fingerprint, [new CompletionChoice(text, index, lp, finish)], null),
            OpenAiJsonContext.Web.CompletionResponse, ct);
}
