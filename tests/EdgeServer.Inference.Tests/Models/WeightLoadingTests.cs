using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Tests.Gguf;
using EdgeServer.TestSupport;

namespace EdgeServer.Inference.Tests.Models;

/// <summary>
/// Which models are mapped and which read: a model whose weights llama.cpp repacks is read (mapped, it would be
/// resident twice), one with nothing to repack stays mapped. CPU features are given as llama.cpp reports them.
/// </summary>
public class WeightLoadingTests
{
    // What llama_print_system_info reports for the zen4 variant of the bundled x86 libraries, and for a Raspberry Pi 5.
    private static readonly IReadOnlySet<string> X86 = LlamaRuntimeInfo.ParseCpuFeatures(
        "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | LLAMAFILE = 1 | REPACK = 1 | ");

    private static readonly IReadOnlySet<string> Arm = LlamaRuntimeInfo.ParseCpuFeatures(
        "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | LLAMAFILE = 1 | REPACK = 1 | ");

    private static readonly Lazy<string> s_q4 = new(() => Write(GgmlType.Q4_0));
    private static readonly Lazy<string> s_q8 = new(() => Write(GgmlType.Q8_0));

    private static string Write(GgmlType type)
    {
        var path = GgufReaderTests.TempPath($"weights-{type}.gguf");
        LlamaModelBuilder.Write(path, SuccessorModel.Shape, SuccessorModel.Vocabulary, new RandomLlamaWeights(seed: 7, scale: 0.02f), type);
        return path;
    }

    [Fact]
    public void ByDefaultAQ4_0ModelIsReadOnX86AndArmAndAQ8_0ModelOnlyOnArm()
    {
        // Every matrix of a transformer block has rows divisible by 8 here; the output matrix's rows (the
        // vocabulary) are not, so it is not repacked. 2 blocks of 7 matrices.
        Assert.Equal(new WeightLoading(Mmap: false, Repack: true, RepackedTensors: 14), WeightLoading.Plan(s_q4.Value, MmapMode.Auto, repack: true, X86));
        Assert.Equal(new WeightLoading(Mmap: true, Repack: true, RepackedTensors: 0), WeightLoading.Plan(s_q8.Value, MmapMode.Auto, repack: true, X86));
        Assert.Equal(new WeightLoading(Mmap: false, Repack: true, RepackedTensors: 14), WeightLoading.Plan(s_q4.Value, MmapMode.Auto, repack: true, Arm));
        Assert.Equal(new WeightLoading(Mmap: false, Repack: true, RepackedTensors: 14), WeightLoading.Plan(s_q8.Value, MmapMode.Auto, repack: true, Arm));
    }

    [Fact]
    public void WithoutRepackingOrWithoutTheRepackBufferEveryModelIsMapped()
    {
        Assert.Equal(new WeightLoading(Mmap: true, Repack: false, RepackedTensors: 0), WeightLoading.Plan(s_q4.Value, MmapMode.Auto, repack: false, X86));
        var noRepackBuild = X86.Where(f => f != "REPACK").ToHashSet();
        Assert.True(WeightLoading.Plan(s_q4.Value, MmapMode.Auto, repack: true, noRepackBuild).Mmap);
    }

    [Fact]
    public void AnExplicitSettingIsFollowed()
    {
        Assert.True(WeightLoading.Plan(s_q4.Value, MmapMode.On, repack: true, X86).Mmap);
        Assert.False(WeightLoading.Plan(s_q8.Value, MmapMode.Off, repack: true, X86).Mmap);
        Assert.Equal(MmapMode.On, MmapMode.True);
        Assert.Equal(MmapMode.Off, MmapMode.False);
    }

    [Fact]
    public void CpuFeaturesAreReadFromTheCpuBackendOnly()
    {
        var features = LlamaRuntimeInfo.ParseCpuFeatures("CPU : NEON = 1 | SVE = 1 | SVE_CNT = 32 | MATMUL_INT8 = 1 | REPACK = 1 | OTHER : AVX2 = 1 | ");
        Assert.Equal(new HashSet<string> { "NEON", "SVE", "SVE_CNT=32", "MATMUL_INT8", "REPACK" }, features);
        Assert.Empty(LlamaRuntimeInfo.ParseCpuFeatures(""));
    }

    [Fact]
    public void TheEngineLoadsAsPlannedForThisCpu()
    {
        // llama.cpp maps a file it loads with mmap and keeps the mapping; read, the file is not in the process's maps.
        var runtime = TestRuntime.Ensure();
        foreach (var path in new[] { s_q4.Value, s_q8.Value })
        {
            var expected = WeightLoading.Plan(path, MmapMode.Auto, repack: true, runtime.CpuFeatures);
            using (var model = LlamaModel.Load(path))
            {
                Assert.Equal(expected, model.Loading);
                Assert.Equal(expected.Mmap, File.ReadAllText("/proc/self/maps").Contains(path, StringComparison.Ordinal));
                Assert.NotEmpty(model.Tokenize("abc", addSpecial: true, parseSpecial: false));
            }

            using (var forced = LlamaModel.Load(path, expected.Mmap ? MmapMode.Off : MmapMode.On))
            {
                Assert.Equal(!expected.Mmap, forced.Loading.Mmap);
                Assert.Equal(!expected.Mmap, File.ReadAllText("/proc/self/maps").Contains(path, StringComparison.Ordinal));
            }
        }
    }
}
