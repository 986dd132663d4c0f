using System.Runtime.CompilerServices;
using System.Text;

namespace EdgeServer.Inference.Chat;

/// <summary>
/// Reads a generation that may call tools: text streams through until something that may open a call appears;
/// from there the output is held, and at the end it becomes <see cref="GenerationChunk.ToolCalls"/> with finish
/// reason <see cref="FinishReason.ToolCalls"/>, or, when it is not a well-formed call of a known tool, text.
/// </summary>
internal sealed class ToolCallSession(IGenerationSession inner, ToolCallSyntax syntax, IReadOnlyList<ToolDefinition> tools) : IGenerationSession
{
    public string Model => inner.Model;

    public int PromptTokens => inner.PromptTokens;

    public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var marker = ToolCallFormat.Marker(syntax);
        var output = new StringBuilder();
        var emitted = 0;
        var plain = false;
        await foreach (var chunk in inner.ReadAllAsync(cancellationToken))
        {
            output.Append(chunk.Text);
            var text = output.ToString();
            if (chunk.IsFinal)
            {
                if (!plain && chunk.FinishReason == FinishReason.Stop && ToolCallFormat.Parse(syntax, text[emitted..], tools) is { } parsed)
                {
                    var content = parsed.Content;
                    yield return chunk with { Text = content, FinishReason = FinishReason.ToolCalls, ToolCalls = parsed.Calls };
                }
                else
                {
                    yield return chunk with { Text = text[emitted..] };
                }

                yield break;
            }

            var safe = text.Length;
            if (!plain)
            {
                if (ToolCallFormat.StartsReply(syntax))
                {
                    var trimmed = text.TrimStart();
                    if (trimmed.Length == 0 || trimmed.StartsWith(marker, StringComparison.Ordinal) || marker.StartsWith(trimmed, StringComparison.Ordinal))
                    {
                        safe = 0;
                    }
                    else
                    {
                        plain = true;
                    }
                }
                else
                {
                    var at = text.IndexOf(marker, emitted, StringComparison.Ordinal);
                    safe = at >= 0 ? at : text.Length - HeldSuffix(text, marker);
                }
            }

            if (safe > emitted)
            {
                yield return chunk with { Text = text[emitted..safe] };
                emitted = safe;
            }
            else if (chunk.Logprobs is not null)
            {
                yield return chunk with { Text = string.Empty };
            }
        }
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that could be the start of <paramref name="marker"/>.</summary>
    private static int HeldSuffix(string text, string marker)
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
