using EdgeServer.Inference.Gguf;

namespace EdgeServer.Inference.Models;

/// <summary>
/// The features of the loaded CPU backend that decide which weights it repacks into its CPU_REPACK buffer (an
/// interleaved copy for faster matrix products). ggml picks the backend variant that suits the processor, and
/// its feature list (<c>llama_print_system_info</c>) names what that variant was built for, which is what
/// ggml-cpu/repack.cpp tests; so reading the list is the same decision llama.cpp makes.
/// </summary>
public sealed record CpuRepackFeatures(IReadOnlySet<string> Features)
{
    /// <summary>A backend that repacks nothing.</summary>
    public static readonly CpuRepackFeatures None = new(new HashSet<string>());

    /// <summary>Whether the backend has extra (repacked) buffers at all, and they are used (llama_model_params.use_extra_bufts).</summary>
    public bool Repack { get; init; } = Features.Contains("REPACK") || Features.Contains("AMX_INT8") || Features.Contains("KLEIDIAI");

    /// <summary>Reads <c>llama_print_system_info</c>'s "CPU : AVX2 = 1 | ... | REPACK = 1 |" list.</summary>
    public static CpuRepackFeatures FromSystemInfo(string systemInfo) => new(Native.LlamaRuntimeInfo.ParseCpuFeatures(systemInfo));

    /// <summary>The features of the backend this process loaded; <see cref="None"/> before the runtime is initialised.</summary>
    public static CpuRepackFeatures Current =>
        Native.LlamaRuntime.Current is { } runtime ? new(runtime.CpuFeatures) : None;

    /// <summary>
    /// Whether a matrix-product weight of <paramref name="type"/> with <paramref name="rows"/> rows (ne[1]) is
    /// repacked: the rule the load plan follows (<see cref="WeightLoading"/>), so estimate and load agree.
    /// </summary>
    public bool Repacks(GgmlType type, ulong rows) => Repack && WeightLoading.Repacks(type, rows, Features);
}
