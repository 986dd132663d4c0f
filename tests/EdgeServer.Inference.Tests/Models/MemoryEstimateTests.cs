using System.Globalization;
using System.Text.RegularExpressions;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Scheduling;
using EdgeServer.Inference.Tests.Gguf;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace EdgeServer.Inference.Tests.Models;

/// <summary>
/// The memory estimate against what llama.cpp allocates for generated models of several shapes, loaded for real as
/// the engine loads them (a <see cref="ModelScheduler"/>'s context, then an <see cref="Embedder"/>). llama.cpp
/// reports its buffer sizes only in its log (in MiB with two decimals), so the test reads them there.
/// </summary>
public partial class MemoryEstimateTests(ITestOutputHelper output)
{
    private const double Tolerance = 0.10;

    public sealed record Shape(string Name, LlamaShape Hyper, int Vocabulary, GgmlType Type, int Slots, int ContextPerSlot, int BatchSize, bool Mapped,
        KvCacheType Kv = KvCacheType.F16, FlashAttention FlashAttention = FlashAttention.Auto)
    {
        public override string ToString() => Name;
    }

    // Realistic proportions at a small scale: vocabularies far wider than the model, n_ff about three times
    // n_embd, GQA from 1:1 to 1:4, every weight type the builder writes, with and without mapping.
    private static readonly Shape[] Shapes =
    [
        new Shape("f32, GQA 4:1, 2 slots", new LlamaShape(256, 2, 8, 2, 704, 2048), 8000, GgmlType.F32, 2, 1024, 512, Mapped: true),
        new Shape("q4_0 mapped, MHA", new LlamaShape(512, 2, 8, 8, 1408, 4096), 16000, GgmlType.Q4_0, 2, 2048, 512, Mapped: true),
        new Shape("q4_0 unmapped, odd vocabulary", new LlamaShape(512, 3, 8, 4, 1408, 4096), 12003, GgmlType.Q4_0, 3, 1024, 512, Mapped: false),
        new Shape("q8_0 deep, 1 slot, batch 256", new LlamaShape(384, 6, 6, 2, 1024, 4096), 32000, GgmlType.Q8_0, 1, 4096, 256, Mapped: true),
        new Shape("f16 feed-forward heavy, 4 slots of 768", new LlamaShape(512, 3, 8, 4, 2048, 2048), 3000, GgmlType.F16, 4, 768, 512, Mapped: true),
        new Shape("f16 long context, small vocabulary (the attention mask counts)", new LlamaShape(256, 2, 8, 4, 1024, 4096), 2048, GgmlType.F16, 1, 4096, 512, Mapped: true),
        new Shape("q8_0 capped at a 1024 training length", new LlamaShape(256, 4, 4, 1, 768, 1024), 20000, GgmlType.Q8_0, 2, 8192, 512, Mapped: false),
        new Shape("q8_0 KV cache", new LlamaShape(512, 2, 8, 8, 1408, 4096), 16000, GgmlType.Q4_0, 2, 2048, 512, Mapped: true, Kv: KvCacheType.Q8_0),
        new Shape("q4_0 KV cache, GQA 4:1", new LlamaShape(256, 2, 8, 2, 704, 2048), 8000, GgmlType.F32, 2, 1024, 512, Mapped: true, Kv: KvCacheType.Q4_0, FlashAttention: FlashAttention.On),
        new Shape("flash attention off, long context (the attention scores count)", new LlamaShape(256, 2, 8, 4, 1024, 4096), 2048, GgmlType.F16, 1, 4096, 512, Mapped: true, FlashAttention: FlashAttention.Off),
        new Shape("flash attention off, 2 slots, wide vocabulary", new LlamaShape(384, 6, 6, 2, 1024, 4096), 32000, GgmlType.Q8_0, 2, 1024, 256, Mapped: true, FlashAttention: FlashAttention.Off),
    ];

    public static TheoryData<Shape> Cases => new(Shapes);

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheEstimateIsWithinTenPercentOfWhatLlamaCppAllocates(Shape c)
    {
        TestRuntime.Ensure();
        var path = Write(c);
        var options = new SchedulerOptions { Slots = c.Slots, ContextPerSlot = c.ContextPerSlot, BatchSize = c.BatchSize, Threads = 1, KvCacheType = c.Kv, FlashAttention = c.FlashAttention };
        var file = GgufReader.Read(path);
        var cpu = CpuRepackFeatures.Current;
        var estimate = MemoryEstimator.Estimate(file, options, c.Mapped, cpu);
        var embedding = MemoryEstimator.EstimateEmbedding(file, options);

        Reported model, generation, embedder;
        ulong modelSize;
        using (var capture = LlamaLog.Capture())
        {
            using var llama = LlamaModel.Load(path, c.Mapped ? MmapMode.On : MmapMode.Off);
            modelSize = llama.SizeBytes;
            model = Reported.From(capture.Lines);
            using (new ModelScheduler("m", llama, options, NullLogger.Instance))
            {
                generation = Reported.From(capture.Lines).Since(model);
            }

            using (new Embedder(llama, options.ContextPerSlot, threads: () => 1, threadPoll: 0))
            {
                embedder = Reported.From(capture.Lines).Since(generation);
            }
        }

        output.WriteLine($"{c.Name}: {estimate}; embeddings {embedding}");
        // Weights: llama_model_size is every tensor's bytes; the buffers hold them once, repacked ones once more
        // when the file stays mapped.
        Assert.Equal(file.Tensors.Sum(t => (long)t.ByteSize), (long)modelSize);
        Near("weights", estimate.Weights, c.Mapped ? model.Buffer("CPU_Mapped model") : model.Buffer("CPU model"));
        Near("repacked weights", estimate.RepackedWeights, model.Buffer("CPU_REPACK model"));
        if (c.Type == GgmlType.Q4_0 && cpu.Repacks(GgmlType.Q4_0, 512))
        {
            Assert.True(estimate.RepackedWeights > 0, "this CPU repacks Q4_0, so the test must see repacked weights");
        }

        Near("KV", estimate.KvCache, generation.Buffer("KV"));
        Near("compute", estimate.Compute, generation.Buffer("compute") + generation.Buffer("output"));

        // The embedder's output buffer holds one row at creation and grows on its first long input (the next test
        // shows to what), so its compute buffer is compared without that output part of the estimate.
        Near("embedding KV", embedding.KvCache, embedder.Buffer("KV"));
        Near("embedding compute", embedding.Compute - EmbeddingOutputGrowth(c, options), embedder.Buffer("compute"));
    }

    /// <summary>
    /// Where the embedding estimate's output growth comes from: a pooled sequence makes llama.cpp output every token,
    /// so after an input of the whole context its output buffer holds logits for each token (and embeddings).
    /// </summary>
    [Fact]
    public unsafe void TheEmbeddingContextKeepsLogitsForEveryTokenOfAFullInput()
    {
        TestRuntime.Ensure();
        var c = Shapes[0];
        var path = Write(c);
        var options = new SchedulerOptions { Slots = c.Slots, ContextPerSlot = c.ContextPerSlot, Threads = 1 };
        using var llama = LlamaModel.Load(path);
        var length = ContextParameters.ContextPerSlot(options, llama.TrainingContextLength);
        using var context = NativeMethods.llama_init_from_model(llama.Handle, ContextParameters.Embedding(length, 1, (int)EmbeddingPooling.Mean));
        Assert.False(context.IsInvalid);
        using var batch = SafeLlamaBatchHandle.Create(length, 1);
        ref var b = ref batch.Batch;
        for (var i = 0; i < length; i++)
        {
            b.Token[i] = SpmVocabulary.FirstByte + (i % 256);
            b.Pos[i] = i;
            b.NSeqId[i] = 1;
            b.SeqId[i][0] = 0;
            b.Logits[i] = 1;
        }

        b.NTokens = length;
        Assert.Equal(0, NativeMethods.llama_decode(context, b));
        Assert.True(NativeMethods.llama_get_logits_ith(context, length - 1) != null, "the last token's logits are kept");
        Assert.True(NativeMethods.llama_get_logits_ith(context, 0) != null, "the first token's logits are kept");
        Assert.True(EmbeddingOutputGrowth(c, options) >= (long)c.Vocabulary * length * sizeof(float));
    }

    [Fact]
    public void UsersReadTheEstimateInGiBOrMiB()
    {
        const long MiB = 1024 * 1024;
        Assert.Equal("2.1 GiB (weights 1.6, KV 0.4, compute 0.1)",
            new MemoryEstimate(1638 * MiB, 0, 410 * MiB, 103 * MiB).ToString());
        Assert.Equal("2.6 GiB (weights 1.0, repacked 0.9, KV 0.5, compute 0.3)",
            new MemoryEstimate(1024 * MiB, 900 * MiB, 512 * MiB, 256 * MiB).ToString());
        Assert.Equal("86 MiB (weights 41, KV 8.0, compute 37)",
            new MemoryEstimate(41 * MiB, 0, 8 * MiB, 37 * MiB).ToString());
    }

    [Fact]
    public void RepackingFollowsTheCpuBackendsFeatures()
    {
        var x86 = CpuRepackFeatures.FromSystemInfo("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | REPACK = 1 |");
        Assert.True(x86.Repacks(GgmlType.Q4_0, 4096));
        Assert.False(x86.Repacks(GgmlType.Q4_0, 4092)); // the 8x8 layout needs rows in eights
        Assert.True(x86.Repacks(GgmlType.Q4_K, 4096));
        Assert.False(x86.Repacks(GgmlType.Q8_0, 4096));
        Assert.False(x86.Repacks(GgmlType.Q2_K, 4096)); // needs AVX512

        var pi5 = CpuRepackFeatures.FromSystemInfo("CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | REPACK = 1 |");
        Assert.True(pi5.Repacks(GgmlType.Q4_0, 4092));
        Assert.True(pi5.Repacks(GgmlType.Q8_0, 4096));
        Assert.True(pi5.Repacks(GgmlType.Q6_K, 4096));
        Assert.False(pi5.Repacks(GgmlType.Q4_0, 4094));

        var armv8 = CpuRepackFeatures.FromSystemInfo("CPU : NEON = 1 | ARM_FMA = 1 | REPACK = 1 |");
        Assert.False(armv8.Repacks(GgmlType.Q4_0, 4096));
        Assert.False(CpuRepackFeatures.FromSystemInfo("CPU : AVX2 = 1 |").Repacks(GgmlType.Q4_0, 4096));

        // The bundled backends are built with repacking.
        Assert.True(CpuRepackFeatures.FromSystemInfo(TestRuntime.Ensure().SystemInfo).Repack);
    }

    private void Near(string part, long estimated, long reported)
    {
        var error = reported == 0 ? (estimated == 0 ? 0 : 1) : (double)(estimated - reported) / reported;
        output.WriteLine($"  {part,-18} estimated {estimated / 1048576.0,9:F2} MiB, llama.cpp {reported / 1048576.0,9:F2} MiB, {error,7:P1}");
        Assert.True(Math.Abs(error) <= Tolerance, $"{part}: estimated {estimated} bytes, llama.cpp {reported} bytes ({error:P1})");
    }

    private static long EmbeddingOutputGrowth(Shape c, SchedulerOptions options) =>
        (c.Vocabulary + c.Hyper.EmbeddingLength) * (long)ContextParameters.ContextPerSlot(options, c.Hyper.ContextLength) * sizeof(float);

    private static string Write(Shape c)
    {
        var path = GgufReaderTests.TempPath($"memory-{c.Hyper.EmbeddingLength}x{c.Hyper.BlockCount}-{c.Hyper.HeadCountKv}-{c.Hyper.FeedForwardLength}-{c.Hyper.ContextLength}-{c.Vocabulary}-{c.Type}.gguf");
        if (!File.Exists(path))
        {
            var temporary = path + $".{Environment.ProcessId}.tmp";
            LlamaModelBuilder.Write(temporary, c.Hyper, new SpmVocabulary([], padToCount: c.Vocabulary), new RandomLlamaWeights(seed: 5), c.Type);
            File.Move(temporary, path, overwrite: true);
        }

        return path;
    }

    /// <summary>The buffer sizes llama.cpp logged, in the order it logged them.</summary>
    private sealed partial record Reported(IReadOnlyList<(string Kind, long Bytes)> Buffers)
    {
        public static Reported From(IReadOnlyList<string> lines) => new(lines
            .Select(l => BufferLine().Match(l))
            .Where(m => m.Success)
            .Select(m => (m.Groups["kind"].Value.Trim(), (long)Math.Round(double.Parse(m.Groups["mib"].Value, CultureInfo.InvariantCulture) * 1048576)))
            .ToList());

        /// <summary>Lines after those of <paramref name="earlier"/>, a capture of the same log.</summary>
        public Reported Since(Reported earlier) => new(Buffers.Skip(earlier.Buffers.Count).ToList());

        /// <summary>The last buffer of a kind ("KV", "compute", "CPU_Mapped model", ...): 0 when there is none.</summary>
        public long Buffer(string kind) => Buffers.LastOrDefault(b => b.Kind.EndsWith(kind, StringComparison.Ordinal)).Bytes;

        // "load_tensors:   CPU_REPACK model buffer size =     2.39 MiB", "llama_kv_cache:        CPU KV buffer size = ...",
        // "sched_reserve:        CPU compute buffer size = ...", "llama_context:        CPU  output buffer size = ..."
        [GeneratedRegex(@"^\w+:\s+(?<kind>\S+(\s+\S+)*?) buffer size =\s+(?<mib>[\d.]+) MiB")]
        private static partial Regex BufferLine();
    }
}
