using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace EdgeServer.Inference.Scheduling;

/// <summary>
/// The choices of one request (n &gt; 1), decoded side by side in their own slots, read as one stream: chunks come as
/// they are produced, each tagged with its <see cref="GenerationChunk.Choice"/>; the stream ends when every choice
/// has ended. Leaving early (an error, a disconnect) cancels every choice, which frees their slots.
/// </summary>
internal sealed class ChoicesSession(IReadOnlyList<IGenerationSession> choices) : IGenerationSession
{
    public string Model => choices[0].Model;

    public int PromptTokens => choices[0].PromptTokens;

    /// <summary>The first choice was queued first, so it gets a slot first.</summary>
    public Task Started => choices[0].Started;

    public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var channel = Channel.CreateUnbounded<GenerationChunk>(new UnboundedChannelOptions { SingleReader = true });
        var pumps = choices.Select(async (session, index) =>
        {
            await foreach (var chunk in session.ReadAllAsync(stop.Token))
            {
                await channel.Writer.WriteAsync(chunk with { Choice = index }, stop.Token);
            }
        }).ToList();
        _ = Task.WhenAll(pumps).ContinueWith(t => channel.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        try
        {
            await foreach (var chunk in channel.Reader.ReadAllAsync(cancellationToken))
            {
                yield return chunk;
            }
        }
        finally
        {
            await stop.CancelAsync();
        }
    }
}
