using System.Text;
using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// The one place that says which request fields EdgeServer reads, their aliases, ranges and defaults, and how
/// they become a <see cref="GenerationRequest"/>. Range checks of sampling values live in the engine.
/// </summary>
internal static class RequestMapper
{
    public const int MaxStopSequences = 4;
    public const int CompletionsDefaultMaxTokens = 16;
    private static readonly HashSet<string> Roles = new(StringComparer.Ordinal) { "system", "developer", "user", "assistant", "tool" };

    public static GenerationRequest FromChat(ChatCompletionRequest body)
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
            // Chat templates know "system"; "developer" is OpenAI's newer name for it.
            messages.Add(new ChatMessage(m.Role == "developer" ? "system" : m.Role, content));
        }

        var maxTokens = body.MaxCompletionTokens ?? body.MaxTokens;
        var param = body.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        return Common(body, model, maxTokens, param) with { Messages = messages };
    }

    public static GenerationRequest FromCompletion(CompletionRequest body)
    {
        var model = RequireModel(body);
        if (body.Prompt is not { } prompt || prompt.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("prompt");
        }

        var text = prompt.ValueKind switch
        {
            JsonValueKind.String => prompt.GetString()!,
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String => prompt[0].GetString()!,
            JsonValueKind.Array => throw OpenAiException.InvalidRequest("'prompt' as an array must hold exactly one string; batches of prompts and token arrays are not supported.", "prompt", "invalid_value"),
            _ => throw OpenAiException.InvalidType("prompt", "a string"),
        };

        if (text.Length == 0)
        {
            throw OpenAiException.InvalidRequest("'prompt' must not be empty.", "prompt", "invalid_value");
        }

        return Common(body, model, body.MaxTokens ?? CompletionsDefaultMaxTokens, "max_tokens") with { Prompt = text };
    }

    public static bool IsStreaming(GenerationRequestDto body) => body.Stream == true;

    public static bool IncludeUsage(GenerationRequestDto body) => body.StreamOptions?.IncludeUsage == true;

    private static string RequireModel(GenerationRequestDto body) =>
        string.IsNullOrEmpty(body.Model) ? throw OpenAiException.MissingParameter("model") : body.Model;

    private static GenerationRequest Common(GenerationRequestDto body, string model, int? maxTokens, string maxTokensParam)
    {
        if (maxTokens is < 1)
        {
            throw OpenAiException.InvalidRequest($"Invalid '{maxTokensParam}': integer below minimum value. Expected a value >= 1, but got {maxTokens} instead.", maxTokensParam, "integer_below_min_value");
        }

        if (body.N is { } n && n != 1)
        {
            throw OpenAiException.InvalidRequest($"Invalid 'n': {n}. EdgeServer generates one choice per request (n = 1).", "n", "invalid_value");
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
            Stop = ReadStop(body.Stop),
            Sampling = sampling,
            IgnoreEos = body.IgnoreEos == true,
        };
    }

    private static List<string> ReadStop(JsonElement? stop)
    {
        if (stop is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return [value.GetString()!];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.InvalidType("stop", "a string or an array of strings");
        }

        if (value.GetArrayLength() > MaxStopSequences)
        {
            throw OpenAiException.InvalidRequest($"Invalid 'stop': at most {MaxStopSequences} stop sequences are allowed; got {value.GetArrayLength()}.", "stop", "invalid_value");
        }

        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.InvalidType("stop", "a string or an array of strings");
            }

            list.Add(item.GetString()!);
        }

        return list;
    }

    private static string ReadContent(JsonElement? content, string param, bool allowNull)
    {
        if (content is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return allowNull ? string.Empty : throw OpenAiException.MissingParameter(param);
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString()!;
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

            text.Append(partText.GetString());
        }

        return text.ToString();
    }
}
