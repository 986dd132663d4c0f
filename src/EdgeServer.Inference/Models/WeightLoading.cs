using EdgeServer.Inference.Gguf;

namespace EdgeServer.Inference.Models;

/// <summary>
/// How llama.cpp is asked to bring a model's weights into memory: mapped or read, and whether the CPU backend may
/// repack them (<c>llama_model_params.use_extra_bufts</c>).
/// </summary>
/// <remarks>
/// Repacking copies a weight matrix into the CPU's interleaved layout (ggml-cpu repack.cpp) in anonymous memory.
/// With the file mapped, the pages those matrices were copied from stay mapped and resident as well: the loader
/// unmaps only the parts of the file before the first and after the last tensor it serves from the mapping, and
/// those (token embedding, norms) are spread over the whole file. So a mapped, repacked model is resident about
/// twice. Read instead of mapped, each weight is held once, with the same kernels. A model with nothing to repack
/// gains nothing from being read (the same bytes, anonymous instead of file-backed), and mapped its pages stay
/// shared with the page cache and can be dropped under pressure, so <see cref="MmapMode.Auto"/> maps it.
/// Measurements: docs/benchmarks.md, "Resident memory: mmap and repacking".
/// </remarks>
/// <param name="Mmap">Map the file (llama_load_mode MMAP) rather than read it (NONE).</param>
/// <param name="Repack">Let the CPU backend repack weights into its faster layout.</param>
/// <param name="RepackedTensors">Weight matrices this CPU's backend repacks, as far as the file and the features tell.</param>
public sealed record WeightLoading(bool Mmap, bool Repack, int RepackedTensors)
{
    /// <summary>The plan for a model file under the configured settings and the CPU backend's features.</summary>
    public static WeightLoading Plan(string path, MmapMode mmap, bool repack, IReadOnlySet<string> cpuFeatures) =>
        Plan(GgufReader.Read(path), mmap, repack, cpuFeatures);

    /// <summary>The plan for a file already read.</summary>
    public static WeightLoading Plan(GgufFile file, MmapMode mmap, bool repack, IReadOnlySet<string> cpuFeatures)
    {
        var repacked = repack ? CountRepacked(file, cpuFeatures) : 0;
        var mapped = mmap switch
        {
            MmapMode.On => true,
            MmapMode.Off => false,
            _ => repacked == 0,
        };
        return new WeightLoading(mapped, repack, repacked);
    }

    /// <summary>Weight matrices of the file that the CPU backend with these features puts in a repacked buffer.</summary>
    public static int CountRepacked(GgufFile file, IReadOnlySet<string> cpuFeatures) =>
        file.Tensors.Count(t => IsRepacked(t, cpuFeatures));

    /// <summary>
    /// Mirrors how llama.cpp 0.5.0 picks a buffer for a weight: the CPU backend's extra buffer types (AMX, KleidiAI,
    /// repack) take the matrices of a matrix product (not the token embedding, which is looked up by row) whose
    /// type and row count their kernels have (ggml_repack_get_optimal_repack_type, qtype_has_amx_kernels,
    /// KleidiAI's Q4_0/Q8_0). Features are the CPU backend's own (llama_print_system_info's "CPU :" part).
    /// </summary>
    internal static bool IsRepacked(GgufTensorInfo tensor, IReadOnlySet<string> f)
    {
        if (tensor.Dimensions.Count < 2 || tensor.Name.StartsWith("token_embd.", StringComparison.Ordinal))
        {
            return false;
        }

        return Repacks(tensor.Type, tensor.Dimensions[1], f);
    }

    /// <summary>Whether a matrix-product weight of <paramref name="type"/> with <paramref name="rows"/> rows goes to an extra (repacked) buffer.</summary>
    internal static bool Repacks(GgmlType type, ulong rows, IReadOnlySet<string> f)
    {
        if (f.Contains("AMX_INT8") && type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_XS)
        {
            return true;
        }

        if (f.Contains("KLEIDIAI") && type is GgmlType.Q4_0 or GgmlType.Q8_0)
        {
            return true;
        }

        if (!f.Contains("REPACK"))
        {
            return false;
        }

        var avx2 = f.Contains("AVX2");
        var i8mm = f.Contains("NEON") && f.Contains("MATMUL_INT8");
        var dotprod = f.Contains("NEON") && f.Contains("DOTPROD");
        var rvv256 = f.Contains("RISCV_V") && f.Contains("RVV_VLEN=256");
        return type switch
        {
            GgmlType.Q4_0 => ((avx2 || (f.Contains("SVE") && f.Contains("MATMUL_INT8") && f.Contains("SVE_CNT=32"))) && rows % 8 == 0)
                || ((i8mm || dotprod || f.Contains("VXE")) && rows % 4 == 0)
                || (rvv256 && rows % 16 == 0),
            GgmlType.Q4_K => ((avx2 || i8mm || dotprod) && rows % 8 == 0) || (rvv256 && rows % 16 == 0),
            GgmlType.Q2_K => (f.Contains("AVX512") && rows % 8 == 0) || (rvv256 && rows % 16 == 0),
            GgmlType.Q5_K or GgmlType.Q6_K => (i8mm || dotprod) && rows % 8 == 0,
            GgmlType.IQ4_NL => (avx2 && rows % 8 == 0) || (dotprod && rows % 4 == 0) || (rvv256 && rows % 16 == 0),
            GgmlType.MXFP4 => (avx2 && rows % 8 == 0) || (dotprod && rows % 4 == 0),
            GgmlType.Q8_0 => ((i8mm || dotprod) && rows % 4 == 0) || (rvv256 && rows % 16 == 0),
            GgmlType.Q1_0 => (i8mm || dotprod) && rows % 4 == 0,
            _ => false,
        };
    }
}
