using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// Wire-level reading shared by every API's mapper: JSON shapes and types, strings (valid UTF-8), unknown and
/// refused fields. What the values mean is checked by the engine (<see cref="GenerationRequestValidator"/>).
/// </summary>
internal static class WireReader
{
    public static OpenAiException Unknown(string param) =>
        OpenAiException.InvalidRequest($"Unrecognized request argument supplied: {param}", param, "unknown_parameter");

    public static OpenAiException Unsupported(string param, string why) =>
        OpenAiException.InvalidRequest($"'{param}' is not supported by EdgeServer: {why}", param, "unsupported_parameter");

    /// <summary>OpenAI's answer to a field it does not know, naming it (for objects without a field table).</summary>
    public static void RejectUnrecognized(Dictionary<string, JsonElement>? unrecognized, string prefix)
    {
        if (unrecognized is { Count: > 0 })
        {
            throw Unknown(prefix + unrecognized.Keys.First());
        }
    }

    public static string RequireModel(string? model) =>
        string.IsNullOrEmpty(model) ? throw OpenAiException.MissingParameter("model") : model;

    /// <summary>A JSON string as text; one holding invalid UTF-8 is a 400 for that field.</summary>
    public static string Text(JsonElement value, string param)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw OpenAiException.InvalidRequest($"Invalid value for '{param}': the text is not valid UTF-8.", param, "invalid_utf8");
        }
    }

    /// <summary>
    /// A message's content: a string, or an array of text parts whose type is one of <paramref name="partTypes"/>.
    /// Null or absent gives null.
    /// </summary>
    public static string? Content(JsonElement? content, string param, params string[] partTypes)
    {
        if (content is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return Text(value, param);
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.InvalidType(param, "a string or an array of content parts");
        }

        var text = new StringBuilder();
        var index = 0;
        foreach (var part in value.EnumerateArray())
        {
            var partParam = $"{param}[{index++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.InvalidType(partParam, "a content part object with a 'type'");
            }

            var partType = Text(type, partParam + ".type");
            if (!partTypes.Contains(partType))
            {
                throw OpenAiException.InvalidRequest($"Invalid content part type '{partType}' in '{partParam}': EdgeServer serves text models, so only {string.Join(" and ", partTypes.Select(t => $"'{t}'"))} parts are accepted.", partParam + ".type", "invalid_value");
            }

            if (!part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.MissingParameter(partParam + ".text");
            }

            text.Append(Text(partText, partParam + ".text"));
        }

        return text.ToString();
    }

    /// <summary>A string or an array of strings.</summary>
    public static List<string> Stop(JsonElement? stop)
    {
        if (stop is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return [Text(value, "stop")];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.InvalidType("stop", "a string or an array of strings");
        }

        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            list.Add(item.ValueKind == JsonValueKind.String ? Text(item, "stop") : throw OpenAiException.InvalidType("stop", "a string or an array of strings"));
        }

        return list;
    }

    /// <summary>An object of token ids (as strings) to numbers.</summary>
    public static Dictionary<int, float> LogitBias(JsonElement? value)
    {
        var bias = new Dictionary<int, float>();
        if (value is not { } map || map.ValueKind == JsonValueKind.Null)
        {
            return bias;
        }

        if (map.ValueKind != JsonValueKind.Object)
        {
            throw OpenAiException.InvalidType("logit_bias", "an object mapping token ids to numbers");
        }

        foreach (var entry in map.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out var token))
            {
                throw OpenAiException.InvalidRequest($"Invalid key in 'logit_bias': '{entry.Name}'. Keys are token ids (use /tokenize to find them).", "logit_bias", "invalid_value");
            }

            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetSingle(out var b))
            {
                throw OpenAiException.InvalidRequest($"Invalid value in 'logit_bias' for token {token}: it must be a number.", "logit_bias", "invalid_value");
            }

            bias[token] = b;
        }

        return bias;
    }

    /// <summary>-1 or absent: random; otherwise a 32-bit seed.</summary>
    public static uint? Seed(long? seed) => seed switch
    {
        null or -1 => null,
        >= 0 and <= uint.MaxValue => (uint)seed.Value,
        _ => throw OpenAiException.InvalidRequest($"Invalid 'seed': {seed}. Use -1 (random) or a value from 0 to {uint.MaxValue}.", "seed", "invalid_value"),
    };
}
