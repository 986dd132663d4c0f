using CsCheck;
using EdgeServer.Inference.Gguf;

namespace EdgeServer.Inference.Tests.Gguf;

/// <summary>
/// Property-based fuzzing of the GGUF reader over mutated valid files: whatever the bytes, it returns a file or
/// throws its own <see cref="GgufFormatException"/>; it never throws anything else, never hangs, and never
/// allocates more than a small multiple of the file's size.
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
}
