using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Gguf;

/// <summary>
/// Model files whose hyper-parameters make llama.cpp abort (GGML_ASSERT) are refused before llama.cpp sees
/// them; those it refuses itself are listed with its reason. Either way the file is named, not its folder.
/// </summary>
public class HostileModelTests
{
    private static readonly string Folder = Path.Combine(Path.GetDirectoryName(GgufReaderTests.TempPath("x"))!, "hostile");

    [Theory]
    [InlineData("llama.block_count", 4_000_000_000u)]
    [InlineData("llama.block_count", 0u)]
    [InlineData("llama.block_count", 513u)]
    [InlineData("llama.block_count", -1)]
    [InlineData("llama.nextn_predict_layers", 3u)]
    [InlineData("llama.attention.head_count_kv", 3u)]
    [InlineData("llama.attention.head_count_kv", 8u)]
    [InlineData("llama.embedding_length", 0u)]
    [InlineData("llama.context_length", 0u)]
    [InlineData("llama.context_length", uint.MaxValue)]
    [InlineData("llama.context_length", 1UL << 40)]
    [InlineData("llama.rope.scaling.type", "bogus")]
    [InlineData("llama.rope.dimension_count", 15u)]
    [InlineData("llama.rope.dimension_count", 32u)]
    [InlineData("llama.rope.freq_base", float.NaN)]
    [InlineData("llama.rope.freq_base", 0f)]
    [InlineData("llama.attention.layer_norm_rms_epsilon", float.NaN)]
    [InlineData("llama.attention.layer_norm_rms_epsilon", -1e-5f)]
    [InlineData("llama.expert_count", 2000u)]
    [InlineData("llama.expert_count", 4u)] // experts, but expert_used_count is missing: none would be used
    [InlineData("llama.expert_used_count", 2u)] // used experts without experts
    public void HyperParametersLlamaCppAssertsOnAreRefusedBeforeItSeesTheFile(string key, object value)
    {
        var path = Write($"{key}-{value}.gguf", HostileModels.Set(key, value));
        var descriptor = ModelCatalog.Describe(new ModelSource("hostile", path));
        Assert.Equal(ModelStatus.Unavailable, descriptor.Status);
        Assert.Contains(key, descriptor.Error, StringComparison.Ordinal);
        Assert.Contains(Path.GetFileName(path), descriptor.Error, StringComparison.Ordinal);
        Assert.DoesNotContain(Folder, descriptor.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void TheUnspoiledTinyModelPassesTheChecks()
    {
        var path = Write("tiny.gguf");
        Assert.Equal(ModelStatus.Available, ModelCatalog.Describe(new ModelSource("tiny", path)).Status);
    }

    [Fact]
    public async Task ModelsLlamaCppRefusesAreListedWithItsReasonAndTheGoodOneServes()
    {
        TestRuntime.Ensure();
        var dir = Path.Combine(Folder, "refused");
        Directory.CreateDirectory(dir);
        File.Copy(SuccessorModel.SharedPath, Path.Combine(dir, "good.gguf"), overwrite: true);
        HostileModels.Write(Path.Combine(dir, "layers.gguf"), HostileModels.Set("llama.block_count", 4_000_000_000u));
        // Tensor shapes that do not match the hyper-parameters: feed-forward, embedding width, vocabulary size.
        HostileModels.Write(Path.Combine(dir, "ffn.gguf"), HostileModels.Set("llama.feed_forward_length", 96u));
        HostileModels.Write(Path.Combine(dir, "wide.gguf"),
            HostileModels.Set("llama.embedding_length", 64u) + HostileModels.Set("llama.rope.dimension_count", 16u));
        HostileModels.Write(Path.Combine(dir, "vocab.gguf"), HostileModels.Pieces(p => p.SkipLast(1).ToList()));
        HostileModels.Write(Path.Combine(dir, "scores.gguf"), w => w.Remove("tokenizer.ggml.scores").Add("tokenizer.ggml.scores", HostileModels.Vocabulary.Scores.SkipLast(1).ToList()));

        // No probe command: the checks run in this process, which is safe for files llama.cpp refuses.
        using var engine = new InferenceEngine(new EngineOptions { Models = ModelCatalog.Discover([], dir) }, NullLoggerFactory.Instance);
        var models = engine.ListModels().ToDictionary(m => m.Id);
        Assert.Equal(ModelStatus.Available, models["good"].Status);
        foreach (var (id, expected) in new[]
        {
            ("layers", "llama.block_count"), ("ffn", "wrong shape"), ("wide", "wrong shape"), ("vocab", "wrong shape"), ("scores", "scores"),
        })
        {
            Assert.Equal(ModelStatus.Unavailable, models[id].Status);
            Assert.Contains(expected, models[id].Error, StringComparison.Ordinal);
            Assert.DoesNotContain(dir, models[id].Error, StringComparison.Ordinal);
            var e = await Assert.ThrowsAsync<ModelUnavailableException>(() => engine.LoadAsync(id));
            Assert.DoesNotContain(dir, e.Message, StringComparison.Ordinal);
        }

        var session = await engine.StartAsync(new GenerationRequest { Model = "good", Prompt = "w", Sampling = new SamplingParameters { Temperature = 0 } }, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        Assert.Equal("xyzé€", text.ToString());
    }

    internal static string Write(string name, Action<GgufWriter>? spoil = null)
    {
        Directory.CreateDirectory(Folder);
        var path = Path.Combine(Folder, name);
        HostileModels.Write(path, spoil);
        return path;
    }
}
