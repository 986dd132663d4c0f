namespace EdgeServer.Inference.Gguf;

/// <summary>
/// A GGUF array value: its element type and length. <see cref="Values"/> holds the elements of short arrays of
/// numbers (per-layer hyper-parameters), as their CLR types; it is null for strings and long arrays.
/// </summary>
public sealed record GgufArray(GgufValueType ElementType, ulong Count, IReadOnlyList<object>? Values = null);

/// <summary>A string value too long to keep (such as a whole tokenizer.json); only its length is known.</summary>
public sealed record GgufLongString(ulong Length);

/// <summary>One tensor's header. <see cref="Offset"/> is relative to the start of the data section.</summary>
public sealed record GgufTensorInfo(string Name, IReadOnlyList<ulong> Dimensions, GgmlType Type, ulong Offset, ulong ByteSize)
{
    public ulong ElementCount => Dimensions.Aggregate(1UL, (a, d) => a * d);
}

/// <summary>A validated GGUF file's header: metadata, tensor table and layout.</summary>
public sealed class GgufFile
{
    public const string ArchitectureKey = "general.architecture";

    internal GgufFile(string path, long fileLength, uint version, uint alignment, long dataOffset,
        IReadOnlyDictionary<string, object> metadata, IReadOnlyList<GgufTensorInfo> tensors)
    {
        Path = path;
        FileLength = fileLength;
        Version = version;
        Alignment = alignment;
        DataOffset = dataOffset;
        Metadata = metadata;
        Tensors = tensors;
    }

    public string Path { get; }

    public long FileLength { get; }

    public uint Version { get; }

    public uint Alignment { get; }

    /// <summary>Absolute file offset of the tensor data section.</summary>
    public long DataOffset { get; }

    /// <summary>
    /// Scalars as their CLR type (string, bool, integers, float, double); arrays as <see cref="GgufArray"/>; strings
    /// longer than <see cref="GgufReader.MaxKeptStringLength"/> as <see cref="GgufLongString"/>.
    /// </summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }

    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    public string? Architecture => GetString(ArchitectureKey);

    public string? Name => GetString("general.name");

    /// <summary><c>tokenizer.chat_template</c>, or null when the model has none.</summary>
    public string? ChatTemplate => GetString("tokenizer.chat_template");

    /// <summary>The tokenizer family: <c>llama</c> (SentencePiece), <c>gpt2</c> (byte-level BPE), <c>bert</c>, ...</summary>
    public string? TokenizerModel => GetString("tokenizer.ggml.model");

    public long? ContextLength => Architecture is { } arch ? GetInteger($"{arch}.context_length") : null;

    /// <summary><c>general.file_type</c> (llama_ftype), or null when absent.</summary>
    public long? FileType => GetInteger("general.file_type");

    /// <summary>A human name for the quantization, e.g. <c>Q4_0</c>; from file_type, else the commonest tensor type.</summary>
    public string Quantization => FileType is { } ft && FileTypeNames.TryGetValue(ft, out var name)
        ? name
        : Tensors.Count == 0 ? "unknown" : Tensors.GroupBy(t => t.Type).OrderByDescending(g => g.Sum(t => (double)t.ByteSize)).First().Key.ToString();

    public ulong ParameterCount => Tensors.Aggregate(0UL, (sum, t) => sum + t.ElementCount);

    public string? GetString(string key) => Metadata.TryGetValue(key, out var v) ? v as string : null;

    public long? GetInteger(string key) => Metadata.TryGetValue(key, out var v) ? v switch
    {
        byte b => b, sbyte sb => sb, ushort us => us, short s => s, uint ui => ui, int i => i,
        ulong ul when ul <= long.MaxValue => (long)ul, long l => l,
        _ => null,
    } : null;

    private static readonly Dictionary<long, string> FileTypeNames = new()
    {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
        [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S",
        [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
        [28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
        [37] = "TQ2_0", [38] = "MXFP4_MOE", [39] = "NVFP4", [40] = "Q1_0", [41] = "Q2_0",
    };
}
