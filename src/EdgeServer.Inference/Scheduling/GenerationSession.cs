using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace EdgeServer.Inference.Scheduling;

/// <summary>
/// One admitted request: the scheduler writes chunks, the caller reads them. Cancelling either token, or
/// abandoning the enumeration, marks it cancelled; the decode loop then frees its slot within one step.
/// </summary>
internal sealed class GenerationSession : IGenerationSession
{
    private readonly Channel<GenerationChunk> _output = Channel.CreateUnbounded<GenerationChunk>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = true, AllowSynchronousContinuations = false });
    private readonly CancellationTokenRegistration _startRegistration;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<GenerationSession>? _abandoned;
    private volatile bool _cancelled;
    private int _readers;
    private int _state; // Queued, then Admitted (a slot runs it) or Dropped (it never will)

    private const int Queued = 0;
    private const int Admitted = 1;
    private const int Dropped = 2;

    /// <param name="abandoned">Called once if the session is cancelled while still queued: it gives its place back at once.</param>
    public GenerationSession(string model, GenerationRequest request, int[] promptTokens, int maxTokens, CancellationToken cancellationToken, Action<GenerationSession>? abandoned = null)
    {
        Model = model;
        Request = request;
        Prompt = promptTokens;
        MaxTokens = maxTokens;
        Parent = Activity.Current?.Context ?? default;
        _abandoned = abandoned;
        _startRegistration = cancellationToken.Register(static s => ((GenerationSession)s!).Cancel(), this);
    }

    /// <summary>A marker put in the queue only to wake an idle decode loop.</summary>
    internal static GenerationSession Wakeup { get; } = new(string.Empty, new GenerationRequest { Model = string.Empty }, [], 0, CancellationToken.None);

    /// <summary>Completes when a slot takes the session, or when it ends without one.</summary>
    public Task Started => _started.Task;

    /// <summary>The decode loop takes the session into a slot; false when it was dropped meanwhile.</summary>
    internal bool TryAdmit()
    {
        if (Interlocked.CompareExchange(ref _state, Admitted, Queued) != Queued)
        {
            return false;
        }

        _started.TrySetResult();
        return true;
    }

    /// <summary>
    /// Ends a session that never got a slot, once: its sampler is freed and its reader sees <paramref name="error"/>
    /// (or a cancellation). False when it was admitted or dropped already.
    /// </summary>
    internal bool TryDrop(Exception? error)
    {
        if (Interlocked.CompareExchange(ref _state, Dropped, Queued) != Queued)
        {
            return false;
        }

        TakeSampler()?.Dispose();
        Writer.TryComplete(error);
        _started.TrySetResult();
        return true;
    }

    public string Model { get; }

    public GenerationRequest Request { get; }

    public int[] Prompt { get; }

    public int PromptTokens => Prompt.Length;

    public int MaxTokens { get; }

    public bool IsCancelled => _cancelled;

    /// <summary>The sampler built for this request before it was queued; the slot that runs it takes it.</summary>
    internal Sampling.TokenSampler? Sampler { private get; init; }

    private int _samplerTaken;

    /// <summary>Hands the sampler over once; null after that (or for the wake-up marker).</summary>
    internal Sampling.TokenSampler? TakeSampler() => Interlocked.Exchange(ref _samplerTaken, 1) == 0 ? Sampler : null;

    /// <summary>Write control tokens' text into the output (a tool-call marker may be one).</summary>
    public bool RenderSpecialTokens { get; init; }

    /// <summary>The caller's trace context when it was queued; the engine's spans hang below it.</summary>
    public ActivityContext Parent { get; }

    public DateTimeOffset QueuedAt { get; set; }

    public DateTimeOffset AdmittedAt { get; set; }

    public DateTimeOffset FirstTokenAt { get; set; }

    internal ChannelWriter<GenerationChunk> Writer => _output.Writer;

    /// <summary>Marks the session cancelled; one still queued gives its place back at once, instead of when a slot frees.</summary>
    public void Cancel()
    {
        _cancelled = true;
        if (TryDrop(null))
        {
            _abandoned?.Invoke(this);
        }
    }

    public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _readers, 1) != 0)
        {
            throw new InvalidOperationException("A generation can be read only once.");
        }

        using var registration = cancellationToken.Register(static s => ((GenerationSession)s!).Cancel(), this);
        var completed = false;
        try
        {
            await foreach (var chunk in _output.Reader.ReadAllAsync(cancellationToken))
            {
                yield return chunk;
                if (chunk.IsFinal)
                {
                    completed = true;
                    yield break;
                }
            }
        }
        finally
        {
            if (!completed)
            {
                Cancel();
            }

            await _startRegistration.DisposeAsync();
        }
    }
}
