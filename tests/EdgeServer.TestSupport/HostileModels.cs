using EdgeServer.Inference.Gguf;

namespace EdgeServer.TestSupport;

/// <summary>
/// A tiny llama model (32 wide, 2 layers, 4 heads over 2 KV heads) and ways to spoil it: each variant changes one
/// thing llama.cpp either refuses or, worse, aborts the whole process on.
/// </summary>
public static class HostileModels
{
    public static readonly LlamaShape Shape = new(
        EmbeddingLength: 32, BlockCount: 2, HeadCount: 4, HeadCountKv: 2, FeedForwardLength: 64, ContextLength: 256);

    public static SpmVocabulary Vocabulary { get; } = new(["▁a", "▁b", "a", "b"]);

    /// <summary>The tiny model's writer, to change before writing.</summary>
    public static GgufWriter Writer() => LlamaModelBuilder.CreateWriter(Shape, Vocabulary, Weights, name: "tiny-test-model");

    /// <summary>Random weights computed once: hundreds of variants are written per test run.</summary>
    private static readonly CachedWeights Weights = new(new RandomLlamaWeights(seed: 11));

    public static void Write(string path, Action<GgufWriter>? spoil = null)
    {
        var writer = Writer();
        spoil?.Invoke(writer);
        writer.Write(path);
    }

    /// <summary>Replaces one metadata value, with the GGUF type of <paramref name="value"/>'s CLR type.</summary>
    public static Action<GgufWriter> Set(string key, object value) => w =>
    {
        w.Remove(key);
        _ = value switch
        {
            uint u => w.Add(key, u),
            int i => w.Add(key, i),
            ulong ul => w.Add(key, ul),
            long l => w.Add(key, l),
            float f => w.Add(key, f),
            double d => w.Add(key, d),
            bool b => w.Add(key, b),
            string s => w.Add(key, s),
            _ => throw new ArgumentException($"No GGUF type for {value.GetType()}.", nameof(value)),
        };
    };

    /// <summary>Replaces the vocabulary's pieces (scores and types stay as they are).</summary>
    public static Action<GgufWriter> Pieces(Func<List<string>, List<string>> change) => w =>
        w.Remove("tokenizer.ggml.tokens").Add("tokenizer.ggml.tokens", change(Vocabulary.Tokens.ToList()));

    /// <summary>
    /// One piece appears twice. llama.cpp aborts while reading such a vocabulary
    /// (GGML_ASSERT(id_to_token.size() == token_to_id.size()) in llama-vocab.cpp), even when it reads nothing else.
    /// </summary>
    public static Action<GgufWriter> DuplicatePiece => Pieces(p =>
    {
        p[^1] = p[^2];
        return p;
    });

    /// <summary>
    /// A SentencePiece vocabulary without its byte pieces &lt;0x00&gt;..&lt;0xFF&gt;. llama.cpp loads it, then
    /// aborts (an uncaught std::out_of_range) on the first text holding a character the vocabulary lacks.
    /// </summary>
    public static Action<GgufWriter> NoBytePieces => Pieces(p =>
        p.Select(piece => piece.StartsWith("<0x", StringComparison.Ordinal) ? "▁byte" + piece[3..^1] : piece).ToList());

    private sealed class CachedWeights(ILlamaWeights inner) : ILlamaWeights
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, int), float[]> _rows = new();

        public void FillRow(string tensor, int row, Span<float> values)
        {
            var length = values.Length;
            _rows.GetOrAdd((tensor, row), _ =>
            {
                var r = new float[length];
                inner.FillRow(tensor, row, r);
                return r;
            }).CopyTo(values);
        }
    }
}
