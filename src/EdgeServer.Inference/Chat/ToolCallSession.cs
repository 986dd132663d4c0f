using System.Runtime.CompilerServices;
using System.Text;

namespace EdgeServer.Inference.Chat;

/// <summary>
/// Reads a generation that may call tools: text streams through until something that may open a call appears;
/// from there the output is held, and at the end it becomes <see cref="GenerationChunk.ToolCalls"/> with finish
/// reason <see cref="FinishReason.ToolCalls"/>, or, when it is not a well-formed call of a known tool, text. A call
/// that max_tokens cut off stays text too, and is also read as <see cref="GenerationChunk.CutOffToolCalls"/>.
/// </summary>
internal sealed class ToolCallSession(IGenerationSession inner, ToolCallSyntax syntax, IReadOnlyList<ToolDefinition> tools) : IGenerationSession
{
    public string Model => inner.Model;

    public int PromptTokens => inner.PromptTokens;

    public Task Started => inner.Started;

    public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var marker = ToolCallFormat.Marker(syntax);
        var pending = new StringBuilder(); // output not yet passed on
        var plain = false; // the reply cannot be a call: pass everything through
        var inCall = false; // a call has opened: hold everything until the end
        await foreach (var chunk in inner.ReadAllAsync(cancellationToken))
        {
            if (plain)
            {
                yield return chunk;
                continue;
            }

            pending.Append(chunk.Text);
            if (chunk.IsFinal)
            {
                var rest = pending.ToString();
                if (chunk.FinishReason == FinishReason.Stop && ToolCallFormat.Parse(syntax, rest, tools) is { } parsed)
                {
                    yield return chunk with { Text = parsed.Content, FinishReason = FinishReason.ToolCalls, ToolCalls = parsed.Calls };
                }
                else
                {
                    var cut = chunk.FinishReason == FinishReason.Length ? ToolCallFormat.ParseCutOff(syntax, rest, tools) : null;
                    yield return chunk with { Text = rest, CutOffToolCalls = cut is { } c ? new CutOffToolCalls(c.Content, c.Calls) : null };
                }

                yield break;
            }

            var safe = 0;
            if (!inCall)
            {
                var text = pending.ToString();
                if (ToolCallFormat.StartsReply(syntax))
                {
                    // Nothing has been passed on yet, so the pending text is the whole reply so far.
                    var trimmed = text.TrimStart();
                    plain = trimmed.Length > 0 && !trimmed.StartsWith(marker, StringComparison.Ordinal) && !marker.StartsWith(trimmed, StringComparison.Ordinal);
                    safe = plain ? text.Length : 0;
                }
                else
                {
                    var at = text.IndexOf(marker, StringComparison.Ordinal);
                    inCall = at >= 0;
                    safe = inCall ? at : text.Length - HeldSuffix(text, marker);
                }
            }

            if (safe > 0)
            {
                yield return chunk with { Text = pending.ToString(0, safe) };
                pending.Remove(0, safe);
            }
            else if (chunk.Logprobs is not null || chunk.Reasoning is { Length: > 0 })
            {
                // Thinking (read by a ReasoningSession below) is never a call: it passes while the answer is held.
                yield return chunk with { Text = string.Empty };
            }
        }
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that could be the start of <paramref name="marker"/>.</summary>
    internal static int HeldSuffix(string text, string marker)
    {
        for (var n = Math.Min(marker.Length - 1, text.Length); n > 0; n--)
        {
            if (text.AsSpan(text.Length - n).SequenceEqual(marker.AsSpan(0, n)))
            {
                return n;
            }
        }

        return 0;
    }
}
