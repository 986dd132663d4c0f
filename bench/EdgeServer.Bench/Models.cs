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

    /// <summary>
    /// The memory scenario's models: three sizes (about 150, 220 and 340 MiB), one mapped and two repacked on x86,
    /// so that a budget can hold any two of them and not all three.
    /// </summary>
    public static readonly Spec[] Memory =
    [
        All[1],
        // SmolLM2 360M: 960 embd, 32 layers, 15 heads, 5 KV heads, 2560 ff, 49152 vocab.
        new("smollm2-360m-shape-q4_0", new LlamaShape(960, 32, 15, 5, 2560, 8192, 100000f), 49152, GgmlType.Q4_0, 64),
        // Qwen2.5 0.5B: 896 embd, 24 layers, 14 heads, 2 KV heads, 4864 ff, 151936 vocab.
        new("qwen2.5-0.5b-shape-q4_0", new LlamaShape(896, 24, 14, 2, 4864, 32768, 1000000f), 151936, GgmlType.Q4_0, 64),
    ];

    /// <summary>The source of bench/quantize.sh: the 1B shape in F16 (its rows are multiples of 256, as k-quants need).</summary>
    public static readonly Spec QuantizeSource = new("llama-3.2-1b-shape-f16", All[0].Shape, All[0].Vocabulary, GgmlType.F16, 64);

    /// <summary>
    /// F16 K and V for every layer over <paramref name="slots"/> x <paramref name="contextPerSlot"/> cells (each slot's
    /// context capped at the training length, as both servers cap it), in MiB.
    /// </summary>
    public static double KvCacheMiB(Spec spec, int slots, int contextPerSlot)
    {
        var shape = spec.Shape;
        var cells = slots * Math.Min(contextPerSlot, shape.ContextLength);
        return (double)shape.BlockCount * cells * 2 * shape.KvEmbeddingLength * 2 / 1048576.0;
    }

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
