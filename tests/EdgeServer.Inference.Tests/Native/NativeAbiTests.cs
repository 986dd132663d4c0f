using System.Runtime.InteropServices;
using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Tests.Native;

/// <summary>
/// The binding's structs must match llama.h of release v0.5.0 field by field (LP64: x86-64 and arm64 alike).
/// Values read back from the native *_default_params() through our structs show any drift as nonsense.
/// </summary>
public class NativeAbiTests
{
    [Fact]
    public void ModelParamsLayoutMatchesHeader()
    {
        Assert.Equal(80, Marshal.SizeOf<LlamaModelParams>());
        Assert.Equal(16, Offset<LlamaModelParams>(nameof(LlamaModelParams.NGpuLayers)));
        Assert.Equal(28, Offset<LlamaModelParams>(nameof(LlamaModelParams.LazyMode)));
        Assert.Equal(40, Offset<LlamaModelParams>(nameof(LlamaModelParams.TensorSplit)));
        Assert.Equal(64, Offset<LlamaModelParams>(nameof(LlamaModelParams.KvOverrides)));
        Assert.Equal(72, Offset<LlamaModelParams>(nameof(LlamaModelParams.VocabOnly)));
        Assert.Equal(77, Offset<LlamaModelParams>(nameof(LlamaModelParams.LoadMtp)));
    }

    [Fact]
    public void ContextParamsLayoutMatchesHeader()
    {
        Assert.Equal(160, Marshal.SizeOf<LlamaContextParams>());
        Assert.Equal(36, Offset<LlamaContextParams>(nameof(LlamaContextParams.CtxType)));
        Assert.Equal(56, Offset<LlamaContextParams>(nameof(LlamaContextParams.RopeFreqBase)));
        Assert.Equal(88, Offset<LlamaContextParams>(nameof(LlamaContextParams.CbEval)));
        Assert.Equal(104, Offset<LlamaContextParams>(nameof(LlamaContextParams.TypeK)));
        Assert.Equal(112, Offset<LlamaContextParams>(nameof(LlamaContextParams.AbortCallback)));
        Assert.Equal(128, Offset<LlamaContextParams>(nameof(LlamaContextParams.Embeddings)));
        Assert.Equal(133, Offset<LlamaContextParams>(nameof(LlamaContextParams.KvUnified)));
        Assert.Equal(136, Offset<LlamaContextParams>(nameof(LlamaContextParams.Samplers)));
        Assert.Equal(152, Offset<LlamaContextParams>(nameof(LlamaContextParams.CtxOther)));
    }

    [Fact]
    public void BatchMessageAndBiasLayoutsMatchHeader()
    {
        Assert.Equal(56, Marshal.SizeOf<LlamaBatch>());
        Assert.Equal(16, Marshal.SizeOf<LlamaChatMessage>());
        Assert.Equal(8, Marshal.SizeOf<LlamaLogitBias>());
    }

    [Fact]
    public void ModelDefaultParamsReadBackAsTheHeaderDefines()
    {
        TestRuntime.Ensure();
        var p = NativeMethods.llama_model_default_params();
        Assert.Equal(IntPtr.Zero, p.Devices);
        Assert.Equal(-1, p.NGpuLayers);
        Assert.Equal(1, p.SplitMode);        // LLAMA_SPLIT_MODE_LAYER
        Assert.Equal(-1, p.LoadMode);        // LLAMA_LOAD_MODE_AUTO
        Assert.Equal(1, p.LazyMode);         // LLAMA_LAZY_MODE_AUTO
        Assert.Equal(0, p.MainGpu);
        Assert.Equal(0, p.VocabOnly);
        Assert.Equal(0, p.CheckTensors);
        Assert.Equal(1, p.UseExtraBufts);
        Assert.Equal(0, p.NoHost);
        Assert.Equal(0, p.NoAlloc);
        Assert.Equal(0, p.LoadMtp);
    }

    [Fact]
    public void ContextDefaultParamsReadBackAsTheHeaderDefines()
    {
        TestRuntime.Ensure();
        var p = NativeMethods.llama_context_default_params();
        Assert.Equal(512u, p.NCtx);
        Assert.Equal(2048u, p.NBatch);
        Assert.Equal(512u, p.NUbatch);
        Assert.Equal(1u, p.NSeqMax);
        Assert.Equal(0u, p.NRsSeq);
        Assert.Equal(0u, p.NOutputsMax);
        Assert.Equal(1u, p.NOutputsMaxPerSeq);
        Assert.Equal(4, p.NThreads);          // GGML_DEFAULT_N_THREADS
        Assert.Equal(4, p.NThreadsBatch);
        Assert.Equal(-1, p.RopeScalingType);
        Assert.Equal(-1, p.FlashAttnType);    // AUTO
        Assert.Equal(-1f, p.YarnExtFactor);
        Assert.Equal(-1f, p.DefragThold);
        Assert.Equal(1, p.TypeK);             // GGML_TYPE_F16
        Assert.Equal(1, p.TypeV);
        Assert.Equal(IntPtr.Zero, p.AbortCallback);
        Assert.Equal(0, p.Embeddings);
        Assert.Equal(1, p.OffloadKqv);
        Assert.Equal(1, p.NoPerf);
        Assert.Equal(1, p.OpOffload);
        Assert.Equal(1, p.SwaFull);
        Assert.Equal(0, p.KvUnified);
        Assert.Equal(IntPtr.Zero, p.Samplers);
        Assert.Equal(IntPtr.Zero, p.CtxOther);
    }

    [Fact]
    public void QuantizeParamsLayoutMatchesHeader()
    {
        Assert.Equal(64, Marshal.SizeOf<LlamaModelQuantizeParams>());
        Assert.Equal(4, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.FType)));
        Assert.Equal(12, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.TokenEmbeddingType)));
        Assert.Equal(16, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.AllowRequantize)));
        Assert.Equal(21, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.DryRun)));
        Assert.Equal(24, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.Imatrix)));
        Assert.Equal(48, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.PruneLayers)));
        Assert.Equal(56, Offset<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.MaxBufSize)));
        Assert.Equal(24, Marshal.SizeOf<LlamaModelImatrixData>());
    }

    [Fact]
    public void QuantizeDefaultParamsReadBackAsTheHeaderDefines()
    {
        TestRuntime.Ensure();
        var p = NativeMethods.llama_model_quantize_default_params();
        Assert.Equal(0, p.NThread);
        Assert.Equal(7, p.FType);                   // LLAMA_FTYPE_MOSTLY_Q8_0
        Assert.Equal(43, p.OutputTensorType);       // GGML_TYPE_COUNT: llama.cpp's choice
        Assert.Equal(43, p.TokenEmbeddingType);
        Assert.Equal(0, p.AllowRequantize);
        Assert.Equal(1, p.QuantizeOutputTensor);
        Assert.Equal(0, p.OnlyCopy);
        Assert.Equal(0, p.Pure);
        Assert.Equal(0, p.KeepSplit);
        Assert.Equal(0, p.DryRun);
        Assert.Equal(IntPtr.Zero, p.Imatrix);
        Assert.Equal(IntPtr.Zero, p.KvOverrides);
        Assert.Equal(IntPtr.Zero, p.TtOverrides);
        Assert.Equal(IntPtr.Zero, p.PruneLayers);
        Assert.Equal(8UL << 30, (ulong)p.MaxBufSize); // LLAMA_QUANT_MAX_BUF_SIZE
    }

    [Fact]
    public void ThreadPoolParamsLayoutMatchesHeader()
    {
        Assert.Equal(528, Marshal.SizeOf<GgmlThreadPoolParams>());
        Assert.Equal(512, Offset<GgmlThreadPoolParams>(nameof(GgmlThreadPoolParams.NThreads)));
        Assert.Equal(516, Offset<GgmlThreadPoolParams>(nameof(GgmlThreadPoolParams.Prio)));
        Assert.Equal(520, Offset<GgmlThreadPoolParams>(nameof(GgmlThreadPoolParams.Poll)));
        Assert.Equal(524, Offset<GgmlThreadPoolParams>(nameof(GgmlThreadPoolParams.StrictCpu)));
        Assert.Equal(525, Offset<GgmlThreadPoolParams>(nameof(GgmlThreadPoolParams.Paused)));
    }

    [Fact]
    public unsafe void ThreadPoolDefaultParamsReadBackAsGgmlDefines()
    {
        TestRuntime.Ensure();
        GgmlThreadPoolParams p;
        new Span<byte>(&p, sizeof(GgmlThreadPoolParams)).Fill(0xAB);
        NativeMethods.ggml_threadpool_params_init(&p, 3);
        Assert.Equal(3, p.NThreads);
        Assert.Equal(0, p.Prio);           // GGML_SCHED_PRIO_NORMAL
        Assert.Equal(50u, p.Poll);         // hybrid polling
        Assert.Equal(0, p.StrictCpu);
        Assert.Equal(0, p.Paused);
        Assert.True(new ReadOnlySpan<byte>(p.CpuMask, GgmlThreadPoolParams.MaxThreads).IndexOfAnyExcept((byte)0) < 0, "an all-zero mask keeps the inherited affinity");
    }

    [Fact]
    public void ThreadPoolArgumentsOutsideWhatGgmlTakesAreRefusedBeforeTheNativeCall()
    {
        TestRuntime.Ensure();
        Assert.Throws<ArgumentOutOfRangeException>(() => SafeGgmlThreadPoolHandle.Create(0, 50));
        Assert.Throws<ArgumentOutOfRangeException>(() => SafeGgmlThreadPoolHandle.Create(GgmlThreadPoolParams.MaxThreads + 1, 50));
        Assert.Throws<ArgumentOutOfRangeException>(() => SafeGgmlThreadPoolHandle.Create(1, 101));
        using var pool = SafeGgmlThreadPoolHandle.Create(1, 0);
        Assert.False(pool.IsInvalid);
    }

    [Fact]
    public void RuntimeReportsTheBoundReleaseAndACpuDevice()
    {
        var info = TestRuntime.Ensure();
        Assert.True(LlamaRuntime.SameRelease(info.Version, LlamaRuntime.BindingVersion), info.Version);
        Assert.Contains(info.Devices, d => d.StartsWith("CPU", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("0.5.0", true)]
    [InlineData("0.5.0-dev", true)]
    [InlineData("0.5.3", true)]
    [InlineData("0.4.9", false)]
    [InlineData("1.5.0", false)]
    [InlineData("b6000", false)]
    [InlineData("", false)]
    public void VersionCheckAcceptsOnlyTheBoundRelease(string version, bool accepted) =>
        Assert.Equal(accepted, LlamaRuntime.SameRelease(version, LlamaRuntime.BindingVersion));

    [Fact]
    public void AMismatchedVersionIsRefusedNamingBothVersions()
    {
        var e = Assert.Throws<NativeLibraryException>(() => LlamaRuntime.CheckVersion("0.4.1", "/opt/llama"));
        Assert.Contains("0.4.1", e.Message, StringComparison.Ordinal);
        Assert.Contains(LlamaRuntime.BindingVersion, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NativeLogLevelsMapToSensibleLoggerLevels()
    {
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Error, LlamaLog.Map(GgmlLogLevel.Error));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, LlamaLog.Map(GgmlLogLevel.Warn));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Debug, LlamaLog.Map(GgmlLogLevel.Info));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Trace, LlamaLog.Map(GgmlLogLevel.Debug));
    }

    private static int Offset<T>(string field) => (int)Marshal.OffsetOf<T>(field);
}
