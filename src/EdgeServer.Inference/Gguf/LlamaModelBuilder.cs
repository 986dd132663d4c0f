namespace EdgeServer.Inference.Gguf;

/// <summary>The hyper-parameters of a llama-architecture model.</summary>
public sealed record LlamaShape(
    int EmbeddingLength,
    int BlockCount,
    int HeadCount,
    int HeadCountKv,
    int FeedForwardLength,
    int ContextLength = 2048,
    float RopeFreqBase = 10000f,
    float RmsEpsilon = 1e-5f)
{
    public int HeadDimension => EmbeddingLength / HeadCount;

    public int KvEmbeddingLength => HeadDimension * HeadCountKv;
}

/// <summary>
/// A SentencePiece ("llama") vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte tokens &lt;0x00&gt;..&lt;0xFF&gt;
/// (so any text can be tokenized), then the given pieces, then control pieces (e.g. a chat template's
/// &lt;|im_start|&gt;) and user-defined pieces (e.g. &lt;think&gt;). "▁" stands for a space, as in SentencePiece.
/// </summary>
public sealed class SpmVocabulary
{
    public const int Unknown = 0;
    public const int Bos = 1;
    public const int Eos = 2;
    public const int FirstByte = 3;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);

    public SpmVocabulary(IEnumerable<string> pieces, int padToCount = 0, IEnumerable<string>? controlPieces = null, IEnumerable<string>? userDefinedPieces = null)
    {
        Add("<unk>", 2);
        Add("<s>", 3);
        Add("</s>", 3);
        for (var b = 0; b < 256; b++)
        {
            Add($"<0x{b:X2}>", 6);
        }

        foreach (var piece in pieces)
        {
            Add(piece, 1);
        }

        foreach (var piece in controlPieces ?? [])
        {
            Add(piece, 3);
        }

        foreach (var piece in userDefinedPieces ?? [])
        {
            Add(piece, 4);
        }

        for (var i = 0; Tokens.Count < padToCount; i++)
        {
            Add($"▁tok{i}", 1);
        }
    }

    public List<string> Tokens { get; } = [];

    public List<float> Scores { get; } = [];

    public List<int> TokenTypes { get; } = [];

    public int Count => Tokens.Count;

    public int this[string piece] => _ids.TryGetValue(piece, out var id) ? id : throw new KeyNotFoundException($"'{piece}' is not in the vocabulary.");

    public static int ByteToken(byte b) => FirstByte + b;

    private void Add(string piece, int type)
    {
        if (!_ids.TryAdd(piece, Tokens.Count))
        {
            throw new ArgumentException($"Piece '{piece}' appears twice.");
        }

        Tokens.Add(piece);
        // SentencePiece merges prefer higher scores; longer pieces score higher so they win.
        Scores.Add(type == 1 ? -1000f + piece.Length : 0f);
        TokenTypes.Add(type);
    }
}

/// <summary>Supplies weights one row (ne0 values) at a time.</summary>
public interface ILlamaWeights
{
    /// <param name="tensor">The tensor name, e.g. <c>blk.0.attn_q.weight</c>.</param>
    /// <param name="row">Row index (over ne1 × ne2 × ne3).</param>
    void FillRow(string tensor, int row, Span<float> values);
}

/// <summary>Uniform random weights in [-scale, scale], reproducible per tensor name; norm weights are 1.</summary>
public sealed class RandomLlamaWeights(int seed = 1234, float scale = 0.02f) : ILlamaWeights
{
    public void FillRow(string tensor, int row, Span<float> values)
    {
        if (tensor.EndsWith("norm.weight", StringComparison.Ordinal))
        {
            values.Fill(1f);
            return;
        }

        // HashCode.Combine is seeded per process; this is the same in every run.
        var random = new Random(unchecked((seed * 1_000_003) ^ (StableHash(tensor) * 7_919) ^ (row * 104_729)));
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        }
    }

    internal static int StableHash(string s)
    {
        var h = 17;
        foreach (var c in s)
        {
            h = unchecked(h * 31 + c);
        }

        return h;
    }
}

/// <summary>Writes llama-architecture GGUF models (the tensors and metadata llama.cpp's "llama" loader expects).</summary>
public static class LlamaModelBuilder
{
    public static void Write(string path, LlamaShape shape, SpmVocabulary vocabulary, ILlamaWeights weights,
        GgmlType matrixType = GgmlType.F32, string name = "edgeserver-generated", string? chatTemplate = null) =>
        CreateWriter(shape, vocabulary, weights, matrixType, name, chatTemplate).Write(path);

    /// <summary>The writer <see cref="Write"/> uses, for callers that change metadata before writing.</summary>
    public static GgufWriter CreateWriter(LlamaShape shape, SpmVocabulary vocabulary, ILlamaWeights weights,
        GgmlType matrixType = GgmlType.F32, string name = "edgeserver-generated", string? chatTemplate = null)
    {
        if (shape.EmbeddingLength % shape.HeadCount != 0 || shape.HeadCount % shape.HeadCountKv != 0)
        {
            throw new ArgumentException("Embedding length must divide by heads, and heads by KV heads.", nameof(shape));
        }

        var fileType = matrixType switch
        {
            GgmlType.F32 => 0u,
            GgmlType.F16 => 1u,
            GgmlType.Q4_0 => 2u,
            GgmlType.Q8_0 => 7u,
            _ => throw new NotSupportedException($"Matrix type {matrixType} is not supported by the builder."),
        };

        var w = new GgufWriter()
            .Add("general.architecture", "llama")
            .Add("general.name", name)
            .Add("general.file_type", fileType)
            .Add("llama.context_length", (uint)shape.ContextLength)
            .Add("llama.embedding_length", (uint)shape.EmbeddingLength)
            .Add("llama.block_count", (uint)shape.BlockCount)
            .Add("llama.feed_forward_length", (uint)shape.FeedForwardLength)
            .Add("llama.attention.head_count", (uint)shape.HeadCount)
            .Add("llama.attention.head_count_kv", (uint)shape.HeadCountKv)
            .Add("llama.rope.dimension_count", (uint)shape.HeadDimension)
            .Add("llama.rope.freq_base", shape.RopeFreqBase)
            .Add("llama.attention.layer_norm_rms_epsilon", shape.RmsEpsilon)
            .Add("llama.vocab_size", (uint)vocabulary.Count)
            .Add("tokenizer.ggml.model", "llama")
            .Add("tokenizer.ggml.tokens", vocabulary.Tokens)
            .Add("tokenizer.ggml.scores", vocabulary.Scores)
            .Add("tokenizer.ggml.token_type", vocabulary.TokenTypes)
            .Add("tokenizer.ggml.unknown_token_id", (uint)SpmVocabulary.Unknown)
            .Add("tokenizer.ggml.bos_token_id", (uint)SpmVocabulary.Bos)
            .Add("tokenizer.ggml.eos_token_id", (uint)SpmVocabulary.Eos)
            .Add("tokenizer.ggml.add_bos_token", true)
            .Add("tokenizer.ggml.add_eos_token", false);
        if (chatTemplate is not null)
        {
            w.Add("tokenizer.chat_template", chatTemplate);
        }

        int e = shape.EmbeddingLength, kv = shape.KvEmbeddingLength, ff = shape.FeedForwardLength, v = vocabulary.Count;
        // Small models keep F32 embeddings; quantized ones quantize them too, as llama-quantize does (a 1B model's
        // F32 embedding table alone would be 1 GiB).
        Tensor(w, weights, "token_embd.weight", e, v, matrixType is GgmlType.Q4_0 or GgmlType.Q8_0 ? matrixType : GgmlType.F32);
        for (var layer = 0; layer < shape.BlockCount; layer++)
        {
            var p = $"blk.{layer}.";
            Tensor(w, weights, p + "attn_norm.weight", e, 1, GgmlType.F32);
            Tensor(w, weights, p + "attn_q.weight", e, e, matrixType);
            Tensor(w, weights, p + "attn_k.weight", e, kv, matrixType);
            Tensor(w, weights, p + "attn_v.weight", e, kv, matrixType);
            Tensor(w, weights, p + "attn_output.weight", e, e, matrixType);
            Tensor(w, weights, p + "ffn_norm.weight", e, 1, GgmlType.F32);
            Tensor(w, weights, p + "ffn_gate.weight", e, ff, matrixType);
            Tensor(w, weights, p + "ffn_up.weight", e, ff, matrixType);
            Tensor(w, weights, p + "ffn_down.weight", ff, e, matrixType);
        }

        Tensor(w, weights, "output_norm.weight", e, 1, GgmlType.F32);
        Tensor(w, weights, "output.weight", e, v, matrixType);
        return w;
    }

    private static void Tensor(GgufWriter writer, ILlamaWeights weights, string name, int rowLength, int rows, GgmlType type)
    {
        ulong[] dims = rows == 1 ? [(ulong)rowLength] : [(ulong)rowLength, (ulong)rows];
        writer.AddTensor(name, dims, type, stream =>
        {
            var row = new float[rowLength];
            for (var r = 0; r < rows; r++)
            {
                weights.FillRow(name, r, row);
                GgmlEncoding.Write(stream, row, type);
            }
        });
    }
}
