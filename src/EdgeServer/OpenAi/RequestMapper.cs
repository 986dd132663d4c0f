using System.Text;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// The one place that says which request fields EdgeServer reads, their aliases, ranges and defaults, and how
/// they become a <see cref="GenerationRequest"/>. Range checks of sampling values live in the engine.
/// </summary>
internal static class RequestMapper
{
    public const int CompletionsDefaultMaxTokens = 16;
    private static readonly HashSet<string> Roles = new(StringComparer.Ordinal) { "system", "developer", "user", "assistant", "tool" };

    public static GenerationRequest FromChat(ChatCompletionRequest body, LimitsOptions limits)
    {
        var model = RequireModel(body);
        if (body.Messages is null)
        {
            throw OpenAiException.MissingParameter("messages");
        }

        if (body.Messages.Count == 0)
        {
            throw OpenAiException.InvalidRequest("'messages' must contain at least one message.", "messages", "invalid_value");
        }

        if (body.Messages.Count > limits.MaxMessages)
        {
            throw Limit("messages", $"'messages' has {body.Messages.Count} messages", limits.MaxMessages, nameof(limits.MaxMessages));
        }

        var messages = new List<ChatMessage>(body.Messages.Count);
        for (var i = 0; i < body.Messages.Count; i++)
        {
            var m = body.Messages[i] ?? throw OpenAiException.InvalidType($"messages[{i}]", "an object");
            if (m.Role is null)
            {
                throw OpenAiException.MissingParameter($"messages[{i}].role");
            }

            if (!Roles.Contains(m.Role))
            {
                throw OpenAiException.InvalidRequest($"Invalid value for 'messages[{i}].role': '{m.Role}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.", $"messages[{i}].role", "invalid_value");
            }

            var content = ReadContent(m.Content, $"messages[{i}].content", allowNull: m.Role == "assistant");
            if (content.Length > limits.MaxMessageChars)
            {
                throw Limit($"messages[{i}].content", $"'messages[{i}].content' has {content.Length} characters", limits.MaxMessageChars, nameof(limits.MaxMessageChars));
            }

            // Chat templates know "system"; "developer" is OpenAI's newer name for it.
            messages.Add(new ChatMessage(m.Role == "developer" ? "system" : m.Role, content));
        }

        var maxTokens = body.MaxCompletionTokens ?? body.MaxTokens;
        var param = body.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        return Common(body, model, maxTokens, param, limits) with { Messages = messages };
    }

    public static GenerationRequest FromCompletion(CompletionRequest body, LimitsOptions limits)
    {
        var model = RequireModel(body);
        if (body.Prompt is not { } prompt || prompt.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("prompt");
        }

        var text = prompt.ValueKind switch
        {
            JsonValueKind.String => Text(prompt, "prompt"),
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String => Text(prompt[0], "prompt"),
            JsonValueKind.Array => throw OpenAiException.InvalidRequest("'prompt' as an array must hold exactly one string; batches of prompts and token arrays are not supported.", "prompt", "invalid_value"),
            _ => throw OpenAiException.InvalidType("prompt", "a string"),
        };

        if (text.Length == 0)
        {
            throw OpenAiException.InvalidRequest("'prompt' must not be empty.", "prompt", "invalid_value");
        }

        if (text.Length > limits.MaxMessageChars)
        {
            throw Limit("prompt", $"'prompt' has {text.Length} characters", limits.MaxMessageChars, nameof(limits.MaxMessageChars));
        }

        return Common(body, model, body.MaxTokens ?? Math.Min(CompletionsDefaultMaxTokens, limits.MaxTokens), "max_tokens", limits) with { Prompt = text };
    }

    public static bool IsStreaming(GenerationRequestDto body) => body.Stream == true;

    public static bool IncludeUsage(GenerationRequestDto body) => body.StreamOptions?.IncludeUsage == true;

    private static string RequireModel(GenerationRequestDto body) =>
        string.IsNullOrEmpty(body.Model) ? throw OpenAiException.MissingParameter("model") : body.Model;

    private static GenerationRequest Common(GenerationRequestDto body, string model, int? maxTokens, string maxTokensParam, LimitsOptions limits)
    {
        if (maxTokens is < 1)
        {
            throw OpenAiException.InvalidRequest($"Invalid '{maxTokensParam}': integer below minimum value. Expected a value >= 1, but got {maxTokens} instead.", maxTokensParam, "integer_below_min_value");
        }

        if (maxTokens > limits.MaxTokens)
        {
            throw Limit(maxTokensParam, $"'{maxTokensParam}' is {maxTokens}", limits.MaxTokens, nameof(limits.MaxTokens));
        }

        if (body.N is { } n && n < 1)
        {
            throw OpenAiException.InvalidRequest($"Invalid 'n': {n}. It must be at least 1.", "n", "integer_below_min_value");
        }

        if (body.N > limits.MaxN)
        {
            throw Limit("n", $"'n' is {body.N}", limits.MaxN, nameof(limits.MaxN));
        }

        if (body.N > 1)
        {
            throw OpenAiException.InvalidRequest($"Invalid 'n': {body.N}. EdgeServer generates one choice per request (n = 1).", "n", "invalid_value");
        }

        if (body.StreamOptions is not null && body.Stream != true)
        {
            throw OpenAiException.InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "invalid_value");
        }

        uint? seed = body.Seed switch
        {
            null or -1 => null,
            >= 0 and <= uint.MaxValue => (uint)body.Seed.Value,
            _ => throw OpenAiException.InvalidRequest($"Invalid 'seed': {body.Seed}. Use -1 (random) or a value from 0 to {uint.MaxValue}.", "seed", "invalid_value"),
        };

        var defaults = SamplingParameters.Default;
        var sampling = new SamplingParameters
        {
            Temperature = body.Temperature ?? defaults.Temperature,
            TopP = body.TopP ?? defaults.TopP,
            TopK = body.TopK ?? defaults.TopK,
            MinP = body.MinP ?? defaults.MinP,
            RepeatPenalty = body.RepeatPenalty ?? defaults.RepeatPenalty,
            PresencePenalty = body.PresencePenalty ?? defaults.PresencePenalty,
            FrequencyPenalty = body.FrequencyPenalty ?? defaults.FrequencyPenalty,
            Seed = seed,
        };

        return new GenerationRequest
        {
            Model = model,
            MaxTokens = maxTokens,
            Stop = ReadStop(body.Stop, limits),
            Sampling = sampling,
            IgnoreEos = body.IgnoreEos == true,
        };
    }

    private static List<string> ReadStop(JsonElement? stop, LimitsOptions limits)
    {
        if (stop is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        var list = new List<string>();
        if (value.ValueKind == JsonValueKind.String)
        {
            list.Add(Text(value, "stop"));
        }
        else if (value.ValueKind == JsonValueKind.Array)
        {
            if (value.GetArrayLength() > limits.MaxStopSequences)
            {
                throw Limit("stop", $"'stop' has {value.GetArrayLength()} sequences", limits.MaxStopSequences, nameof(limits.MaxStopSequences));
            }

            foreach (var item in value.EnumerateArray())
            {
                list.Add(item.ValueKind == JsonValueKind.String ? Text(item, "stop") : throw OpenAiException.InvalidType("stop", "a string or an array of strings"));
            }
        }
        else
        {
            throw OpenAiException.InvalidType("stop", "a string or an array of strings");
        }

        if (list.FirstOrDefault(s => s.Length > limits.MaxStopLength) is { } tooLong)
        {
            throw Limit("stop", $"a stop sequence has {tooLong.Length} characters", limits.MaxStopLength, nameof(limits.MaxStopLength));
        }

        return list;
    }

    /// <summary>A JSON string as text; one holding invalid UTF-8 is a 400 for that field.</summary>
    private static string Text(JsonElement value, string param)
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

    /// <summary>A 400 that names the limit and the setting that raises it.</summary>
    private static OpenAiException Limit(string param, string what, int limit, string setting) =>
        OpenAiException.InvalidRequest($"{what}; the limit is {limit} (setting EdgeServer:Limits:{setting}).", param, "limit_exceeded");

    private static string ReadContent(JsonElement? content, string param, bool allowNull)
    {
        if (content is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return allowNull ? string.Empty : throw OpenAiException.MissingParameter(param);
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

            if (type.GetString() != "text")
            {
                throw OpenAiException.InvalidRequest($"Invalid content part type '{type.GetString()}' in '{partParam}': EdgeServer serves text models, so only 'text' parts are accepted.", partParam + ".type", "invalid_value");
            }

            if (!part.TryGetProperty("text", out var partText) || partText.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.MissingParameter(partParam + ".text");
            }

            text.Append(Text(partText, partParam + ".text"));
        }

        return text.ToString();
    }
}
