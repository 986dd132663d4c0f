using System.Text;
using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// /v1/responses: one response object, or its typed events (response.created ... response.completed), each with
/// <c>event:</c> and <c>sequence_number</c>. One choice: a thinking model's thinking as a reasoning item (streamed as
/// response.reasoning_text.delta), then one message of output text (left out when the model only called functions),
/// then a function_call item per call (streamed as response.function_call_arguments.delta and .done). The finished
/// response goes to <paramref name="finished"/> (which stores it).
/// </summary>
internal sealed class ResponsesShape(
    CreateResponseRequest body, ResponsesRequest mapped, SamplingParameters sampling, TimeProvider clock, Action<ResponseObject, ChatMessage>? finished = null) : IResponseShape
{
    private static readonly JsonElement EmptyObject = JsonDocument.Parse("{}").RootElement.Clone();
    private readonly long _created = clock.GetUtcNow().ToUnixTimeSeconds();
    private readonly StringBuilder _text = new();
    private readonly StringBuilder _thought = new();
    private int _sequence;
    private bool _thinking;
    private bool _messageOpen;

    public string Id { get; } = "resp_" + Guid.NewGuid().ToString("N");

    private string MessageId { get; } = "msg_" + Guid.NewGuid().ToString("N");

    private string ReasoningId { get; } = "rs_" + Guid.NewGuid().ToString("N");

    /// <summary>The message comes after the reasoning item, when there is one; function calls after both.</summary>
    private int MessageIndex => _thought.Length > 0 ? 1 : 0;

    public async Task WriteStartAsync(ServerSentEvents sse, int choices, CancellationToken ct)
    {
        var web = OpenAiJsonContext.Web;
        await sse.WriteAsync("response.created", new ResponseLifecycleEvent("response.created", Next(), InProgress()), web.ResponseLifecycleEvent, ct);
        await sse.WriteAsync("response.in_progress", new ResponseLifecycleEvent("response.in_progress", Next(), InProgress()), web.ResponseLifecycleEvent, ct);
    }

    public async Task WriteChunkAsync(ServerSentEvents sse, GenerationChunk chunk, CancellationToken ct)
    {
        var web = OpenAiJsonContext.Web;
        if (chunk.Reasoning is { Length: > 0 } thought)
        {
            if (!_thinking)
            {
                _thinking = true;
                await sse.WriteAsync("response.output_item.added", new ResponseOutputItemEvent("response.output_item.added", Next(), 0, Reasoning(string.Empty, "in_progress") with { Content = [] }), web.ResponseOutputItemEvent, ct);
            }

            _thought.Append(thought);
            await sse.WriteAsync("response.reasoning_text.delta", new ResponseReasoningDeltaEvent("response.reasoning_text.delta", Next(), ReasoningId, 0, 0, thought), web.ResponseReasoningDeltaEvent, ct);
        }

        var callsOnly = chunk.ToolCalls is { Count: > 0 } && !_messageOpen && string.IsNullOrWhiteSpace(chunk.Text);
        if (chunk.Text.Length > 0 || chunk.IsFinal)
        {
            await CloseReasoningAsync(sse, chunk.FinishReason is FinishReason.Length && chunk.Text.Length == 0 && _text.Length == 0 ? "incomplete" : "completed", ct);
            if (!_messageOpen && !callsOnly)
            {
                _messageOpen = true;
                var empty = Message(string.Empty, "in_progress");
                await sse.WriteAsync("response.output_item.added", new ResponseOutputItemEvent("response.output_item.added", Next(), MessageIndex, empty with { Content = [] }), web.ResponseOutputItemEvent, ct);
                await sse.WriteAsync("response.content_part.added", new ResponseContentPartEvent("response.content_part.added", Next(), MessageId, MessageIndex, 0, empty.Content[0]), web.ResponseContentPartEvent, ct);
            }
        }

        if (chunk.Text.Length > 0 && !callsOnly)
        {
            _text.Append(chunk.Text);
            await sse.WriteAsync("response.output_text.delta", new ResponseTextDeltaEvent("response.output_text.delta", Next(), MessageId, MessageIndex, 0, chunk.Text, []), web.ResponseTextDeltaEvent, ct);
        }

        if (chunk.FinishReason is not { } reason)
        {
            return;
        }

        var text = _text.ToString();
        var final = Finish(text, _thought.ToString(), reason, chunk.ToolCalls, _messageOpen, chunk.Usage!);
        if (final.Output.OfType<ResponseOutputMessage>().FirstOrDefault() is { } message)
        {
            await sse.WriteAsync("response.output_text.done", new ResponseTextDoneEvent("response.output_text.done", Next(), MessageId, MessageIndex, 0, text, []), web.ResponseTextDoneEvent, ct);
            await sse.WriteAsync("response.content_part.done", new ResponseContentPartEvent("response.content_part.done", Next(), MessageId, MessageIndex, 0, message.Content[0]), web.ResponseContentPartEvent, ct);
            await sse.WriteAsync("response.output_item.done", new ResponseOutputItemEvent("response.output_item.done", Next(), MessageIndex, message), web.ResponseOutputItemEvent, ct);
        }

        // As OpenAI streams a call: the item opens without arguments, they follow as deltas, then the item is done.
        for (var i = 0; i < final.Output.Count; i++)
        {
            if (final.Output[i] is ResponseFunctionCallItem call)
            {
                await sse.WriteAsync("response.output_item.added", new ResponseOutputItemEvent("response.output_item.added", Next(), i, call with { Arguments = string.Empty, Status = "in_progress" }), web.ResponseOutputItemEvent, ct);
                await sse.WriteAsync("response.function_call_arguments.delta", new ResponseFunctionCallArgumentsDeltaEvent("response.function_call_arguments.delta", Next(), call.Id, i, call.Arguments), web.ResponseFunctionCallArgumentsDeltaEvent, ct);
                await sse.WriteAsync("response.function_call_arguments.done", new ResponseFunctionCallArgumentsDoneEvent("response.function_call_arguments.done", Next(), call.Id, i, call.Name, call.Arguments), web.ResponseFunctionCallArgumentsDoneEvent, ct);
                await sse.WriteAsync("response.output_item.done", new ResponseOutputItemEvent("response.output_item.done", Next(), i, call), web.ResponseOutputItemEvent, ct);
            }
        }

        var type = final.Status == "completed" ? "response.completed" : "response.incomplete";
        await sse.WriteAsync(type, new ResponseLifecycleEvent(type, Next(), final), web.ResponseLifecycleEvent, ct);
    }

    /// <summary>The response object went out with the last chunk; this API has no end marker.</summary>
    public Task WriteEndAsync(ServerSentEvents sse, GenerationUsage usage, CancellationToken ct) => Task.CompletedTask;

    public Task WriteErrorAsync(ServerSentEvents sse, OpenAiException error, CancellationToken ct) =>
        sse.WriteAsync("error", new ResponseErrorEvent("error", Next(), error.Code, error.Message, error.Param), OpenAiJsonContext.Web.ResponseErrorEvent, ct);

    public IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage)
    {
        var c = choices[0];
        var withMessage = c.ToolCalls is not { Count: > 0 } || !string.IsNullOrWhiteSpace(c.Text);
        return OpenAiResults.Json(Finish(c.Text, c.Reasoning, c.Reason, c.ToolCalls, withMessage, usage), OpenAiJsonContext.Web.ResponseObject);
    }

    private int Next() => _sequence++;

    /// <summary>The thinking is complete once the answer begins (or the reply ends).</summary>
    private async Task CloseReasoningAsync(ServerSentEvents sse, string status, CancellationToken ct)
    {
        if (!_thinking)
        {
            return;
        }

        _thinking = false;
        var web = OpenAiJsonContext.Web;
        var thought = _thought.ToString();
        await sse.WriteAsync("response.reasoning_text.done", new ResponseReasoningDoneEvent("response.reasoning_text.done", Next(), ReasoningId, 0, 0, thought), web.ResponseReasoningDoneEvent, ct);
        await sse.WriteAsync("response.output_item.done", new ResponseOutputItemEvent("response.output_item.done", Next(), 0, Reasoning(thought, status)), web.ResponseOutputItemEvent, ct);
    }

    private ResponseOutputMessage Message(string text, string status) =>
        new("message", MessageId, status, "assistant", [new OutputTextPart("output_text", text, [], [])]);

    private ResponseReasoningItem Reasoning(string thought, string status) =>
        new("reasoning", ReasoningId, [], [new ReasoningTextPart("reasoning_text", thought)], status);

    private ResponseObject InProgress() => Build("in_progress", [], null, null, null);

    /// <param name="withMessage">Whether the output has a message: not when the model only called functions.</param>
    private ResponseObject Finish(string text, string thought, FinishReason reason, IReadOnlyList<ToolCall>? calls, bool withMessage, GenerationUsage u)
    {
        var complete = reason != FinishReason.Length;
        var usage = new ResponseUsageDto(u.PromptTokens, new InputTokensDetailsDto(u.CachedPromptTokens, u.PromptTokens - u.CachedPromptTokens), u.CompletionTokens, new OutputTokensDetailsDto(u.ReasoningTokens), u.TotalTokens);
        var status = complete ? "completed" : "incomplete";
        var output = new List<ResponseOutputItem>();
        if (thought.Length > 0)
        {
            output.Add(Reasoning(thought, complete || text.Length > 0 || calls is { Count: > 0 } ? "completed" : "incomplete"));
        }

        if (withMessage)
        {
            output.Add(Message(text, status));
        }

        foreach (var call in calls ?? [])
        {
            output.Add(new ResponseFunctionCallItem("function_call", "fc_" + Guid.NewGuid().ToString("N"), call.Id, call.Name, call.Arguments, "completed"));
        }

        var response = Build(
            status,
            output,
            usage,
            complete ? null : new IncompleteDetailsDto("max_output_tokens"),
            complete ? clock.GetUtcNow().ToUnixTimeSeconds() : null);

        // The reply as the next turn of the conversation: its text (none when it only called), its calls, its thinking.
        var turn = new ChatMessage("assistant", withMessage ? text : null)
        {
            ToolCalls = calls is { Count: > 0 } ? calls : null,
            Reasoning = thought.Length > 0 ? thought : null,
        };
        finished?.Invoke(response, turn);
        return response;
    }

    /// <summary>The format echoed as OpenAI does; a json_schema one without a schema is JSON of any object.</summary>
    private ResponseTextFormatOut Format() => body.Text?.Format is { Type: "json_schema" } f
        ? new ResponseTextFormatOut("json_schema")
        {
            Name = f.Name,
            Description = f.Description,
            Schema = f.Schema is { ValueKind: JsonValueKind.Object } schema ? schema : EmptyObject,
            Strict = f.Strict ?? false,
        }
        : new ResponseTextFormatOut(body.Text?.Format?.Type ?? "text");

    private ResponseObject Build(string status, IReadOnlyList<ResponseOutputItem> output, ResponseUsageDto? usage, IncompleteDetailsDto? incomplete, long? completedAt) => new(
        Id, "response", _created, status, completedAt, null, incomplete, body.Instructions, body.MaxOutputTokens, mapped.Request.Model, output,
        mapped.Request.ParallelToolCalls, body.PreviousResponseId, body.Store != false, sampling.Temperature, sampling.TopP,
        new ResponseTextConfigDto(Format()), mapped.ToolChoice, mapped.Tools, "disabled", usage,
        body.Metadata is { ValueKind: JsonValueKind.Object } metadata ? metadata : EmptyObject);
}
