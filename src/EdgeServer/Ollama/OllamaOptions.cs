using System.Globalization;
using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.OpenAi;

namespace EdgeServer.Ollama;

/// <summary>What EdgeServer does with one of Ollama's <c>options</c>.</summary>
internal enum OptionHandling
{
    /// <summary>Mapped to the engine's field; its range is the engine's.</summary>
    Honoured,

    /// <summary>Type-checked, then without effect: it tunes Ollama's runner, not the output.</summary>
    Ignored,

    /// <summary>A 400 unless it has its neutral value: it would change the output and EdgeServer cannot honour it.</summary>
    Refused,
}

/// <summary>One of Ollama's Modelfile parameters as a request option: its JSON kind and what EdgeServer does with it.</summary>
internal sealed record OllamaOption(string Name, string Kind, OptionHandling Handling, string Behaviour)
{
    /// <summary>For a refused option: the value that means "off", which is accepted.</summary>
    public double? Neutral { get; init; }
}

/// <summary>
/// Ollama's request <c>options</c> read into the engine's sampling, length and stop fields. Types are checked here,
/// with Ollama's wording; ranges are the engine's (<see cref="GenerationFields"/>), named by <see cref="OllamaFieldNames"/>.
/// Options Ollama does not know are ignored, as Ollama ignores them.
/// </summary>
internal static class OllamaOptions
{
    public static IReadOnlyList<OllamaOption> Table { get; } =
    [
        new("temperature", "number", OptionHandling.Honoured, "As chat's `temperature`."),
        new("top_p", "number", OptionHandling.Honoured, "As chat's `top_p`."),
        new("top_k", "integer", OptionHandling.Honoured, "As chat's `top_k`."),
        new("min_p", "number", OptionHandling.Honoured, "As chat's `min_p`."),
        new("seed", "integer", OptionHandling.Honoured, "Same seed, same output; -1 or absent: random."),
        new("num_predict", "integer", OptionHandling.Honoured, "Most tokens to generate (`max_tokens`). Absent, -1 (Ollama's default, no limit) and -2 (fill the context): `EdgeServer:Limits:DefaultMaxTokens`, at most to the end of the context; that setting at 0 gives Ollama's behaviour."),
        new("stop", "array of strings", OptionHandling.Honoured, "As chat's `stop`."),
        new("repeat_penalty", "number", OptionHandling.Honoured, "As chat's `repeat_penalty`."),
        new("repeat_last_n", "integer", OptionHandling.Honoured, "Tokens the repetition penalties look back on; -1: the whole context."),
        new("presence_penalty", "number", OptionHandling.Honoured, "As chat's `presence_penalty`."),
        new("frequency_penalty", "number", OptionHandling.Honoured, "As chat's `frequency_penalty`."),
        new("num_ctx", "integer", OptionHandling.Ignored, "Checked to be positive; the context is the model's slot context (`EdgeServer:Scheduler:ContextPerSlot` or the model's setting), which one request does not resize. A larger value is capped to it, as Ollama caps `num_ctx` at the model's training length; a prompt that does not fit is a 400."),
        new("num_keep", "integer", OptionHandling.Ignored, "No effect: EdgeServer does not shift the context."),
        new("num_batch", "integer", OptionHandling.Ignored, "No effect: set by the scheduler."),
        new("num_gpu", "integer", OptionHandling.Ignored, "No effect: EdgeServer runs on the CPU."),
        new("main_gpu", "integer", OptionHandling.Ignored, "No effect: EdgeServer runs on the CPU."),
        new("num_thread", "integer", OptionHandling.Ignored, "No effect: threads are `EdgeServer:Runtime:Threads` or the model's setting."),
        new("use_mmap", "boolean", OptionHandling.Ignored, "No effect: `EdgeServer:Runtime:UseMmap` or the model's setting."),
        new("use_mlock", "boolean", OptionHandling.Ignored, "No effect."),
        new("numa", "boolean", OptionHandling.Ignored, "No effect."),
        new("low_vram", "boolean", OptionHandling.Ignored, "No effect."),
        new("draft_num_predict", "integer", OptionHandling.Ignored, "No effect: there is no draft model."),
        new("penalize_newline", "boolean", OptionHandling.Ignored, "No effect (Ollama itself no longer applies it)."),
        new("typical_p", "number", OptionHandling.Refused, "Typical sampling is not implemented; only 1 (off) is accepted.") { Neutral = 1 },
        new("mirostat", "integer", OptionHandling.Refused, "Mirostat sampling is not implemented; only 0 (off) is accepted.") { Neutral = 0 },
        new("mirostat_tau", "number", OptionHandling.Ignored, "No effect (only with `mirostat`)."),
        new("mirostat_eta", "number", OptionHandling.Ignored, "No effect (only with `mirostat`)."),
        new("tfs_z", "number", OptionHandling.Refused, "Tail-free sampling is not implemented (nor in Ollama now); only 1 (off) is accepted.") { Neutral = 1 },
    ];

    private static readonly Dictionary<string, OllamaOption> ByName = Table.ToDictionary(o => o.Name, StringComparer.Ordinal);

    /// <summary>The sampling, length and stop a request's options ask for, over <paramref name="defaults"/> (the model's).</summary>
    public static (SamplingParameters Sampling, int? MaxTokens, IReadOnlyList<string> Stop) Read(JsonElement? options, SamplingParameters defaults)
    {
        if (options is not { } map || map.ValueKind == JsonValueKind.Null)
        {
            return (defaults, null, []);
        }

        if (map.ValueKind != JsonValueKind.Object)
        {
            throw OllamaResults.BadRequest("options must be an object");
        }

        var sampling = defaults;
        int? maxTokens = null;
        IReadOnlyList<string> stop = [];
        foreach (var entry in map.EnumerateObject())
        {
            if (!ByName.TryGetValue(entry.Name, out var option) || entry.Value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            var value = entry.Value;
            switch (option.Name)
            {
                case "temperature": sampling = sampling with { Temperature = Float(option, value) }; break;
                case "top_p": sampling = sampling with { TopP = Float(option, value) }; break;
                case "top_k": sampling = sampling with { TopK = Integer(option, value) }; break;
                case "min_p": sampling = sampling with { MinP = Float(option, value) }; break;
                case "repeat_penalty": sampling = sampling with { RepeatPenalty = Float(option, value) }; break;
                case "repeat_last_n": sampling = sampling with { RepeatLastN = Integer(option, value) }; break;
                case "presence_penalty": sampling = sampling with { PresencePenalty = Float(option, value) }; break;
                case "frequency_penalty": sampling = sampling with { FrequencyPenalty = Float(option, value) }; break;
                case "seed":
                    var seed = Long(option, value);
                    sampling = sampling with
                    {
                        Seed = seed switch
                        {
                            < 0 => null,
                            <= uint.MaxValue => (uint)seed,
                            _ => throw OllamaResults.BadRequest($"option \"seed\" must be -1 (random) or from 0 to {uint.MaxValue}"),
                        },
                    };
                    break;
                case "num_predict":
                    var predict = Integer(option, value);
                    // Ollama's "no limit" and "fill the context" take the host's default cap, as an absent num_predict does.
                    maxTokens = predict is -1 or -2 ? null : predict;
                    break;
                case "stop": stop = Strings(option, value); break;
                case "num_ctx":
                    if (Integer(option, value) < 1)
                    {
                        throw OllamaResults.BadRequest("option \"num_ctx\" must be a positive integer");
                    }

                    break;
                default:
                    Check(option, value);
                    break;
            }
        }

        return (sampling, maxTokens, stop);
    }

    private static void Check(OllamaOption option, JsonElement value)
    {
        switch (option.Kind)
        {
            case "boolean" when value.ValueKind is not (JsonValueKind.True or JsonValueKind.False):
                throw TypeError(option);
            case "integer":
                Long(option, value);
                break;
            case "number":
                Float(option, value);
                break;
        }

        if (option is { Handling: OptionHandling.Refused, Neutral: { } neutral } && value.GetDouble() != neutral)
        {
            throw OllamaResults.BadRequest($"option \"{option.Name}\" is not supported by EdgeServer: {option.Behaviour}");
        }
    }

    private static float Float(OllamaOption option, JsonElement value) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var number) && double.IsFinite(number)
            ? (float)number
            : throw TypeError(option);

    private static int Integer(OllamaOption option, JsonElement value)
    {
        var number = Long(option, value);
        return number is >= int.MinValue and <= int.MaxValue ? (int)number : throw OllamaResults.BadRequest($"option \"{option.Name}\" is out of range: {number}");
    }

    /// <summary>An integer; a number with a fraction is cut to its integer, as Ollama does.</summary>
    private static long Long(OllamaOption option, JsonElement value)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var integer))
        {
            return integer;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var number) && Math.Abs(number) < long.MaxValue
            ? (long)Math.Truncate(number)
            : throw TypeError(option);
    }

    private static List<string> Strings(OllamaOption option, JsonElement value)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            return [WireReader.Text(value, "options.stop")];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw TypeError(option);
        }

        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            list.Add(item.ValueKind == JsonValueKind.String ? WireReader.Text(item, "options.stop") : throw OllamaResults.BadRequest($"option \"{option.Name}\" must be an array of strings"));
        }

        return list;
    }

    private static OpenAiException TypeError(OllamaOption option) =>
        OllamaResults.BadRequest(string.Create(CultureInfo.InvariantCulture, $"option \"{option.Name}\" must be of type {option.Kind}"));
}

/// <summary>
/// How Ollama's requests name the engine's fields in errors: sampling fields under <c>options</c> (num_predict for
/// the length), the output format as <c>format</c>; for /api/generate the rendered messages are <c>system</c> and
/// <c>prompt</c>.
/// </summary>
internal sealed class OllamaFieldNames(bool generate) : IFieldNames
{
    public static OllamaFieldNames Chat { get; } = new(generate: false);

    public static OllamaFieldNames Generate { get; } = new(generate: true);

    public string Name(FieldRef field) => field.Field switch
    {
        GenerationField.MaxTokens => "options.num_predict",
        GenerationField.Temperature or GenerationField.TopP or GenerationField.TopK or GenerationField.MinP or GenerationField.RepeatPenalty
            or GenerationField.RepeatLastN or GenerationField.PresencePenalty or GenerationField.FrequencyPenalty or GenerationField.Seed
            or GenerationField.Stop => "options." + FieldNames.Snake(field.Field),
        GenerationField.ResponseFormat or GenerationField.ResponseFormatSchema => "format",
        GenerationField.Messages or GenerationField.MessageContent or GenerationField.MessageRole when generate => "prompt",
        GenerationField.EmbeddingInput => field.Index < 0 ? "input" : $"input[{field.Index}]",
        _ => FieldNames.Canonical.Name(field),
    };

    public string Setting(GenerationLimit limit) => LimitSettings.Name(limit);
}
