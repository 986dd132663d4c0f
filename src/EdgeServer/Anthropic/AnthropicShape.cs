using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.OpenAi;

namespace EdgeServer.Anthropic;

/// <summary>
/// Anthropic's reply: whole, one message with thinking, text and tool_use blocks; streamed, its event sequence over server-sent
/// events with <c>event:</c> names: message_start, per block content_block_start, deltas and content_block_stop,
/// then message_delta (stop reason and usage) and message_stop. Tool calls are known when the reply ends, so their
/// blocks come last, each input in one input_json_delta.
/// </summary>
internal sealed class AnthropicShape(string model) : IResponseShape<ServerSentEvents>
{
    private readonly string _id = "msg_" + Guid.NewGuid().ToString("N")[..24];
    private int _promptTokens;
    private int _index;
    private bool _textOpen;
    private bool _thinkingOpen;
    private FinishReason _reason;
    private string? _stopSequence;

    public Task WriteStartAsync(ServerSentEvents stream, int choices, CancellationToken cancellationToken) => WriteStartAsync(stream, choices, 0, cancellationToken);

    public Task WriteStartAsync(ServerSentEvents stream, int choices, int promptTokens, CancellationToken cancellationToken)
    {
        _promptTokens = promptTokens;
        var message = new AnthropicMessageResponse(_id, model, [], new AnthropicUsage(promptTokens, 0));
        return stream.WriteAsync("message_start", new AnthropicMessageStart(message), AnthropicJsonContext.Web.AnthropicMessageStart, cancellationToken);
    }

    public async Task WriteChunkAsync(ServerSentEvents stream, GenerationChunk chunk, CancellationToken ct)
    {
        if (chunk.Reasoning is { Length: > 0 } thought)
        {
            if (!_thinkingOpen)
            {
                await stream.WriteAsync("content_block_start", new AnthropicBlockStart(_index, AnthropicContentBlock.OfThinking(string.Empty)), AnthropicJsonContext.Web.AnthropicBlockStart, ct);
                _thinkingOpen = true;
            }

            await stream.WriteAsync("content_block_delta", new AnthropicBlockDelta(_index, new AnthropicDelta("thinking_delta") { Thinking = thought }), AnthropicJsonContext.Web.AnthropicBlockDelta, ct);
        }

        if (chunk.Text.Length > 0 || chunk.IsFinal || chunk.ToolCalls is { Count: > 0 })
        {
            await CloseThinkingAsync(stream, ct);
        }

        if (chunk.Text.Length > 0)
        {
            if (!_textOpen)
            {
                await stream.WriteAsync("content_block_start", new AnthropicBlockStart(_index, AnthropicContentBlock.OfText(string.Empty)), AnthropicJsonContext.Web.AnthropicBlockStart, ct);
                _textOpen = true;
            }

            await stream.WriteAsync("content_block_delta", new AnthropicBlockDelta(_index, new AnthropicDelta("text_delta") { Text = chunk.Text }), AnthropicJsonContext.Web.AnthropicBlockDelta, ct);
        }

        if (chunk.IsFinal || chunk.ToolCalls is { Count: > 0 })
        {
            await CloseTextAsync(stream, ct);
        }

        foreach (var call in chunk.ToolCalls ?? [])
        {
            var block = ToolUse(call) with { Input = EmptyObject };
            await stream.WriteAsync("content_block_start", new AnthropicBlockStart(_index, block), AnthropicJsonContext.Web.AnthropicBlockStart, ct);
            var input = new AnthropicDelta("input_json_delta") { PartialJson = Input(call.Arguments).GetRawText() };
            await stream.WriteAsync("content_block_delta", new AnthropicBlockDelta(_index, input), AnthropicJsonContext.Web.AnthropicBlockDelta, ct);
            await stream.WriteAsync("content_block_stop", new AnthropicBlockStop(_index++), AnthropicJsonContext.Web.AnthropicBlockStop, ct);
        }

        if (chunk.FinishReason is { } reason)
        {
            _reason = reason;
            _stopSequence = chunk.StopSequence;
        }
    }

    public async Task WriteEndAsync(ServerSentEvents stream, GenerationUsage usage, CancellationToken cancellationToken)
    {
        var delta = new AnthropicMessageDelta(new AnthropicStop(StopReason(_reason, _stopSequence)) { StopSequence = _stopSequence }, new AnthropicUsage(usage.PromptTokens, usage.CompletionTokens));
        await stream.WriteAsync("message_delta", delta, AnthropicJsonContext.Web.AnthropicMessageDelta, cancellationToken);
        await stream.WriteAsync("message_stop", new AnthropicEvent("message_stop"), AnthropicJsonContext.Web.AnthropicEvent, cancellationToken);
    }

    public Task WriteErrorAsync(ServerSentEvents stream, OpenAiException error, CancellationToken cancellationToken) =>
        stream.WriteAsync("error", AnthropicResults.ToError(error), AnthropicJsonContext.Web.AnthropicError, cancellationToken);

    public IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage)
    {
        var c = choices[0];
        var content = new List<AnthropicContentBlock>();
        if (c.Reasoning.Length > 0)
        {
            content.Add(AnthropicContentBlock.OfThinking(c.Reasoning));
        }

        if (c.Text.Length > 0)
        {
            content.Add(AnthropicContentBlock.OfText(c.Text));
        }

        content.AddRange((c.ToolCalls ?? []).Select(ToolUse));
        return AnthropicResults.Json(
            new AnthropicMessageResponse(_id, model, content, new AnthropicUsage(usage.PromptTokens, usage.CompletionTokens))
            {
                StopReason = StopReason(c.Reason, c.StopSequence),
                StopSequence = c.StopSequence,
            },
            AnthropicJsonContext.Web.AnthropicMessageResponse);
    }

    /// <summary>A thinking block ends with its signature, as Anthropic sends it: empty here, since nothing can verify it.</summary>
    private async Task CloseThinkingAsync(ServerSentEvents stream, CancellationToken ct)
    {
        if (_thinkingOpen)
        {
            await stream.WriteAsync("content_block_delta", new AnthropicBlockDelta(_index, new AnthropicDelta("signature_delta") { Signature = string.Empty }), AnthropicJsonContext.Web.AnthropicBlockDelta, ct);
            await stream.WriteAsync("content_block_stop", new AnthropicBlockStop(_index++), AnthropicJsonContext.Web.AnthropicBlockStop, ct);
            _thinkingOpen = false;
        }
    }

    private async Task CloseTextAsync(ServerSentEvents stream, CancellationToken ct)
    {
        if (_textOpen)
        {
            await stream.WriteAsync("content_block_stop", new AnthropicBlockStop(_index++), AnthropicJsonContext.Web.AnthropicBlockStop, ct);
            _textOpen = false;
        }
    }

    private static string StopReason(FinishReason reason, string? stopSequence) => reason switch
    {
        FinishReason.ToolCalls => "tool_use",
        FinishReason.Length => "max_tokens",
        _ => stopSequence is null ? "end_turn" : "stop_sequence",
    };

    /// <summary>A call as a tool_use block; its id as Anthropic spells them (toolu_…), which the client sends back in tool_result.</summary>
    private static AnthropicContentBlock ToolUse(ToolCall call) => new("tool_use")
    {
        Id = call.Id.StartsWith("toolu_", StringComparison.Ordinal) ? call.Id : "toolu_" + Guid.NewGuid().ToString("N")[..24],
        Name = call.Name,
        Input = Input(call.Arguments),
    };

    /// <summary>The input as an object (the engine's arguments are a JSON object's text).</summary>
    private static JsonElement Input(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object ? document.RootElement.Clone() : EmptyObject;
        }
        catch (JsonException)
        {
            return EmptyObject;
        }
    }

    private static readonly JsonElement EmptyObject = JsonDocument.Parse("{}").RootElement.Clone();
}
