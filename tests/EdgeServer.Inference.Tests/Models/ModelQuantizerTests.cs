using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Tests.Gguf;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Models;

/// <summary>
/// llama.cpp's quantizer on generated models: the successor model (F32) to Q8_0 and Q4_0 still writes its known
/// reply; a model whose rows are multiples of 256 gets a K-quant mix and an importance matrix; the written file is
/// no larger than the estimate, and what is refused is refused before llama.cpp runs.
/// </summary>
public class ModelQuantizerTests
{
    /// <summary>Rows of 256 and 512 (K-quant blocks are 256 wide), two blocks, a vocabulary of 512: a few MB in F16.</summary>
    private static readonly LlamaShape KShape = new(EmbeddingLength: 256, BlockCount: 2, HeadCount: 4, HeadCountKv: 2, FeedForwardLength: 512, ContextLength: 512);

    private static readonly Lazy<string> s_kModel = new(() =>
    {
        var path = GgufReaderTests.TempPath("quantize-k-f16.gguf");
        LlamaModelBuilder.Write(path, KShape, new SpmVocabulary(["▁a", "▁b"], padToCount: 512), new RandomLlamaWeights(seed: 3), GgmlType.F16);
        return path;
    });

    private static string Output(string name)
    {
        var path = GgufReaderTests.TempPath($"quantized-{Guid.NewGuid():N}-{name}");
        return path;
    }

    [Theory]
    [InlineData("Q8_0", GgmlType.Q8_0)]
    [InlineData("q4_0", GgmlType.Q4_0)]
    public async Task TheSuccessorModelQuantizedStillWritesItsReply(string name, GgmlType expected)
    {
        TestRuntime.Ensure();
        var output = Output(name + ".gguf");
        var type = ModelQuantizer.Find(name);
        var written = await ModelQuantizer.QuantizeAsync(new QuantizeRequest(SuccessorModel.SharedPath, output, type) { Threads = 2 });
        try
        {
            Assert.Equal(type.FileType, written.FileType);
            Assert.Equal(expected, written.Tensors.Single(t => t.Name == "blk.0.attn_q.weight").Type);
            Assert.True(new FileInfo(output).Length <= ModelQuantizer.EstimateSize(GgufReader.Read(SuccessorModel.SharedPath), type), "the estimate is below the size written");
            Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}*"));
            Assert.Equal(("klmn", 4), await Generate(output));
        }
        finally
        {
            File.Delete(output);
        }
    }

    [Fact]
    public async Task AModelWithRowsOf256GetsTheQ4_K_MMixAndLoads()
    {
        TestRuntime.Ensure();
        var output = Output("q4_k_m.gguf");
        var progress = new List<QuantizeProgress>();
        var written = await ModelQuantizer.QuantizeAsync(new QuantizeRequest(s_kModel.Value, output, ModelQuantizer.Find("Q4_K_M")) { Threads = 2 }, p =>
        {
            lock (progress)
            {
                progress.Add(p);
            }
        });
        try
        {
            Assert.Equal(15, written.FileType);
            Assert.Contains(written.Tensors, t => t.Type == GgmlType.Q4_K);
            Assert.Contains(written.Tensors, t => t.Type == GgmlType.Q6_K);
            Assert.True(written.FileLength <= ModelQuantizer.EstimateSize(GgufReader.Read(s_kModel.Value), ModelQuantizer.Find("Q4_K_M")));
            // The last report is the finished file.
            Assert.Equal(written.FileLength, progress[^1].Written);
            // Random weights: some reply, whatever it says.
            Assert.True((await Generate(output, "a b")).Tokens > 0);
        }
        finally
        {
            File.Delete(output);
        }
    }

    [Fact]
    public async Task AnImportanceMatrixIsPassedToLlamaCppAndTheTypesThatNeedOneAreRefusedWithout()
    {
        TestRuntime.Ensure();
        var type = ModelQuantizer.Find("IQ2_XXS");
        var output = Output("iq2_xxs.gguf");
        var refused = await Assert.ThrowsAsync<QuantizationException>(() => ModelQuantizer.QuantizeAsync(new QuantizeRequest(s_kModel.Value, output, type) { Threads = 2 }));
        Assert.Contains("imatrix", refused.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(output));

        // A legacy .dat matrix: every weight matrix but the embeddings and output, one value per input column.
        var matrix = GgufReaderTests.TempPath($"imatrix-{Guid.NewGuid():N}.dat");
        var model = GgufReader.Read(s_kModel.Value);
        var entries = model.Tensors.Where(t => t.Dimensions.Count == 2 && t.Name is not ("token_embd.weight" or "output.weight")).ToList();
        using (var writer = new BinaryWriter(File.Create(matrix)))
        {
            writer.Write(entries.Count);
            foreach (var tensor in entries)
            {
                var name = System.Text.Encoding.UTF8.GetBytes(tensor.Name);
                writer.Write(name.Length);
                writer.Write(name);
                writer.Write(10); // calls: the sums are the average times the calls
                writer.Write((int)tensor.Dimensions[0]);
                for (var i = 0; i < (int)tensor.Dimensions[0]; i++)
                {
                    writer.Write(10f + i % 7);
                }
            }
        }

        try
        {
            var written = await ModelQuantizer.QuantizeAsync(new QuantizeRequest(s_kModel.Value, output, type) { Threads = 2, Imatrix = matrix });
            Assert.Equal(type.FileType, written.FileType);
            Assert.Contains(written.Tensors, t => t.Type == GgmlType.IQ2_XXS);
        }
        finally
        {
            File.Delete(output);
            File.Delete(matrix);
        }
    }

    [Fact]
    public async Task WhatCannotWorkIsRefusedBeforeLlamaCppRuns()
    {
        var q8 = ModelQuantizer.Find("Q8_0");
        var missing = GgufReaderTests.TempPath("no-such-model.gguf");
        var e = await Assert.ThrowsAsync<QuantizationException>(() => ModelQuantizer.QuantizeAsync(new QuantizeRequest(missing, Output("x.gguf"), q8)));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);

        var existing = GgufReaderTests.Temp($"existing-{Guid.NewGuid():N}.gguf", [1, 2, 3]);
        e = await Assert.ThrowsAsync<QuantizationException>(() => ModelQuantizer.QuantizeAsync(new QuantizeRequest(SuccessorModel.SharedPath, existing, q8)));
        Assert.Contains("--force", e.Message, StringComparison.Ordinal);
        Assert.Equal(3, new FileInfo(existing).Length);

        var unknown = Assert.Throws<QuantizationException>(() => ModelQuantizer.Find("Q9_9"));
        Assert.Contains("Q4_K_M", unknown.Message, StringComparison.Ordinal);
        Assert.Equal("Q4_K_M", ModelQuantizer.Find("q4_k").Name);

        var full = Assert.Throws<QuantizationException>(() => ModelQuantizer.CheckSpace("out.gguf", 2L << 30, 1L << 30));
        Assert.Contains("Not enough disk space", full.Message, StringComparison.Ordinal);
        ModelQuantizer.CheckSpace("out.gguf", 1L << 30, 2L << 30);
    }

    private static async Task<(string Text, int Tokens)> Generate(string path, string prompt = "Hello j")
    {
        using var engine = new InferenceEngine(
            new EngineOptions { Models = [new ModelSource("q", path)], Scheduler = new() { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = 2 } },
            NullLoggerFactory.Instance);
        await engine.LoadAsync("q");
        var session = await engine.StartAsync(new GenerationRequest { Model = "q", Prompt = prompt, Sampling = new() { Temperature = 0 }, MaxTokens = 4 }, default);
        var text = new System.Text.StringBuilder();
        var tokens = 0;
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
            tokens = chunk.Usage?.CompletionTokens ?? tokens;
        }

        return (text.ToString(), tokens);
    }
}
