using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Text;

namespace EdgeServer.Inference.Scheduling;

/// <summary>
/// One KV sequence of a model's context and the request it runs: its cached tokens, where it is in the prompt, its
/// sampler (and a grammar step running off the decode thread), and the text decoding and stop matching of its output.
/// Touched only by the decode loop.
/// </summary>
internal sealed class Slot(int id)
{
    public int Id { get; } = id;

    public GenerationSession? Session { get; set; }

    /// <summary>Tokens whose KV this slot's sequence holds, in order.</summary>
    public List<int> Cached { get; } = [];

    public int PromptPosition { get; set; }

    public int CachedPromptTokens { get; set; }

    public int Generated { get; set; }

    /// <summary>Of <see cref="Generated"/>, the tokens whose text a chunk has carried.</summary>
    public int Reported { get; set; }

    /// <summary>The last sampled token, to be decoded in the next step; -1 when none.</summary>
    public int PendingToken { get; set; } = -1;

    public int BatchIndex { get; set; } = -1;

    public TokenSampler? Sampler { get; set; }

    /// <summary>Whether this slot has tokens in the batch being decoded.</summary>
    public bool InBatch { get; set; }

    /// <summary>A grammar step running off the decode thread; it yields the sampled token.</summary>
    public Task<int>? Sampling { get; set; }

    public long SamplingSince { get; set; }

    /// <summary>The loop step that started the running grammar step.</summary>
    public long SamplingStep { get; set; }

    /// <summary>This slot's logits, copied for a grammar step (the context's are overwritten by the next decode).</summary>
    public float[]? LogitsCopy { get; set; }

    public Utf8StreamDecoder? Decoder { get; set; }

    public StopSequenceMatcher? Stops { get; set; }

    /// <summary>Log probabilities of tokens whose text has not been written yet.</summary>
    public List<TokenLogprob> PendingLogprobs { get; } = [];
}
