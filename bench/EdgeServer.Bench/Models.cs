using EdgeServer.Inference.Gguf;

namespace EdgeServer.Bench;

/// <summary>The benchmark models: real shapes, random weights (speed and memory do not depend on weight values).</summary>
internal static class Models
{
    public sealed record Spec(string Name, LlamaShape Shape, int Vocabulary, GgmlType Type, int MaxTokens);

    public static readonly Spec[] All =
    [
        // Llama 3.2 1B: 2048 embd, 16 layers, 32 heads, 8 KV heads, 8192 ff, 128256 vocab.
        new("llama-3.2-1b-shape-q4_0", new LlamaShape(2048, 16, 32, 8, 8192, 131072, 500000f), 128256, GgmlType.Q4_0, 64),
        // MobileLLM 125M: 576 embd, 30 layers, 9 heads, 3 KV heads, 1536 ff, 32000 vocab.
        new("mobilellm-125m-shape-q8_0", new LlamaShape(576, 30, 9, 3, 1536, 2048), 32000, GgmlType.Q8_0, 128),
    ];

    /// <summary>
    /// The residency scenario's models: both shapes in both quant types llama.cpp treats differently at load (Q4_0 is
    /// repacked on AVX2 and on ARM with dot-product instructions, Q8_0 only on ARM).
    /// </summary>
    public static readonly Spec[] Residency =
    [
        All[0],
        new("llama-3.2-1b-shape-q8_0", All[0].Shape, All[0].Vocabulary, GgmlType.Q8_0, 64),
        new("mobilellm-125m-shape-q4_0", All[1].Shape, All[1].Vocabulary, GgmlType.Q4_0, 128),
        All[1],
    ];

    /// <summary>Writes the model unless it is already there; returns its path.</summary>
    public static string Ensure(Spec spec, string directory)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, spec.Name + ".gguf");
        if (File.Exists(path))
        {
            return path;
        }

        var partial = path + ".partial";
        Console.Error.WriteLine($"writing {path} ...");
        // "▁" (a space) is a piece and letters fall back to byte tokens, so a prompt of n lowercase letters is n + 2
        // tokens (BOS and the leading space) for both servers alike.
        LlamaModelBuilder.Write(partial, spec.Shape, new SpmVocabulary(["▁"], padToCount: spec.Vocabulary), new RandomLlamaWeights(seed: 42, scale: 0.02f),
            spec.Type, name: spec.Name);
        File.Move(partial, path);
        return path;
    }
}
