using System.Globalization;
using EdgeServer.Inference.Gguf;

namespace EdgeServer.Inference.Models;

/// <summary>
/// The features of the loaded CPU backend that decide which weights it repacks into its CPU_REPACK buffer (an
/// interleaved copy for faster matrix products). ggml picks the backend variant that suits the processor, and
/// its feature list (<c>llama_print_system_info</c>) names what that variant was built for, which is what
/// ggml-cpu/repack.cpp tests; so reading the list is the same decision llama.cpp makes.
/// </summary>
public sealed record CpuRepackFeatures(
    bool Repack, bool Avx2, bool Avx512, bool Neon, bool DotProd, bool MatMulInt8, bool Sve, int SveBytes, bool AmxInt8)
{
    /// <summary>A backend that repacks nothing (built without GGML_CPU_REPACK).</summary>
    public static readonly CpuRepackFeatures None = new(false, false, false, false, false, false, false, 0, false);

    /// <summary>Reads <c>llama_print_system_info</c>'s "CPU : AVX2 = 1 | ... | REPACK = 1 |" list.</summary>
    public static CpuRepackFeatures FromSystemInfo(string systemInfo)
    {
        var features = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in systemInfo.Split('|'))
        {
            var pair = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (pair.Length == 2)
            {
                // "CPU : SSE3 = 1": the first pair carries the backend's name.
                var name = pair[0][(pair[0].LastIndexOf(':') + 1)..].Trim();
                features[name] = pair[1];
            }
        }

        bool Has(string name) => features.TryGetValue(name, out var v) && v == "1";
        var sveBytes = features.TryGetValue("SVE_CNT", out var cnt) && int.TryParse(cnt, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        return new CpuRepackFeatures(Has("REPACK"), Has("AVX2"), Has("AVX512"), Has("NEON"), Has("DOTPROD"), Has("MATMUL_INT8"), Has("SVE"), sveBytes, Has("AMX_INT8"));
    }

    /// <summary>The features of the backend this process loaded; <see cref="None"/> before the runtime is initialised.</summary>
    public static CpuRepackFeatures Current =>
        Native.LlamaRuntime.Current is { } runtime ? FromSystemInfo(runtime.SystemInfo) : None;

    /// <summary>
    /// Whether a matrix-product weight of <paramref name="type"/> with <paramref name="rows"/> rows (ne[1]) is
    /// repacked: ggml_repack_get_optimal_repack_type in this release, for x86 and ARM (s390x and RISC-V omitted).
    /// </summary>
    public bool Repacks(GgmlType type, ulong rows)
    {
        if (!Repack)
        {
            return false;
        }

        var arm = Neon && (MatMulInt8 || DotProd) && rows % 4 == 0;
        return type switch
        {
            GgmlType.Q4_0 => ((Avx2 || (Sve && MatMulInt8 && SveBytes == 32)) && rows % 8 == 0) || arm,
            GgmlType.Q4_K => (Avx2 || (Neon && (MatMulInt8 || DotProd))) && rows % 8 == 0,
            GgmlType.Q5_K or GgmlType.Q6_K => Neon && (MatMulInt8 || DotProd) && rows % 8 == 0,
            GgmlType.Q2_K => Avx512 && rows % 8 == 0,
            GgmlType.IQ4_NL or GgmlType.MXFP4 => (Avx2 && rows % 8 == 0) || (Neon && DotProd && rows % 4 == 0),
            GgmlType.Q8_0 or GgmlType.Q1_0 => arm,
            _ => false,
        };
    }
}
