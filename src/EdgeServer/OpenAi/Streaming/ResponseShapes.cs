using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>A streamed response body of one framing (server-sent events, NDJSON), opened on a response.</summary>
internal interface IEventStream<TSelf>
    where TSelf : class, IEventStream<TSelf>
{
    static abstract TSelf Open(HttpResponse response);

    bool Started { get; }

    /// <summary>Sends the status and headers: from here on an error can only travel in the stream.</summary>
    Task StartAsync(CancellationToken cancellationToken);
}

/// <summary>How one endpoint shapes generations into its objects and stream events, whole or streamed.</summary>
internal interface IResponseShape<TStream>
    where TStream : class, IEventStream<TStream>
{
    Task WriteStartAsync(TStream stream, int choices, CancellationToken cancellationToken);

    /// <summary>The stream's first events, for APIs that report the prompt's tokens up front (Anthropic's message_start).</summary>
    Task WriteStartAsync(TStream stream, int choices, int promptTokens, CancellationToken cancellationToken) => WriteStartAsync(stream, choices, cancellationToken);

    /// <summary>Text, log probabilities and tool calls of a chunk; a final chunk also ends its choice.</summary>
    Task WriteChunkAsync(TStream stream, GenerationChunk chunk, CancellationToken cancellationToken);

    /// <summary>After every choice has ended: usage (when asked for) and the stream's end.</summary>
    Task WriteEndAsync(TStream stream, GenerationUsage usage, CancellationToken cancellationToken);

    /// <summary>An error after the stream began: headers are gone, so it is the last event.</summary>
    Task WriteErrorAsync(TStream stream, OpenAiException error, CancellationToken cancellationToken);

    IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage);
}

/// <summary>The OpenAI endpoints' shapes, streamed as server-sent events.</summary>
internal interface IResponseShape : IResponseShape<ServerSentEvents>;

internal abstract class ResponseShapeBase(string idPrefix, string model, long created, string fingerprint)
{
    protected string Id { get; } = idPrefix + Guid.NewGuid().ToString("N")[..24];

    protected string Model => model;

    protected long Created => created;

    protected string Fingerprint => fingerprint;

    protected static string Reason(FinishReason reason) => reason.Name();

    protected static Usage ToUsage(GenerationUsage u) =>
        new(u.PromptTokens, u.CompletionTokens, u.TotalTokens, new PromptTokensDetails(u.CachedPromptTokens), new CompletionTokensDetails(u.ReasoningTokens), u.EnergyJoules);

    protected static int[] Bytes(byte[] bytes) => Array.ConvertAll(bytes, b => (int)b);
}

/// <summary>The chat and completions streams: a usage chunk when asked for, then <c>data: [DONE]</c>; errors as <c>data: {"error":...}</c>.</summary>
internal abstract class ChunkStreamShape(string idPrefix, string model, long created, string fingerprint, bool includeUsage)
    : ResponseShapeBase(idPrefix, model, created, fingerprint)
{
    public abstract Task WriteChunkAsync(ServerSentEvents sse, GenerationChunk chunk, CancellationToken ct);

    public async Task WriteEndAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct)
    {
        if (includeUsage)
        {
            await WriteUsageAsync(sse, usage, ct);
        }

        await sse.WriteDoneAsync(ct);
    }

#pragma warning disable CA1822 // implements IResponseShape in the derived shapes
    public Task WriteErrorAsync(ServerSentEvents sse, OpenAiException error, CancellationToken ct) =>
        sse.WriteAsync(error.ToResponse(), OpenAiJsonContext.Web.ErrorResponse, ct);
#pragma warning restore CA1822

    protected abstract Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct);
}

/// <summary>/v1/chat/completions: chat.completion and chat.completion.chunk.</summary>
internal sealed class ChatShape(string model, long created, string fingerprint, bool logprobs, bool includeUsage)
    : ChunkStreamShape("chatcmpl-", model, created, fingerprint, includeUsage), IResponseShape
{
    public async Task WriteStartAsync(ServerSentEvents sse, int choices, CancellationToken ct)
    {
        for (var i = 0; i < choices; i++)
        {
            await Write(sse, i, new ChunkDelta("assistant", string.Empty), null, null, ct);
        }
    }

    public override async Task WriteChunkAsync(ServerSentEvents sse, GenerationChunk chunk, CancellationToken ct)
    {
        var index = chunk.Choice;
        var logprobsSent = false;
        if (chunk.Reasoning is { Length: > 0 } thought)
        {
            // Thinking in its own delta, before the answer the same chunk may begin; token log probabilities go with
            // it when the chunk has no answer text.
            logprobsSent = chunk.Text.Length == 0;
            await Write(sse, index, new ChunkDelta(null, null) { ReasoningContent = thought, Reasoning = thought }, logprobsSent ? ToLogprobs(chunk.Logprobs) : null, null, ct);
        }

        // A call max_tokens cut off is sent as a call, as OpenAI does, not as its raw text.
        var text = chunk.CutOffToolCalls?.Content ?? chunk.Text;
        if (text.Length > 0 || (!logprobsSent && chunk.Logprobs is { Count: > 0 }))
        {
            await Write(sse, index, new ChunkDelta(null, text), ToLogprobs(chunk.Logprobs), null, ct);
        }

        if ((chunk.ToolCalls ?? chunk.CutOffToolCalls?.Calls) is { } calls)
        {
            // As OpenAI streams them: each call opens with its id and name, then its arguments follow.
            for (var i = 0; i < calls.Count; i++)
            {
                await Write(sse, index, new ChunkDelta(null, null, [new ToolCallDelta(i, calls[i].Id, "function", new FunctionDelta(calls[i].Name, string.Empty))]), null, null, ct);
                await Write(sse, index, new ChunkDelta(null, null, [new ToolCallDelta(i, null, null, new FunctionDelta(null, calls[i].Arguments))]), null, null, ct);
            }
        }

        if (chunk.FinishReason is { } reason)
        {
            await Write(sse, index, new ChunkDelta(null, null), null, Reason(reason), ct);
        }
    }

    protected override Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) =>
        sse.WriteAsync(new ChatCompletionChunk(Id, "chat.completion.chunk", Created, Model, Fingerprint, [], ToUsage(usage)),
            OpenAiJsonContext.Web.ChatCompletionChunk, ct);

    public IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage) => OpenAiResults.Json(
        new ChatCompletionResponse(Id, "chat.completion", Created, Model, Fingerprint,
            choices.Select((c, i) => new ChatChoice(i, Message(c), logprobs ? ToLogprobs(c.Logprobs ?? []) : null, Reason(c.Reason))).ToList(), ToUsage(usage)),
        OpenAiJsonContext.Web.ChatCompletionResponse);

    private static ResponseMessage Message(ChoiceResult c)
    {
        var thought = c.Reasoning.Length > 0 ? c.Reasoning : null;
        if ((c.ToolCalls ?? c.CutOffToolCalls?.Calls) is not { Count: > 0 } calls)
        {
            return new ResponseMessage("assistant", c.Text, null) { ReasoningContent = thought, Reasoning = thought };
        }

        // With calls, OpenAI sends content null unless the model also wrote text.
        var text = c.CutOffToolCalls?.Content ?? c.Text;
        var content = string.IsNullOrWhiteSpace(text) ? null : text;
        return new ResponseMessage("assistant", content, null, calls.Select(t => new ToolCallOut(t.Id, "function", new FunctionOut(t.Name, t.Arguments))).ToList())
        {
            ReasoningContent = thought,
            Reasoning = thought,
        };
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
internal sealed class CompletionShape(string model, long created, string fingerprint, bool logprobs, bool includeUsage)
    : ChunkStreamShape("cmpl-", model, created, fingerprint, includeUsage), IResponseShape
{
    private readonly Dictionary<int, int> _offsets = [];

    public Task WriteStartAsync(ServerSentEvents sse, int choices, CancellationToken ct) => Task.CompletedTask;

    public override async Task WriteChunkAsync(ServerSentEvents sse, GenerationChunk chunk, CancellationToken ct)
    {
        var index = chunk.Choice;
        if (chunk.Text.Length > 0 || chunk.Logprobs is { Count: > 0 })
        {
            await Write(sse, index, chunk.Text, ToLogprobs(index, chunk.Logprobs), null, ct);
        }

        if (chunk.FinishReason is { } reason)
        {
            await Write(sse, index, string.Empty, null, Reason(reason), ct);
        }
    }

    protected override Task WriteUsageAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) =>
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
