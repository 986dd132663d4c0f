using System.Runtime.CompilerServices;

namespace EdgeServer.Inference.Chat;

/// <summary>
/// Reads a generation of a reasoning model: its thinking goes to <see cref="GenerationChunk.Reasoning"/>, the answer
/// stays <see cref="GenerationChunk.Text"/> (split by <see cref="ReasoningSplitter"/>), and the final chunk's usage
/// counts the thinking's tokens. A <see cref="ToolCallSession"/> above it reads calls from the answer alone.
/// </summary>
internal sealed class ReasoningSession(IGenerationSession inner, ReasoningSyntax syntax, bool startsInside) : IGenerationSession
{
    public string Model => inner.Model;

    public int PromptTokens => inner.PromptTokens;

    public Task Started => inner.Started;

    public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var splitter = new ReasoningSplitter(syntax, startsInside);
        await foreach (var chunk in inner.ReadAllAsync(cancellationToken))
        {
            var (reasoning, answer) = splitter.Push(chunk.Text, chunk.Tokens);
            if (chunk.IsFinal)
            {
                var (lastReasoning, lastAnswer) = splitter.Flush();
                yield return chunk with
                {
                    Text = answer + lastAnswer,
                    Reasoning = reasoning + lastReasoning,
                    Usage = chunk.Usage is { } usage ? usage with { ReasoningTokens = splitter.ReasoningTokens } : null,
                };
                yield break;
            }

            if (reasoning.Length > 0 || answer.Length > 0 || chunk.Logprobs is not null)
            {
                yield return chunk with { Text = answer, Reasoning = reasoning };
            }
        }
    }
}
