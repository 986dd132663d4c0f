using System.Text;
using EdgeServer.Inference.Gguf;
using EdgeServer.TestSupport;

namespace EdgeServer.Inference.Tests.Gguf;

public class GgufReaderTests
{
    [Fact]
    public void ReadsTheMetadataOfAGeneratedModel()
    {
        var file = GgufReader.Read(SuccessorModel.SharedPath);
        Assert.Equal(3u, file.Version);
        Assert.Equal("llama", file.Architecture);
        Assert.Equal("successor-test-model", file.Name);
        Assert.Equal("llama", file.TokenizerModel);
        Assert.Equal(4096, file.ContextLength);
        Assert.Equal("F32", file.Quantization);
        Assert.Null(file.ChatTemplate);
        Assert.Equal(new GgufArray(GgufValueType.String, (ulong)SuccessorModel.Vocabulary.Count), file.Metadata["tokenizer.ggml.tokens"]);
        // 2 blocks × 9 tensors + embeddings, output norm, output.
        Assert.Equal(21, file.Tensors.Count);
        var shape = SuccessorModel.Shape;
        ulong e = (ulong)shape.EmbeddingLength, v = (ulong)SuccessorModel.Vocabulary.Count;
        ulong kv = (ulong)shape.KvEmbeddingLength, ff = (ulong)shape.FeedForwardLength;
        var perBlock = 2 * e + 2 * e * e + 2 * e * kv + 3 * e * ff;
        Assert.Equal(2 * e * v + e + 2 * perBlock, file.ParameterCount);
    }

    [SkippableFact]
    public void ReadsTheRealTrainedModelsHeader()
    {
        var path = SharedPaths.Stories260K;
        Skip.If(SharedPaths.MissingReason(path) is not null, SharedPaths.MissingReason(path));

        var file = GgufReader.Read(path);
        Assert.Equal("llama", file.Architecture);
        Assert.Equal(48, file.Tensors.Count);
        Assert.Equal(19, file.Metadata.Count);
        Assert.Equal(2048, file.ContextLength);
        Assert.Equal(292_800UL, file.ParameterCount);
        Assert.All(file.Tensors, t => Assert.Equal(GgmlType.F32, t.Type));
    }

    [Fact]
    public void ATruncatedFileIsRejectedWithPathAndReason()
    {
        var bytes = File.ReadAllBytes(SuccessorModel.SharedPath);
        foreach (var length in new[] { 0, 10, 24, 200, 5000, bytes.Length / 2, bytes.Length - 1 })
        {
            var path = Temp($"truncated-{length}.gguf", bytes[..length]);
            var e = Assert.Throws<GgufFormatException>(() => GgufReader.Read(path));
            Assert.Equal(path, e.Path);
            // Messages reach clients (503s, /v1/models): they name the file, never the folder it is in.
            Assert.Contains(Path.GetFileName(path), e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(Path.GetDirectoryName(path)!, e.Message, StringComparison.Ordinal);
            Assert.False(string.IsNullOrWhiteSpace(e.Reason));
        }
    }

    [Fact]
    public void AFileThatCannotBeOpenedIsRejectedWithoutItsFolder()
    {
        var path = TempPath("a-folder.gguf");
        Directory.CreateDirectory(path);
        var e = Assert.Throws<GgufFormatException>(() => GgufReader.Read(path));
        Assert.Contains("a-folder.gguf", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Path.GetDirectoryName(path)!, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(16, 1UL << 31, 30L << 30)] // 2^31 metadata entries in a sparse 30 GiB file
    [InlineData(8, 1UL << 31, 60L << 30)]  // 2^31 tensors in a sparse 60 GiB file
    public void HugeDeclaredCountsInAHugeFileAreAFormatError(int offset, ulong count, long length)
    {
        var path = TempPath($"huge-count-{offset}.gguf");
        using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write))
        {
            var header = new byte[24];
            BitConverter.TryWriteBytes(header.AsSpan(0), GgufReader.Magic);
            BitConverter.TryWriteBytes(header.AsSpan(4), 3u);
            BitConverter.TryWriteBytes(header.AsSpan(offset), count);
            stream.Write(header);
            stream.SetLength(length); // sparse: costs no disk space
        }

        try
        {
            // The rest of the file is zeros: the first key is empty, or the first tensor name is.
            Assert.Throws<GgufFormatException>(() => GgufReader.Read(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ANonGgufFileIsRejected()
    {
        var path = Temp("notes.gguf", Encoding.UTF8.GetBytes("This is a text file, not a model. It is long enough to have a header."));
        var e = Assert.Throws<GgufFormatException>(() => GgufReader.Read(path));
        Assert.Contains("not a GGUF file", e.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(4, 99u, "version 99")]            // version
    [InlineData(8, 0xFFFFFFFFu, "tensors")]       // tensor count low word
    [InlineData(16, 0x7FFFFFFFu, "metadata entries")] // kv count low word
    [InlineData(24, 0xFFFFFFF0u, "past the end")] // first key's string length
    public void CorruptHeaderFieldsAreRejected(int offset, uint value, string expected)
    {
        var bytes = File.ReadAllBytes(SuccessorModel.SharedPath);
        BitConverter.TryWriteBytes(bytes.AsSpan(offset), value);
        var path = Temp($"corrupt-{offset}.gguf", bytes);
        var e = Assert.Throws<GgufFormatException>(() => GgufReader.Read(path));
        Assert.Contains(expected, e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void ATensorPointingPastTheEndOfTheFileIsRejected()
    {
        var path = TempPath("bad-offset.gguf");
        new GgufWriter()
            .Add("general.architecture", "llama")
            .AddTensor("t", [64], GgmlType.F32, s => s.Write(new byte[256]))
            .Write(path);
        var ok = GgufReader.Read(path);
        Assert.Single(ok.Tensors);

        // Drop the tensor data but keep its header.
        var bytes = File.ReadAllBytes(path);
        var truncated = Temp("bad-offset-cut.gguf", bytes[..(int)ok.DataOffset]);
        var e = Assert.Throws<GgufFormatException>(() => GgufReader.Read(truncated));
        Assert.Contains("tensor 't'", e.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void WriterAndReaderAgreeOnValuesAlignmentAndOffsets()
    {
        var path = TempPath("roundtrip.gguf");
        new GgufWriter { Alignment = 64 }
            .Add("a.string", "héllo")
            .Add("a.uint", 7u)
            .Add("a.int", -3)
            .Add("a.float", 1.5f)
            .Add("a.bool", true)
            .Add("a.strings", ["x", "yy"])
            .AddTensor("first", [32, 2], GgmlType.Q8_0, s => GgmlEncoding.Write(s, new float[64], GgmlType.Q8_0))
            .AddTensor("second", [3], GgmlType.F16, s => GgmlEncoding.Write(s, [1f, 2f, 3f], GgmlType.F16))
            .Write(path);
        var file = GgufReader.Read(path);
        Assert.Equal(64u, file.Alignment);
        Assert.Equal("héllo", file.GetString("a.string"));
        Assert.Equal(7L, file.GetInteger("a.uint"));
        Assert.Equal(-3L, file.GetInteger("a.int"));
        Assert.Equal(1.5f, file.Metadata["a.float"]);
        Assert.Equal(true, file.Metadata["a.bool"]);
        Assert.Equal(new GgufArray(GgufValueType.String, 2), file.Metadata["a.strings"]);
        Assert.Equal(0, file.DataOffset % 64);
        Assert.Equal(68UL, file.Tensors[0].ByteSize);
        Assert.Equal(0UL, file.Tensors[0].Offset);
        Assert.Equal(128UL, file.Tensors[1].Offset);
    }

    internal static string TempPath(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), "gguf");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    internal static string Temp(string name, byte[] contents)
    {
        var path = TempPath(name);
        File.WriteAllBytes(path, contents);
        return path;
    }
}

public class EncodingTests
{
    [Fact]
    public void Q4_0MatchesGgmlsReferenceLayout()
    {
        // Values 0..31 scaled: the largest magnitude is the last, 31, so d = 31 / -8 and q = round(x / d) + 8.
        var values = Enumerable.Range(0, 32).Select(i => (float)i).ToArray();
        using var stream = new MemoryStream();
        GgmlEncoding.Write(stream, values, GgmlType.Q4_0);
        var bytes = stream.ToArray();
        Assert.Equal(18, bytes.Length);
        var d = (float)System.Buffers.Binary.BinaryPrimitives.ReadHalfLittleEndian(bytes);
        Assert.Equal(-31f / 8f, d, 0.01f);
        for (var j = 0; j < 16; j++)
        {
            var lo = bytes[2 + j] & 0x0F;
            var hi = bytes[2 + j] >> 4;
            Assert.Equal(values[j], (lo - 8) * d, 0.5f * Math.Abs(d) + 0.01f);
            Assert.Equal(values[j + 16], (hi - 8) * d, 0.5f * Math.Abs(d) + 0.01f);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0, 34)]
    [InlineData(GgmlType.Q4_0, 18)]
    public void EachBlockOfAQuantizedRowDequantizesToItsOwnValues(GgmlType type, int blockBytes)
    {
        // Two blocks of 32 with different ranges, so each block must carry its own scale at its own offset.
        var values = Enumerable.Range(0, 64).Select(i => i < 32 ? i - 16f : (i - 48) * 10f).ToArray();
        using var stream = new MemoryStream();
        GgmlEncoding.Write(stream, values, type);
        var bytes = stream.ToArray();
        Assert.Equal(2 * blockBytes, bytes.Length);
        for (var b = 0; b < 2; b++)
        {
            var block = bytes.AsSpan(b * blockBytes, blockBytes);
            var d = (float)System.Buffers.Binary.BinaryPrimitives.ReadHalfLittleEndian(block);
            for (var j = 0; j < 32; j++)
            {
                // ggml's dequantize_row_q8_0 / dequantize_row_q4_0.
                var q = type == GgmlType.Q8_0 ? (sbyte)block[2 + j] : j < 16 ? (block[2 + j] & 0x0F) - 8 : (block[2 + j - 16] >> 4) - 8;
                Assert.Equal(values[b * 32 + j], q * d, 0.5f * Math.Abs(d) + 0.01f);
            }
        }
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void QuantizedRowsMustFillWholeBlocks(GgmlType type)
    {
        var e = Assert.Throws<ArgumentException>(() => GgmlEncoding.Write(new MemoryStream(), new float[33], type));
        Assert.StartsWith($"{type} needs a multiple of 32 values.", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RandomWeightsAreTheSameInEveryProcess()
    {
        var row = new float[4];
        new RandomLlamaWeights(seed: 3, scale: 1f).FillRow("blk.0.attn_q.weight", 5, row);
        // Fixed by the seed, the tensor name and the row alone (System.Random with a given seed is stable).
        var again = new float[4];
        new RandomLlamaWeights(seed: 3, scale: 1f).FillRow("blk.0.attn_q.weight", 5, again);
        Assert.Equal(row, again);
        Assert.Equal(new Random(unchecked((3 * 1_000_003) ^ (RandomLlamaWeights.StableHash("blk.0.attn_q.weight") * 7_919) ^ (5 * 104_729)))
            .NextDouble() * 2 - 1, row[0], 6);
    }
}
