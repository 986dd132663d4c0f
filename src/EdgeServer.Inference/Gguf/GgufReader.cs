using System.Buffers.Binary;
using System.Text;

namespace EdgeServer.Inference.Gguf;

/// <summary>
/// Reads and validates a GGUF file's header before llama.cpp sees it: magic, version, counts, every string and
/// array length, tensor dimensions, types, alignment, and that every tensor's bytes lie inside the file.
/// Any defect, and any failure to read, is a <see cref="GgufFormatException"/> naming the file and the reason;
/// nothing is allocated beyond what the file's own size allows, however large the counts it declares.
/// </summary>
public static class GgufReader
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint DefaultAlignment = 32;
    private const int MaxDimensions = 4; // GGML_MAX_DIMS
    private const int MaxKeyLength = 65_536;

    /// <summary>Longer string values are skipped (kept as <see cref="GgufLongString"/>); chat templates are far shorter.</summary>
    public const int MaxKeptStringLength = 1 << 20;

    /// <summary>Numeric arrays up to this length keep their elements: per-layer and per-expert values.</summary>
    public const int MaxKeptArrayLength = 1024;

    // Collections are sized by what the file declares only up to these; a larger declared count grows them as
    // entries are actually read (2^31 declared entries must not size a dictionary).
    private const int MaxInitialMetadata = 1024;
    private const int MaxInitialTensors = 4096;

    public static GgufFile Read(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GgufFormatException(path, $"it cannot be opened ({e.Message})");
        }

        using (stream)
        {
            try
            {
                return Read(stream, path);
            }
            catch (IOException e)
            {
                throw new GgufFormatException(path, $"it could not be read ({e.Message})");
            }
        }
    }

    public static GgufFile Read(Stream stream, string path)
    {
        var r = new Cursor(stream, path);
        if (r.Length < 24)
        {
            throw r.Fail($"the file is {r.Length} bytes long, shorter than a GGUF header (24 bytes)");
        }

        var magic = r.U32();
        if (magic != Magic)
        {
            throw r.Fail($"it does not start with the GGUF magic (found 0x{magic:X8}); it is not a GGUF file");
        }

        var version = r.U32();
        if (version is not (2 or 3))
        {
            throw r.Fail($"GGUF version {version} is not supported (2 and 3 are)");
        }

        var tensorCount = r.U64();
        var kvCount = r.U64();
        // Each metadata pair needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor at least 8 + 4 + 4*... bytes.
        if (kvCount > (ulong)(r.Remaining / 13))
        {
            throw r.Fail($"it declares {kvCount} metadata entries, more than its {r.Length} bytes can hold");
        }

        if (tensorCount > (ulong)(r.Remaining / 24))
        {
            throw r.Fail($"it declares {tensorCount} tensors, more than its {r.Length} bytes can hold");
        }

        var metadata = new Dictionary<string, object>((int)Math.Min(kvCount, MaxInitialMetadata), StringComparer.Ordinal);
        for (ulong i = 0; i < kvCount; i++)
        {
            var key = r.String("metadata key", MaxKeyLength);
            if (key.Length == 0)
            {
                throw r.Fail($"metadata entry {i} has an empty key");
            }

            var type = (GgufValueType)r.U32();
            var value = ReadValue(r, type, key);
            if (!metadata.TryAdd(key, value))
            {
                throw r.Fail($"metadata key '{key}' appears twice");
            }
        }

        uint alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out var alignValue))
        {
            if (alignValue is not uint a || a == 0 || (a & (a - 1)) != 0)
            {
                throw r.Fail($"general.alignment must be a power-of-two uint32, found {alignValue}");
            }

            alignment = a;
        }

        var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, MaxInitialTensors));
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            var name = r.String("tensor name", MaxKeyLength);
            if (!names.Add(name))
            {
                throw r.Fail($"tensor '{name}' appears twice");
            }

            var nDims = r.U32();
            if (nDims is 0 or > MaxDimensions)
            {
                throw r.Fail($"tensor '{name}' has {nDims} dimensions (1 to {MaxDimensions} are allowed)");
            }

            var dims = new ulong[nDims];
            ulong elements = 1;
            for (var d = 0; d < nDims; d++)
            {
                dims[d] = r.U64();
                if (dims[d] == 0 || dims[d] > long.MaxValue || (elements = CheckedMultiply(elements, dims[d])) == 0)
                {
                    throw r.Fail($"tensor '{name}' has an invalid dimension {dims[d]} or too many elements");
                }
            }

            var rawType = r.U32();
            var type = (GgmlType)rawType;
            if (GgmlTypeInfo.Geometry(type) is not { } geometry)
            {
                throw r.Fail($"tensor '{name}' has unknown type {rawType}");
            }

            if (dims[0] % (ulong)geometry.BlockSize != 0)
            {
                throw r.Fail($"tensor '{name}' of type {type} has a row of {dims[0]} elements, not a multiple of its block size {geometry.BlockSize}");
            }

            var offset = r.U64();
            if (offset % alignment != 0)
            {
                throw r.Fail($"tensor '{name}' starts at data offset {offset}, not aligned to {alignment}");
            }

            var rows = elements / dims[0];
            var rowBytes = dims[0] / (ulong)geometry.BlockSize * (ulong)geometry.TypeSize;
            var size = CheckedMultiply(rowBytes, rows);
            if (size == 0)
            {
                throw r.Fail($"tensor '{name}' is too large");
            }

            tensors.Add(new GgufTensorInfo(name, dims, type, offset, size));
        }

        var dataOffset = AlignUp(r.Position, alignment);
        var dataLength = r.Length - dataOffset;
        foreach (var t in tensors)
        {
            if (dataLength < 0 || t.Offset > (ulong)dataLength || t.ByteSize > (ulong)dataLength - t.Offset)
            {
                throw r.Fail($"tensor '{t.Name}' ({t.ByteSize} bytes at data offset {t.Offset}) extends past the end of the file; the file is truncated");
            }
        }

        return new GgufFile(path, r.Length, version, alignment, dataOffset, metadata, tensors);
    }

    private static object ReadValue(Cursor r, GgufValueType type, string key)
    {
        switch (type)
        {
            case GgufValueType.UInt8: return r.Byte();
            case GgufValueType.Int8: return (sbyte)r.Byte();
            case GgufValueType.UInt16: return BinaryPrimitives.ReadUInt16LittleEndian(r.Bytes(2));
            case GgufValueType.Int16: return BinaryPrimitives.ReadInt16LittleEndian(r.Bytes(2));
            case GgufValueType.UInt32: return r.U32();
            case GgufValueType.Int32: return (int)r.U32();
            case GgufValueType.Float32: return BinaryPrimitives.ReadSingleLittleEndian(r.Bytes(4));
            case GgufValueType.UInt64: return r.U64();
            case GgufValueType.Int64: return (long)r.U64();
            case GgufValueType.Float64: return BinaryPrimitives.ReadDoubleLittleEndian(r.Bytes(8));
            case GgufValueType.Bool:
                var b = r.Byte();
                return b <= 1 ? b == 1 : throw r.Fail($"metadata '{key}' is a bool with value {b}");
            case GgufValueType.String:
                return r.StringOrLength($"value of '{key}'", MaxKeptStringLength);
            case GgufValueType.Array:
                var elementType = (GgufValueType)r.U32();
                var count = r.U64();
                if (elementType == GgufValueType.Array)
                {
                    throw r.Fail($"metadata '{key}' is an array of arrays, which GGUF does not allow");
                }

                if (elementType == GgufValueType.String)
                {
                    if (count > (ulong)(r.Remaining / 8))
                    {
                        throw r.Fail($"metadata '{key}' declares {count} strings, more than the rest of the file can hold");
                    }

                    for (ulong i = 0; i < count; i++)
                    {
                        r.SkipString($"element {i} of '{key}'");
                    }
                }
                else
                {
                    var size = ScalarSize(elementType) ?? throw r.Fail($"metadata '{key}' is an array of unknown type {(uint)elementType}");
                    if (count > (ulong)(r.Remaining / size))
                    {
                        throw r.Fail($"metadata '{key}' declares {count} elements, more than the rest of the file can hold");
                    }

                    if (count <= MaxKeptArrayLength)
                    {
                        var values = new object[count];
                        for (var i = 0; i < values.Length; i++)
                        {
                            values[i] = ReadValue(r, elementType, key);
                        }

                        return new GgufArray(elementType, count, values);
                    }

                    r.Skip((long)count * size);
                }

                return new GgufArray(elementType, count);
            default:
                throw r.Fail($"metadata '{key}' has unknown value type {(uint)type}");
        }
    }

    private static int? ScalarSize(GgufValueType type) => type switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => null,
    };

    internal static long AlignUp(long value, uint alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>a*b, or 0 on overflow (callers treat 0 as invalid).</summary>
    private static ulong CheckedMultiply(ulong a, ulong b)
    {
        var product = a * b;
        return a != 0 && product / a != b ? 0 : product;
    }

    /// <summary>Bounds-checked little-endian reads over a stream of known length.</summary>
    private sealed class Cursor(Stream stream, string path)
    {
        private readonly byte[] _scratch = new byte[8];

        public long Length { get; } = stream.Length;

        public long Position { get; private set; }

        public long Remaining => Length - Position;

        public GgufFormatException Fail(string reason) => new(path, reason);

        public ReadOnlySpan<byte> Bytes(int count)
        {
            Need(count, "a value");
            stream.ReadExactly(_scratch, 0, count);
            Position += count;
            return _scratch.AsSpan(0, count);
        }

        public byte Byte() => Bytes(1)[0];

        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4));

        public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8));

        public string String(string what, int maxLength, bool strict = true)
        {
            var length = StringLength(what);
            if (length > (ulong)maxLength)
            {
                throw Fail($"the {what} is {length} bytes long, more than the {maxLength} allowed");
            }

            return StringBody(what, (int)length, strict);
        }

        /// <summary>A string value up to <paramref name="keptLength"/> bytes (lenient UTF-8), else its length only.</summary>
        public object StringOrLength(string what, int keptLength)
        {
            var length = StringLength(what);
            if (length > (ulong)keptLength)
            {
                Skip((long)length);
                return new GgufLongString(length);
            }

            return StringBody(what, (int)length, strict: false);
        }

        public void SkipString(string what) => Skip((long)StringLength(what));

        private ulong StringLength(string what)
        {
            var length = U64();
            if (length > (ulong)Remaining)
            {
                throw Fail($"the {what} is {length} bytes long, past the end of the file (truncated or corrupt)");
            }

            return length;
        }

        private string StringBody(string what, int length, bool strict)
        {
            var buffer = new byte[length];
            stream.ReadExactly(buffer);
            Position += length;
            if (!strict)
            {
                return Encoding.UTF8.GetString(buffer);
            }

            try
            {
                return StrictUtf8.GetString(buffer);
            }
            catch (DecoderFallbackException)
            {
                throw Fail($"the {what} is not valid UTF-8");
            }
        }

        public void Skip(long count)
        {
            Need(count, "data");
            stream.Seek(count, SeekOrigin.Current);
            Position += count;
        }

        private void Need(long count, string what)
        {
            if (count > Remaining)
            {
                throw Fail($"it ends at byte {Length} while reading {what} at byte {Position}; the file is truncated");
            }
        }

        private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    }
}
