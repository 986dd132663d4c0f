using System.Buffers.Binary;
using System.Runtime.InteropServices;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Models;

/// <summary>A target of <see cref="ModelQuantizer"/>: its name (as llama-quantize spells it), llama_ftype and the tensor type most weights get.</summary>
public sealed record QuantizationType(string Name, int FileType, GgmlType Main, string Description);

/// <summary>A model quantization that cannot be done or failed; the message says what to change.</summary>
public sealed class QuantizationException(string message) : InferenceException(message);

/// <summary>What to quantize, and how.</summary>
public sealed record QuantizeRequest(string Input, string Output, QuantizationType Type)
{
    /// <summary>Threads for quantizing; 0: every core.</summary>
    public int Threads { get; init; }

    /// <summary>An importance matrix (llama-imatrix's GGUF or legacy .dat file), or null.</summary>
    public string? Imatrix { get; init; }

    /// <summary>Replace an existing output file.</summary>
    public bool Force { get; init; }
}

/// <summary>Bytes written to the output so far against the estimate of its size.</summary>
public readonly record struct QuantizeProgress(long Written, long Estimate);

/// <summary>
/// Quantizes a GGUF model with llama.cpp's <c>llama_model_quantize</c>: checks first (the input is a GGUF model, the
/// output does not exist unless forced, the disk has room for the estimated size), writes to a temporary file beside
/// the output, validates that with the GGUF reader (every tensor there, the requested file type) and only then moves
/// it into place. llama.cpp has no progress callback: the temporary file's size is polled instead.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>Every type this release quantizes to, by llama-quantize's names (tools/quantize/quantize.cpp).</summary>
    public static IReadOnlyList<QuantizationType> Types { get; } =
    [
        new("Q4_0", 2, GgmlType.Q4_0, "4.5 bpw, the fastest 4-bit on ARM and x86 (weights repacked at load)"),
        new("Q4_1", 3, GgmlType.Q4_1, "5.0 bpw"),
        new("Q5_0", 8, GgmlType.Q5_0, "5.5 bpw"),
        new("Q5_1", 9, GgmlType.Q5_1, "6.0 bpw"),
        new("Q8_0", 7, GgmlType.Q8_0, "8.5 bpw, close to F16"),
        new("Q2_K", 10, GgmlType.Q2_K, "2.6 bpw mix"),
        new("Q2_K_S", 21, GgmlType.Q2_K, "2.6 bpw, needs an importance matrix"),
        new("Q3_K_S", 11, GgmlType.Q3_K, "3.4 bpw"),
        new("Q3_K_M", 12, GgmlType.Q3_K, "3.7 bpw mix"),
        new("Q3_K_L", 13, GgmlType.Q3_K, "4.0 bpw mix"),
        new("Q4_K_S", 14, GgmlType.Q4_K, "4.5 bpw"),
        new("Q4_K_M", 15, GgmlType.Q4_K, "4.8 bpw mix, the usual choice"),
        new("Q5_K_S", 16, GgmlType.Q5_K, "5.5 bpw"),
        new("Q5_K_M", 17, GgmlType.Q5_K, "5.7 bpw mix"),
        new("Q6_K", 18, GgmlType.Q6_K, "6.6 bpw"),
        new("IQ1_S", 24, GgmlType.IQ1_S, "1.56 bpw, needs an importance matrix"),
        new("IQ1_M", 31, GgmlType.IQ1_M, "1.75 bpw, needs an importance matrix"),
        new("IQ2_XXS", 19, GgmlType.IQ2_XXS, "2.06 bpw, needs an importance matrix"),
        new("IQ2_XS", 20, GgmlType.IQ2_XS, "2.31 bpw, needs an importance matrix"),
        new("IQ2_S", 28, GgmlType.IQ2_S, "2.5 bpw, needs an importance matrix"),
        new("IQ2_M", 29, GgmlType.IQ2_S, "2.7 bpw, needs an importance matrix"),
        new("IQ3_XXS", 23, GgmlType.IQ3_XXS, "3.06 bpw, needs an importance matrix"),
        new("IQ3_XS", 22, GgmlType.IQ3_S, "3.3 bpw"),
        new("IQ3_S", 26, GgmlType.IQ3_S, "3.44 bpw"),
        new("IQ3_M", 27, GgmlType.IQ3_S, "3.66 bpw mix"),
        new("IQ4_NL", 25, GgmlType.IQ4_NL, "4.5 bpw non-linear"),
        new("IQ4_XS", 30, GgmlType.IQ4_XS, "4.25 bpw non-linear"),
        new("TQ1_0", 36, GgmlType.TQ1_0, "1.69 bpw ternary (for ternary models only)"),
        new("TQ2_0", 37, GgmlType.TQ2_0, "2.06 bpw ternary (for ternary models only)"),
        new("MXFP4_MOE", 38, GgmlType.MXFP4, "MXFP4 experts of a mixture-of-experts model"),
        new("Q1_0", 40, GgmlType.Q1_0, "1.125 bpw"),
        new("Q2_0", 41, GgmlType.Q2_0, "2.25 bpw"),
        new("F16", 1, GgmlType.F16, "16 bpw"),
        new("BF16", 32, GgmlType.BF16, "16 bpw, bfloat16"),
        new("F32", 0, GgmlType.F32, "32 bpw, no quantization"),
    ];

    /// <summary>The type named <paramref name="name"/> (any case; llama-quantize's aliases Q3_K, Q4_K and Q5_K are the _M mixes).</summary>
    public static QuantizationType Find(string name)
    {
        var wanted = name.Trim().ToUpperInvariant() switch
        {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            var n => n,
        };
        return Types.FirstOrDefault(t => t.Name == wanted)
            ?? throw new QuantizationException($"'{name}' is not a quantization type; use one of {string.Join(", ", Types.Select(t => t.Name))}.");
    }

    /// <summary>Free bytes the output's disk must have besides the estimate: llama.cpp's metadata and the file system's slack.</summary>
    private const long SpaceMargin = 16 << 20;

    /// <summary>
    /// The output's size, a little above what llama.cpp will write: each weight matrix in the main type (mixes
    /// raise some matrices a step, hence 15% more), the output matrix at least Q6_K, vectors kept F32, and the
    /// input's metadata.
    /// </summary>
    public static long EstimateSize(GgufFile input, QuantizationType type)
    {
        double bytes = input.DataOffset;
        foreach (var tensor in input.Tensors)
        {
            var elements = (double)tensor.ElementCount;
            if (tensor.Dimensions.Count < 2)
            {
                bytes += elements * 4;
                continue;
            }

            var main = BytesPerElement(type.Main);
            if (tensor.Name is "output.weight" or "token_embd.weight")
            {
                main = Math.Max(main, BytesPerElement(GgmlType.Q6_K));
            }

            bytes += elements * main * (type.Main is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 ? 1 : 1.15);
        }

        return (long)Math.Ceiling(bytes);
    }

    private static double BytesPerElement(GgmlType type) => GgmlTypeInfo.Geometry(type) is { } g ? (double)g.TypeSize / g.BlockSize : 4;

    /// <summary>Refuses a disk with less room than the estimate, naming both.</summary>
    public static void CheckSpace(string output, long estimate, long available)
    {
        if (available < estimate + SpaceMargin)
        {
            throw new QuantizationException($"Not enough disk space for '{output}': about {Pool.Sizes.Describe(estimate + SpaceMargin)} is needed, {Pool.Sizes.Describe(available)} is free. Free space or write it to another disk.");
        }
    }

    /// <summary>
    /// Quantizes <paramref name="request"/>'s input to its output. Needs <see cref="LlamaRuntime.Initialize"/>
    /// first. <paramref name="progress"/> is called from a polling thread as the temporary file grows.
    /// </summary>
    public static async Task<GgufFile> QuantizeAsync(QuantizeRequest request, Action<QuantizeProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var input = Path.GetFullPath(request.Input);
        var output = Path.GetFullPath(request.Output);
        if (!File.Exists(input))
        {
            throw new QuantizationException($"The input model '{request.Input}' does not exist.");
        }

        if (string.Equals(input, output, StringComparison.Ordinal))
        {
            throw new QuantizationException($"The output '{request.Output}' is the input; give another file name.");
        }

        if (Directory.Exists(output))
        {
            throw new QuantizationException($"The output '{request.Output}' is a folder; give a file name such as model-{request.Type.Name}.gguf.");
        }

        if (File.Exists(output) && !request.Force)
        {
            throw new QuantizationException($"The output '{request.Output}' exists; remove it, choose another name, or add --force to replace it.");
        }

        var folder = Path.GetDirectoryName(output)!;
        if (!Directory.Exists(folder))
        {
            throw new QuantizationException($"The output's folder '{folder}' does not exist.");
        }

        var source = GgufReader.Read(input);
        GgufModelCheck.Validate(source);
        if (request.Threads < 0)
        {
            throw new QuantizationException($"--threads must be 0 (every core) or more, not {request.Threads}.");
        }

        var matrix = request.Imatrix is { } imatrixPath ? ImportanceMatrix.Read(imatrixPath) : null;
        var estimate = EstimateSize(source, request.Type);
        CheckSpace(request.Output, estimate, new DriveInfo(folder).AvailableFreeSpace);

        var temporary = Path.Combine(folder, $".{Path.GetFileName(output)}.{Environment.ProcessId}.partial");
        try
        {
            using var done = new CancellationTokenSource();
            var poll = progress is null ? Task.CompletedTask : PollAsync(temporary, estimate, progress, done.Token);
            uint result;
            string? reason;
            try
            {
                // A thread of its own: the call takes minutes, and llama.cpp logs its error on the calling thread.
                (result, reason) = await Task.Factory.StartNew(() => Run(input, temporary, request, matrix), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
            finally
            {
                await done.CancelAsync();
                await poll;
            }

            if (result != 0)
            {
                var free = new DriveInfo(folder).AvailableFreeSpace;
                throw free < SpaceMargin
                    ? new QuantizationException($"The disk of '{request.Output}' is full ({Pool.Sizes.Describe(free)} free); free space or write it to another disk.")
                    : new QuantizationException($"llama.cpp could not quantize '{Path.GetFileName(input)}' to {request.Type.Name}: {reason ?? "no reason given"}"
                        + (matrix is null && reason?.Contains("imatrix", StringComparison.Ordinal) == true ? "; give one with --imatrix FILE (made by llama-imatrix)." : "."));
            }

            var written = Validate(temporary, source, request.Type);
            progress?.Invoke(new QuantizeProgress(new FileInfo(temporary).Length, estimate));
            File.Move(temporary, output, overwrite: request.Force);
            return written;
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    private static unsafe (uint Result, string? Reason) Run(string input, string temporary, QuantizeRequest request, ImportanceMatrix? matrix)
    {
        var parameters = NativeMethods.llama_model_quantize_default_params();
        parameters.NThread = request.Threads;
        parameters.FType = request.Type.FileType;
        using var pinned = matrix?.Pin();
        parameters.Imatrix = pinned?.Entries ?? IntPtr.Zero;
        LlamaLog.TakeLastError();
        var result = NativeMethods.llama_model_quantize(input, temporary, &parameters);
        return (result, result == 0 ? null : Reason(LlamaLog.TakeLastError()));
    }

    /// <summary>llama.cpp's summary line ("llama_model_quantize: failed to quantize: WHY") without the banners logged before it.</summary>
    private static string? Reason(string? errors)
    {
        const string marker = "failed to quantize: ";
        var summary = errors?.Split("; ").LastOrDefault(l => l.Contains(marker, StringComparison.Ordinal));
        var reason = summary is null ? errors : summary[(summary.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..];
        return reason?.Trim().TrimEnd('.', '!');
    }

    /// <summary>The written file must read as GGUF, hold every tensor of the input and say the requested file type.</summary>
    private static GgufFile Validate(string temporary, GgufFile source, QuantizationType type)
    {
        GgufFile written;
        try
        {
            written = GgufReader.Read(temporary);
        }
        catch (GgufFormatException e)
        {
            throw new QuantizationException($"llama.cpp wrote a file that does not read back as GGUF ({e.Reason}); nothing was written.");
        }

        var missing = source.Tensors.Select(t => t.Name).Except(written.Tensors.Select(t => t.Name), StringComparer.Ordinal).ToList();
        if (missing.Count > 0)
        {
            throw new QuantizationException($"llama.cpp's output lacks {missing.Count} tensors of the input (e.g. {missing[0]}); nothing was written.");
        }

        if (written.FileType != type.FileType)
        {
            throw new QuantizationException($"llama.cpp's output says file type {written.FileType?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}, not {type.Name} ({type.FileType}); nothing was written.");
        }

        return written;
    }

    private static async Task PollAsync(string temporary, long estimate, Action<QuantizeProgress> progress, CancellationToken done)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        try
        {
            while (await timer.WaitForNextTickAsync(done))
            {
                if (File.Exists(temporary))
                {
                    progress(new QuantizeProgress(new FileInfo(temporary).Length, estimate));
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Quantizing ended.
        }
        catch (IOException)
        {
            // The file went away between the check and the size: ended.
        }
    }
}

/// <summary>
/// An importance matrix from llama-imatrix, as llama-quantize reads it: the GGUF format (tensors
/// <c>NAME.in_sum2</c> and <c>NAME.counts</c>, each sum divided by its expert's count) or the legacy .dat format
/// (sums already averaged over calls, times the number of calls).
/// </summary>
internal sealed class ImportanceMatrix
{
    private ImportanceMatrix(Dictionary<string, float[]> entries) => Entries = entries;

    public IReadOnlyDictionary<string, float[]> Entries { get; }

    public static ImportanceMatrix Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new QuantizationException($"The importance matrix '{path}' does not exist.");
        }

        try
        {
            using var stream = File.OpenRead(path);
            Span<byte> magic = stackalloc byte[4];
            stream.ReadExactly(magic);
            stream.Position = 0;
            var entries = BinaryPrimitives.ReadUInt32LittleEndian(magic) == GgufReader.Magic ? ReadGguf(path) : ReadLegacy(stream);
            if (entries.Count == 0)
            {
                throw new QuantizationException($"The importance matrix '{path}' holds no entries.");
            }

            if (entries.Values.Any(v => v.Any(f => !float.IsFinite(f))))
            {
                throw new QuantizationException($"The importance matrix '{path}' holds values that are not finite numbers; make it again.");
            }

            return new ImportanceMatrix(entries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or GgufFormatException or InvalidDataException)
        {
            throw new QuantizationException($"'{path}' is not an importance matrix of llama-imatrix: {e.Message}");
        }
    }

    private static Dictionary<string, float[]> ReadGguf(string path)
    {
        var file = GgufReader.Read(path);
        var byName = file.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var entries = new Dictionary<string, float[]>(StringComparer.Ordinal);
        using var stream = File.OpenRead(path);
        foreach (var sums in file.Tensors.Where(t => t.Name.EndsWith(".in_sum2", StringComparison.Ordinal)))
        {
            var name = sums.Name[..^".in_sum2".Length];
            if (!byName.TryGetValue(name + ".counts", out var counts) || sums.Type != GgmlType.F32 || counts.Type != GgmlType.F32)
            {
                throw new InvalidDataException($"{name} has no F32 sums and counts");
            }

            var values = Floats(stream, file.DataOffset + (long)sums.Offset, checked((int)sums.ElementCount));
            var perExpert = Floats(stream, file.DataOffset + (long)counts.Offset, checked((int)counts.ElementCount));
            var width = values.Length / Math.Max(1, perExpert.Length);
            for (var j = 0; j < perExpert.Length; j++)
            {
                var count = MathF.Round(perExpert[j]);
                for (var i = j * width; i < (j + 1) * width; i++)
                {
                    values[i] = count > 0 ? values[i] / count : 1;
                }
            }

            entries[name] = values;
        }

        return entries;
    }

    private static Dictionary<string, float[]> ReadLegacy(Stream stream)
    {
        using var reader = new BinaryReader(stream);
        var count = reader.ReadInt32();
        if (count < 1 || count > 1_000_000)
        {
            throw new InvalidDataException("it is neither GGUF nor a legacy .dat matrix");
        }

        var entries = new Dictionary<string, float[]>(StringComparer.Ordinal);
        for (var e = 0; e < count; e++)
        {
            var length = reader.ReadInt32();
            if (length < 1 || length > 4096)
            {
                throw new InvalidDataException($"entry {e + 1} has a name of {length} bytes");
            }

            var name = System.Text.Encoding.UTF8.GetString(reader.ReadBytes(length));
            var calls = reader.ReadInt32();
            var size = reader.ReadInt32();
            if (size < 1 || (long)size * 4 > stream.Length - stream.Position)
            {
                throw new InvalidDataException($"entry '{name}' declares {size} values");
            }

            var values = new float[size];
            reader.BaseStream.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
            if (calls > 0)
            {
                for (var i = 0; i < values.Length; i++)
                {
                    values[i] /= calls;
                }
            }

            entries[name] = values;
        }

        return entries;
    }

    private static float[] Floats(Stream stream, long offset, int count)
    {
        var values = new float[count];
        stream.Position = offset;
        stream.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>The entries as llama.cpp's array of llama_model_imatrix_data, ended by a null name, in native memory.</summary>
    public unsafe PinnedMatrix Pin()
    {
        var list = Entries.ToList();
        var array = (LlamaModelImatrixData*)NativeMemory.AllocZeroed((nuint)(list.Count + 1), (nuint)sizeof(LlamaModelImatrixData));
        var handles = new List<GCHandle>();
        var names = new List<IntPtr>();
        for (var i = 0; i < list.Count; i++)
        {
            var name = Marshal.StringToCoTaskMemUTF8(list[i].Key);
            names.Add(name);
            var handle = GCHandle.Alloc(list[i].Value, GCHandleType.Pinned);
            handles.Add(handle);
            array[i] = new LlamaModelImatrixData { Name = (byte*)name, Data = (float*)handle.AddrOfPinnedObject(), Size = (nuint)list[i].Value.Length };
        }

        return new PinnedMatrix((IntPtr)array, handles, names);
    }

    /// <summary>Native memory and pinned arrays for the duration of one llama_model_quantize call.</summary>
    public sealed class PinnedMatrix(IntPtr entries, List<GCHandle> handles, List<IntPtr> names) : IDisposable
    {
        public IntPtr Entries { get; } = entries;

        public unsafe void Dispose()
        {
            foreach (var handle in handles)
            {
                handle.Free();
            }

            foreach (var name in names)
            {
                Marshal.FreeCoTaskMem(name);
            }

            NativeMemory.Free((void*)Entries);
        }
    }
}
