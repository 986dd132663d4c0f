using System.Buffers.Binary;
using System.Text;

namespace EdgeServer.Inference.Gguf;

/// <summary>
/// Writes GGUF v3 files: metadata, then tensor headers, then aligned tensor data. Tensor data is produced by a
/// callback when the file is written, so multi-gigabyte models stream to disk without being held in memory.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<PendingTensor> _tensors = [];

    public uint Alignment { get; init; } = GgufReader.DefaultAlignment;

    public GgufWriter Add(string key, string value) => AddRaw(key, GgufValueType.String, w => WriteString(w, value));

    public GgufWriter Add(string key, uint value) => AddRaw(key, GgufValueType.UInt32, w => w.Write(value));

    public GgufWriter Add(string key, int value) => AddRaw(key, GgufValueType.Int32, w => w.Write(value));

    public GgufWriter Add(string key, float value) => AddRaw(key, GgufValueType.Float32, w => w.Write(value));

    public GgufWriter Add(string key, ulong value) => AddRaw(key, GgufValueType.UInt64, w => w.Write(value));

    public GgufWriter Add(string key, long value) => AddRaw(key, GgufValueType.Int64, w => w.Write(value));

    public GgufWriter Add(string key, double value) => AddRaw(key, GgufValueType.Float64, w => w.Write(value));

    public GgufWriter Add(string key, bool value) => AddRaw(key, GgufValueType.Bool, w => w.Write(value));

    public GgufWriter Add(string key, IReadOnlyList<string> values) => AddRaw(key, GgufValueType.Array, w =>
    {
        w.Write((uint)GgufValueType.String);
        w.Write((ulong)values.Count);
        foreach (var v in values)
        {
            WriteString(w, v);
        }
    });

    public GgufWriter Add(string key, IReadOnlyList<float> values) => AddRaw(key, GgufValueType.Array, w =>
    {
        w.Write((uint)GgufValueType.Float32);
        w.Write((ulong)values.Count);
        foreach (var v in values)
        {
            w.Write(v);
        }
    });

    public GgufWriter Add(string key, IReadOnlyList<int> values) => AddRaw(key, GgufValueType.Array, w =>
    {
        w.Write((uint)GgufValueType.Int32);
        w.Write((ulong)values.Count);
        foreach (var v in values)
        {
            w.Write(v);
        }
    });

    /// <summary>Drops a metadata entry (if present), so another value or type can be added under its key.</summary>
    public GgufWriter Remove(string key)
    {
        _metadata.RemoveAll(m => m.Key == key);
        return this;
    }

    /// <summary>
    /// Adds a tensor. <paramref name="dimensions"/> are ggml's ne[] (ne0 = row length first).
    /// <paramref name="writeRows"/> receives a stream positioned at the tensor and must write exactly its byte size.
    /// </summary>
    public GgufWriter AddTensor(string name, ulong[] dimensions, GgmlType type, Action<Stream> writeRows)
    {
        var (blockSize, typeSize) = GgmlTypeInfo.Geometry(type) ?? throw new ArgumentException($"Unknown tensor type {type}.", nameof(type));
        if (dimensions.Length is 0 or > 4 || dimensions[0] % (ulong)blockSize != 0)
        {
            throw new ArgumentException($"Tensor '{name}': dimensions [{string.Join(", ", dimensions)}] do not suit type {type}.", nameof(dimensions));
        }

        var elements = dimensions.Aggregate(1UL, (a, d) => a * d);
        var bytes = elements / (ulong)blockSize * (ulong)typeSize;
        _tensors.Add(new PendingTensor(name, dimensions, type, bytes, writeRows));
        return this;
    }

    public void Write(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);
        Write(stream);
    }

    public void Write(Stream stream)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufReader.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        var alignmentEntry = Alignment != GgufReader.DefaultAlignment ? 1 : 0;
        w.Write((ulong)(_metadata.Count + alignmentEntry));
        if (alignmentEntry == 1)
        {
            WriteString(w, "general.alignment");
            w.Write((uint)GgufValueType.UInt32);
            w.Write(Alignment);
        }

        foreach (var (key, type, write) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            write(w);
        }

        ulong offset = 0;
        var offsets = new ulong[_tensors.Count];
        for (var i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            offsets[i] = offset;
            WriteString(w, t.Name);
            w.Write((uint)t.Dimensions.Length);
            foreach (var d in t.Dimensions)
            {
                w.Write(d);
            }

            w.Write((uint)t.Type);
            w.Write(offset);
            offset = (ulong)GgufReader.AlignUp((long)(offset + t.ByteSize), Alignment);
        }

        w.Flush();
        Pad(stream, Alignment);
        var dataStart = stream.Position;
        for (var i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            Pad(stream, dataStart + (long)offsets[i]);
            var before = stream.Position;
            t.WriteRows(stream);
            if (stream.Position - before != (long)t.ByteSize)
            {
                throw new InvalidOperationException($"Tensor '{t.Name}' wrote {stream.Position - before} bytes; {t.ByteSize} were expected.");
            }
        }

        Pad(stream, Alignment);
    }

    private GgufWriter AddRaw(string key, GgufValueType type, Action<BinaryWriter> write)
    {
        if (_metadata.Any(m => m.Key == key))
        {
            throw new ArgumentException($"Metadata key '{key}' was added twice.", nameof(key));
        }

        _metadata.Add((key, type, write));
        return this;
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void Pad(Stream stream, uint alignment) => Pad(stream, GgufReader.AlignUp(stream.Position, alignment));

    private static void Pad(Stream stream, long target)
    {
        Span<byte> zeros = stackalloc byte[64];
        zeros.Clear();
        while (stream.Position < target)
        {
            var n = (int)Math.Min(zeros.Length, target - stream.Position);
            stream.Write(zeros[..n]);
        }
    }

    private sealed record PendingTensor(string Name, ulong[] Dimensions, GgmlType Type, ulong ByteSize, Action<Stream> WriteRows);
}

/// <summary>Encodes float rows into ggml tensor formats.</summary>
public static class GgmlEncoding
{
    /// <summary>Writes <paramref name="values"/> as <paramref name="type"/> (F32, F16, Q8_0 or Q4_0).</summary>
    public static void Write(Stream stream, ReadOnlySpan<float> values, GgmlType type)
    {
        switch (type)
        {
            case GgmlType.F32:
            {
                var buffer = new byte[values.Length * 4];
                for (var i = 0; i < values.Length; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * 4), values[i]);
                }

                stream.Write(buffer);
                break;
            }

            case GgmlType.F16:
            {
                var buffer = new byte[values.Length * 2];
                for (var i = 0; i < values.Length; i++)
                {
                    BinaryPrimitives.WriteHalfLittleEndian(buffer.AsSpan(i * 2), (Half)values[i]);
                }

                stream.Write(buffer);
                break;
            }

            case GgmlType.Q8_0:
                WriteBlocks(stream, values, type, 34, QuantizeQ8_0);
                break;

            case GgmlType.Q4_0:
                WriteBlocks(stream, values, type, 18, QuantizeQ4_0);
                break;

            default:
                throw new NotSupportedException($"Encoding {type} is not implemented; use F32, F16, Q8_0 or Q4_0 (or quantize with llama.cpp).");
        }
    }

    /// <summary>Writes one quantized block: its fp16 scale, then its quants.</summary>
    private delegate void BlockQuantizer(ReadOnlySpan<float> block, Span<byte> output);

    /// <summary>Quantizes <paramref name="values"/> in ggml's blocks of 32, each <paramref name="blockBytes"/> long.</summary>
    private static void WriteBlocks(Stream stream, ReadOnlySpan<float> values, GgmlType type, int blockBytes, BlockQuantizer quantize)
    {
        const int qk = 32;
        if (values.Length % qk != 0)
        {
            throw new ArgumentException($"{type} needs a multiple of 32 values.", nameof(values));
        }

        var buffer = new byte[values.Length / qk * blockBytes];
        for (var b = 0; b < values.Length / qk; b++)
        {
            quantize(values.Slice(b * qk, qk), buffer.AsSpan(b * blockBytes, blockBytes));
        }

        stream.Write(buffer);
    }

    /// <summary>block_q8_0: fp16 scale d, then 32 int8 quants; x = d * q.</summary>
    private static void QuantizeQ8_0(ReadOnlySpan<float> block, Span<byte> output)
    {
        var amax = 0f;
        foreach (var v in block)
        {
            amax = Math.Max(amax, Math.Abs(v));
        }

        var d = amax / 127f;
        var id = d != 0 ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(output, (Half)d);
        for (var j = 0; j < block.Length; j++)
        {
            output[2 + j] = unchecked((byte)(sbyte)Math.Round(block[j] * id));
        }
    }

    /// <summary>
    /// block_q4_0 (ggml's quantize_row_q4_0_ref): fp16 scale d = max / -8 of the value with the largest magnitude;
    /// 16 bytes of 4-bit quants, element j in the low nibble and j + 16 in the high one.
    /// </summary>
    private static void QuantizeQ4_0(ReadOnlySpan<float> block, Span<byte> output)
    {
        float amax = 0, max = 0;
        foreach (var v in block)
        {
            if (Math.Abs(v) > amax)
            {
                amax = Math.Abs(v);
                max = v;
            }
        }

        var d = max / -8f;
        var id = d != 0 ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(output, (Half)d);
        for (var j = 0; j < block.Length / 2; j++)
        {
            var q0 = Math.Min(15, (int)(sbyte)(block[j] * id + 8.5f));
            var q1 = Math.Min(15, (int)(sbyte)(block[j + 16] * id + 8.5f));
            output[2 + j] = (byte)(q0 | (q1 << 4));
        }
    }
}
