using System.Globalization;

namespace EdgeServer.Inference.Gguf;

/// <summary>
/// Checks the hyper-parameters llama.cpp asserts on (GGML_ASSERT aborts the whole process) rather than refuses:
/// layer and expert counts (llama-model.cpp load_hparams), the RoPE scaling type, attention heads that must
/// divide into KV heads and RoPE dimensions that must be even (asserted when the graph is built or run), and
/// norm epsilons that must not be negative or NaN (asserted in the first decode). What llama.cpp itself
/// refuses with an error (tensor shapes against hyper-parameters, key types, vocabulary array lengths) is left
/// to it. Architecture-specific asserts are not modelled here: the model check in a child process catches them.
/// </summary>
public static class GgufModelCheck
{
    /// <summary>LLAMA_MAX_LAYERS in llama-hparams.h.</summary>
    public const int MaxLayers = 512;

    /// <summary>LLAMA_MAX_EXPERTS in llama-hparams.h.</summary>
    public const int MaxExperts = 1024;

    private static readonly string[] RopeScalingTypes = ["none", "linear", "yarn", "longrope"];

    // Architectures whose RoPE covers the whole head (llama.cpp requires n_rot == head size for them).
    private static readonly string[] FullRopeArchitectures = ["llama", "deci", "falcon", "llama-embed"];

    // Architectures for which llama.cpp turns a single expert into none.
    private static readonly string[] SingleExpertIsDense = ["hunyuan-vl", "hunyuan-dense"];

    /// <summary>Throws <see cref="GgufFormatException"/> for the first value llama.cpp would abort on.</summary>
    public static void Validate(GgufFile file)
    {
        if (file.Architecture is not { Length: > 0 } arch)
        {
            return; // llama.cpp refuses a file without an architecture.
        }

        var check = new Check(file, arch);
        var layers = check.Integer("block_count");
        if (layers is { } n && (n < 1 || n > MaxLayers))
        {
            throw check.Fail("block_count", $"{n} layers; llama.cpp handles 1 to {MaxLayers}");
        }

        var maxLayers = layers ?? MaxLayers;
        check.AtMost("nextn_predict_layers", maxLayers, "the number of layers");
        check.AtMost("posnet.block_count", maxLayers, "the number of layers");
        check.AtMost("convnext.block_count", maxLayers, "the number of layers");

        var embedding = check.Integer("embedding_length");
        if (embedding is { } e && (e < 1 || e > uint.MaxValue))
        {
            throw check.Fail("embedding_length", $"{embedding}; it must be at least 1");
        }

        var context = check.Integer("context_length");
        if (context is { } c && (c < 1 || c > int.MaxValue))
        {
            throw check.Fail("context_length", $"{context} tokens; it must be from 1 to {int.MaxValue}");
        }

        CheckExperts(check, arch);
        CheckAttention(check, arch, embedding);

        if (file.Metadata.TryGetValue($"{arch}.rope.scaling.type", out var scaling) && scaling is string type && !RopeScalingTypes.Contains(type, StringComparer.Ordinal))
        {
            throw check.Fail("rope.scaling.type", $"'{type}'; llama.cpp knows {string.Join(", ", RopeScalingTypes)}");
        }

        check.Positive("rope.freq_base");
        check.NotNegative("rope.scaling.factor");
        check.NotNegative("attention.layer_norm_epsilon");
        check.NotNegative("attention.layer_norm_rms_epsilon");
        check.NotNegative("attention.group_norm_epsilon");
    }

    private static void CheckExperts(Check check, string arch)
    {
        var experts = check.Integer("expert_count") ?? 0;
        // Per layer or for all; absent is 0 (llama.cpp's default), null if the values are unknown.
        var used = check.Has("expert_used_count") ? check.Integers("expert_used_count")?.DefaultIfEmpty().Max() : 0;
        var groups = check.Integer("expert_group_count") ?? 0;
        var groupsUsed = check.Integer("expert_group_used_count") ?? 0;
        if (experts <= 1 && SingleExpertIsDense.Contains(arch, StringComparer.Ordinal))
        {
            experts = 0;
            used = 0;
        }

        if (experts < 0 || experts > MaxExperts)
        {
            throw check.Fail("expert_count", $"{experts}; llama.cpp handles 0 to {MaxExperts} experts");
        }

        if (used < 0 || used > experts || (experts > 0 && used == 0))
        {
            throw check.Fail("expert_used_count", $"{used}; with {experts} experts (expert_count) it must be from {(experts > 0 ? 1 : 0)} to {experts}");
        }

        if (experts > 0)
        {
            if (groups < 0 || groups >= experts)
            {
                throw check.Fail("expert_group_count", $"{groups}; it must be below the {experts} experts");
            }

            if (groups > 1 && (experts % groups != 0 || groupsUsed <= 0 || groupsUsed >= groups))
            {
                throw check.Fail("expert_group_used_count", $"{groupsUsed} of {groups} groups over {experts} experts; the groups must divide the experts and from 1 to {groups - 1} be used");
            }
        }
        else if (groups != 0)
        {
            throw check.Fail("expert_group_count", $"{groups} without experts (expert_count is 0)");
        }
    }

    private static void CheckAttention(Check check, string arch, Int128? embedding)
    {
        // Either one count for every layer or one per layer; llama.cpp refuses arrays of another length.
        var headCounts = check.Integers("attention.head_count") ?? [];
        var kvCounts = check.Integers("attention.head_count_kv") ?? headCounts;
        foreach (var (name, counts) in new[] { ("attention.head_count", headCounts), ("attention.head_count_kv", kvCounts) })
        {
            foreach (var count in counts.Where(c => c < 0 || c > uint.MaxValue))
            {
                throw check.Fail(name, $"{count} heads");
            }
        }

        for (var layer = 0; layer < Math.Max(headCounts.Count, kvCounts.Count); layer++)
        {
            var heads = headCounts.Count == 0 ? 0 : headCounts[Math.Min(layer, headCounts.Count - 1)];
            var kvHeads = kvCounts.Count == 0 ? heads : kvCounts[Math.Min(layer, kvCounts.Count - 1)];
            if (heads > 0 && kvHeads > 0 && heads % kvHeads != 0)
            {
                // Grouped-query attention shares each KV head among head_count / head_count_kv query heads.
                throw check.Fail("attention.head_count_kv", $"{kvHeads}, which does not divide the {heads} attention heads (attention.head_count) of layer {layer}");
            }
        }

        var heads0 = check.Integer("attention.head_count");

        var headSize = check.Integer("attention.key_length") ?? (heads0 > 0 && embedding is { } e ? e / heads0.Value : null);
        var rope = check.Integer("rope.dimension_count");
        if (rope is { } r)
        {
            if (r < 0 || r % 2 != 0 || (headSize is { } size && r > size))
            {
                throw check.Fail("rope.dimension_count", $"{r}; RoPE needs an even number of dimensions, at most the head size ({headSize})");
            }
        }
        else if (headSize is { } size && size % 2 != 0 && FullRopeArchitectures.Contains(arch, StringComparer.Ordinal))
        {
            throw check.Fail("embedding_length", $"{embedding} over {heads0} heads, a head size of {size}; RoPE needs an even head size");
        }
    }

    /// <summary>Reads one architecture's keys; integers of any GGUF type come back as Int128 so none overflows.</summary>
    private readonly struct Check(GgufFile file, string arch)
    {
        public Int128? Integer(string name) => file.Metadata.TryGetValue($"{arch}.{name}", out var v) ? ToInteger(v) : null;

        public bool Has(string name) => file.Metadata.ContainsKey($"{arch}.{name}");

        /// <summary>A scalar as one value, a kept array of integers as its values; otherwise null.</summary>
        public List<Int128>? Integers(string name) => file.Metadata.TryGetValue($"{arch}.{name}", out var v) ? v switch
        {
            GgufArray { Values: { } values } when values.All(x => ToInteger(x) is not null) => values.Select(x => ToInteger(x)!.Value).ToList(),
            _ => ToInteger(v) is { } one ? [one] : null,
        } : null;

        public void AtMost(string name, Int128 limit, string what)
        {
            if (Integer(name) is { } n && (n < 0 || n > limit))
            {
                throw Fail(name, $"{n}; it must be from 0 to {what} ({limit})");
            }
        }

        public void Positive(string name)
        {
            if (Real(name) is { } x && !(double.IsFinite(x) && x > 0))
            {
                throw Fail(name, $"{x.ToString(CultureInfo.InvariantCulture)}; it must be a positive number");
            }
        }

        public void NotNegative(string name)
        {
            if (Real(name) is { } x && !(double.IsFinite(x) && x >= 0))
            {
                throw Fail(name, $"{x.ToString(CultureInfo.InvariantCulture)}; it must be a number of at least 0");
            }
        }

        public GgufFormatException Fail(string name, string what) =>
            new(file.Path, $"{arch}.{name} is {what}");

        private static Int128? ToInteger(object value) => value switch
        {
            byte b => b, sbyte sb => sb, ushort us => us, short s => s, uint ui => ui, int i => i, ulong ul => ul, long l => l,
            _ => null,
        };

        private double? Real(string name) => file.Metadata.TryGetValue($"{arch}.{name}", out var v) ? v switch
        {
            float f => f, double d => d,
            _ => null,
        } : null;
    }
}
