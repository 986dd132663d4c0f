using System.Buffers.Binary;
using System.Text;
using CsCheck;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Gguf;

/// <summary>
/// Fuzzing of model files. Bytes: whatever they are, the GGUF reader returns a file or throws its own
/// <see cref="GgufFormatException"/>; it never throws anything else, never hangs, and never allocates more than a
/// small multiple of the file's size. Metadata values: a valid model with one hyper-parameter, tensor dimension
/// or vocabulary array made hostile is either served or refused with a typed error, and llama.cpp never aborts.
/// </summary>
public class GgufFuzzTests
{
    private static readonly byte[] Seed = MakeSeed();
    private static readonly ulong[] Extremes = [0UL, 1UL, 0xFFFFFFFFUL, 0x7FFFFFFFFFFFFFFFUL, ulong.MaxValue, 1UL << 40];

    [Fact]
    public void MutatedFilesOnlyEverYieldTheReadersOwnError()
    {
        var mutation = Gen.OneOf(
            // Flip up to 8 bytes anywhere.
            Gen.Select(Gen.Int[0, Seed.Length - 1].Array[1, 8], Gen.Byte.Array[8], (at, values) => Apply(Seed, at, values)),
            // Overwrite an aligned 8-byte field (lengths, counts, offsets) with an extreme value.
            Gen.Select(Gen.Int[0, (Seed.Length - 8) / 4], Gen.Int[0, Extremes.Length - 1].Select(i => Extremes[i]),
                (slot, value) => Overwrite(Seed, slot * 4, value)),
            // Truncate.
            Gen.Int[0, Seed.Length - 1].Select(n => Seed[..n]),
            // Insert random bytes.
            Gen.Select(Gen.Int[0, Seed.Length], Gen.Byte.Array[1, 64], (at, bytes) => (byte[])[.. Seed[..at], .. bytes, .. Seed[at..]]));

        mutation.Sample(bytes =>
        {
            using var stream = new MemoryStream(bytes, writable: false);
            var before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                GgufReader.Read(stream, "fuzz.gguf");
            }
            catch (GgufFormatException)
            {
            }

            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < 64 * 1024 + 16L * bytes.Length, $"allocated {allocated} bytes for a {bytes.Length}-byte file");
        }, iter: 4000, threads: 1);
    }

    private static byte[] Apply(byte[] seed, int[] at, byte[] values)
    {
        var copy = (byte[])seed.Clone();
        for (var i = 0; i < at.Length; i++)
        {
            copy[at[i]] = values[i];
        }

        return copy;
    }

    private static byte[] Overwrite(byte[] seed, int offset, ulong value)
    {
        var copy = (byte[])seed.Clone();
        BitConverter.TryWriteBytes(copy.AsSpan(offset), value);
        return copy;
    }

    /// <summary>A small file with every kind of metadata value and a few tensors.</summary>
    private static byte[] MakeSeed()
    {
        using var stream = new MemoryStream();
        new GgufWriter()
            .Add("general.architecture", "llama")
            .Add("general.name", "fuzz-seed")
            .Add("llama.context_length", 128u)
            .Add("some.int", -5)
            .Add("some.float", 0.25f)
            .Add("some.bool", true)
            .Add("tokenizer.ggml.tokens", ["<unk>", "a", "bc", "é"])
            .Add("tokenizer.ggml.scores", [0f, -1f, -2f, -3f])
            .Add("tokenizer.ggml.token_type", [2, 1, 1, 1])
            .AddTensor("a.weight", [32, 2], GgmlType.F32, s => GgmlEncoding.Write(s, new float[64], GgmlType.F32))
            .AddTensor("b.weight", [64], GgmlType.Q8_0, s => GgmlEncoding.Write(s, new float[64], GgmlType.Q8_0))
            .AddTensor("c.weight", [8], GgmlType.F16, s => GgmlEncoding.Write(s, new float[8], GgmlType.F16))
            .Write(stream);
        return stream.ToArray();
    }

    /// <summary>Hyper-parameters of the tiny model, and ones llama.cpp reads when they are present.</summary>
    private static readonly string[] Keys =
    [
        "llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.key_length", "llama.attention.value_length",
        "llama.rope.dimension_count", "llama.rope.freq_base", "llama.rope.scaling.factor", "llama.rope.scaling.type",
        "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "llama.expert_count", "llama.expert_used_count",
        "llama.nextn_predict_layers", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "general.file_type",
    ];

    /// <summary>0, -1, 2^31, 2^63, NaN and friends, each in the GGUF type of its CLR type; arrays are per-layer values.</summary>
    private static readonly object[] Values =
    [
        0u, 1u, 3u, 6u, 1u << 31, uint.MaxValue, -1, int.MinValue, 1UL << 63, ulong.MaxValue, -1L,
        float.NaN, float.PositiveInfinity, -1f, 0f, 1e30f, double.NaN, "yarn", "x", true,
        new[] { 4, 4 }, new[] { 3, 3 }, new[] { 0, 4 }, new[] { 4 },
    ];

    private static readonly ulong[] Dimensions = [0, 1, 63, 1UL << 31, 1UL << 63, ulong.MaxValue];

    private static readonly (string Name, int Dimensions)[] DimensionTensors =
        [("token_embd.weight", 2), ("blk.0.attn_k.weight", 2), ("blk.1.ffn_down.weight", 2), ("output_norm.weight", 1)];

    private static IEnumerable<(string Name, Action<GgufWriter> Spoil, Func<byte[], byte[]> Patch)> Mutations()
    {
        static byte[] Same(byte[] b) => b;
        foreach (var key in Keys)
        {
            foreach (var value in Values)
            {
                yield return ($"{key} = {Show(value)}", w =>
                {
                    if (value is int[] array)
                    {
                        w.Remove(key).Add(key, array);
                    }
                    else
                    {
                        HostileModels.Set(key, value)(w);
                    }
                }, Same);
            }
        }

        foreach (var (tensor, dimensions) in DimensionTensors)
        {
            for (var dimension = 0; dimension < dimensions; dimension++)
            {
                foreach (var value in Dimensions)
                {
                    yield return ($"{tensor} ne[{dimension}] = {value}", _ => { }, bytes => SetDimension(bytes, tensor, dimension, value));
                }
            }
        }

        foreach (var array in new[] { "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type" })
        {
            foreach (var change in new[] { -1, 1, -HostileModels.Vocabulary.Count })
            {
                yield return ($"{array} length {change:+0;-0}", w => Resize(w, array, change), Same);
            }
        }
    }

    [Fact]
    public async Task HostileMetadataValuesAreServedOrRefusedWithATypedErrorNeverACrash()
    {
        TestRuntime.Ensure();
        var path = GgufReaderTests.TempPath("metadata-fuzz.gguf");
        var outcomes = new List<string>();
        foreach (var (name, spoil, patch) in Mutations())
        {
            var writer = HostileModels.Writer();
            spoil(writer);
            using (var buffer = new MemoryStream())
            {
                writer.Write(buffer);
                File.WriteAllBytes(path, patch(buffer.ToArray()));
            }

            // Checked in this process: a case that made llama.cpp abort would end the test run.
            using var engine = new InferenceEngine(
                new EngineOptions
                {
                    Models = [new ModelSource("fuzz", path)],
                    Scheduler = new() { Slots = 1, ContextPerSlot = 64, BatchSize = 16, Threads = 1, QueueCapacity = 1 },
                },
                NullLoggerFactory.Instance);
            try
            {
                var session = await engine.StartAsync(new GenerationRequest { Model = "fuzz", Prompt = "a€🙂", MaxTokens = 1, Sampling = new SamplingParameters { Temperature = 0 } }, default);
                await foreach (var _ in session.ReadAllAsync())
                {
                }

                outcomes.Add("served");
            }
            catch (InferenceException e) when (e is ModelUnavailableException or ContextLengthExceededException)
            {
                Assert.DoesNotContain(Path.GetDirectoryName(path)!, e.Message, StringComparison.Ordinal);
                outcomes.Add(e.GetType().Name);
            }
            catch (Exception e)
            {
                Assert.Fail($"{name}: {e}");
            }
        }

        // Not vacuous: some mutations are harmless (a large context length, an unused key), most are refused.
        Assert.Contains("served", outcomes);
        Assert.Contains(nameof(ModelUnavailableException), outcomes);
    }

    private static string Show(object value) => value switch
    {
        int[] a => $"[{string.Join(", ", a)}]",
        string s => $"\"{s}\"",
        _ => $"{value} ({value.GetType().Name})",
    };

    private static void Resize(GgufWriter writer, string key, int change)
    {
        var vocabulary = HostileModels.Vocabulary;
        var count = Math.Max(0, vocabulary.Count + change);
        writer.Remove(key);
        _ = key switch
        {
            "tokenizer.ggml.tokens" => writer.Add(key, vocabulary.Tokens.Concat(["▁extra"]).Take(count).ToList()),
            "tokenizer.ggml.scores" => writer.Add(key, vocabulary.Scores.Concat([0f]).Take(count).ToList()),
            _ => writer.Add(key, vocabulary.TokenTypes.Concat([1]).Take(count).ToList()),
        };
    }

    /// <summary>Overwrites one dimension of a tensor's header (the name, its dimension count, then ne[0..]).</summary>
    private static byte[] SetDimension(byte[] file, string tensor, int dimension, ulong value)
    {
        var name = Encoding.UTF8.GetBytes(tensor);
        var record = new byte[8 + name.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(record, (ulong)name.Length);
        name.CopyTo(record, 8);
        var at = file.AsSpan().IndexOf(record);
        Assert.True(at >= 0, $"tensor {tensor} not found");
        var copy = (byte[])file.Clone();
        Assert.True(dimension < BinaryPrimitives.ReadUInt32LittleEndian(copy.AsSpan(at + record.Length)));
        BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(at + record.Length + 4 + 8 * dimension), value);
        return copy;
    }
}
