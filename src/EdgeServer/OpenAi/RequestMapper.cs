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
    private const int MaxTools = 128;

    /// <summary>OpenAI's limit for function names; its spec gives none for a message's name, so the same one.</summary>
    private const int MaxNameLength = 64;
    private static readonly HashSet<string> Roles = new(StringComparer.Ordinal) { "system", "developer", "user", "assistant", "tool" };

    public static GenerationRequest FromChat(ChatCompletionRequest body, LimitsOptions limits)
    {
        RejectUnrecognized(body.Unrecognized, string.Empty);
        RejectUnsupported(body);
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
            messages.Add(ReadMessage(body.Messages[i], i, limits));
        }

        var tools = ReadTools(body.Tools);
        var toolChoice = ReadToolChoice(body.ToolChoice, tools.Count > 0);
        var logprobs = body.Logprobs == true;
        var maxTokens = body.MaxCompletionTokens ?? body.MaxTokens;
        var param = body.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        return Common(body, model, maxTokens, param, limits) with
        {
            Messages = messages,
            Tools = tools,
            ToolChoice = toolChoice,
            ParallelToolCalls = body.ParallelToolCalls ?? false,
            ResponseFormat = ReadResponseFormat(body.ResponseFormat),
            Logprobs = logprobs,
            TopLogprobs = body.TopLogprobs ?? 0,
        };
    }

    private static ChatMessage ReadMessage(ChatMessageDto? m, int i, LimitsOptions limits)
    {
        var at = $"messages[{i}]";
        if (m is null)
        {
            throw OpenAiException.InvalidType(at, "an object");
        }

        RejectUnrecognized(m.Unrecognized, at + ".");
        if (m.Role is null)
        {
            throw OpenAiException.MissingParameter($"{at}.role");
        }

        if (!Roles.Contains(m.Role))
        {
            throw OpenAiException.InvalidRequest($"Invalid value for '{at}.role': '{m.Role}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.", $"{at}.role", "invalid_value");
        }

        if (m.Audio is { ValueKind: not JsonValueKind.Null })
        {
            throw Unsupported($"{at}.audio", "EdgeServer serves text models, so messages carry no audio.");
        }

        if (m.FunctionCall is { ValueKind: not JsonValueKind.Null })
        {
            throw Unsupported($"{at}.function_call", "The deprecated function_call is not supported; send 'tool_calls'.");
        }

        var calls = m.ToolCalls is { Count: > 0 } ? ReadToolCalls(m, at) : null;
        if (calls is not null && m.Role != "assistant")
        {
            throw OpenAiException.InvalidRequest($"'{at}.tool_calls' is only allowed on assistant messages.", $"{at}.tool_calls", "invalid_value");
        }

        if (m.Role == "tool" && string.IsNullOrEmpty(m.ToolCallId))
        {
            throw OpenAiException.MissingParameter($"{at}.tool_call_id");
        }

        if (m.Name is { Length: > MaxNameLength } name)
        {
            throw OpenAiException.InvalidRequest(
                $"Invalid '{at}.name': string too long. Expected a string with maximum length {MaxNameLength}, but got a string with length {name.Length} instead.",
                $"{at}.name", "string_above_max_length");
        }

        var content = ReadContent(m.Content, $"{at}.content", allowNull: m.Role == "assistant");
        if (content.Length > limits.MaxMessageChars)
        {
            throw Limit($"{at}.content", $"'{at}.content' has {content.Length} characters", limits.MaxMessageChars, nameof(limits.MaxMessageChars));
        }

        // Chat templates know "system"; "developer" is OpenAI's newer name for it.
        var role = m.Role == "developer" ? "system" : m.Role;
        var isNull = m.Content is null || m.Content.Value.ValueKind == JsonValueKind.Null;
        return new ChatMessage(role, isNull && calls is not null ? null : content)
        {
            ToolCalls = calls,
            ToolCallId = m.Role == "tool" ? m.ToolCallId : null,
            Name = m.Name,
        };
    }

    private static List<ToolCall> ReadToolCalls(ChatMessageDto m, string at)
    {
        var calls = new List<ToolCall>();
        for (var j = 0; j < m.ToolCalls!.Count; j++)
        {
            var call = m.ToolCalls[j] ?? throw OpenAiException.InvalidType($"{at}.tool_calls[{j}]", "an object");
            var p = $"{at}.tool_calls[{j}]";
            if (string.IsNullOrEmpty(call.Id))
            {
                throw OpenAiException.MissingParameter(p + ".id");
            }

            if (call.Type is not (null or "function"))
            {
                throw OpenAiException.InvalidRequest($"Invalid value for '{p}.type': '{call.Type}'. Only 'function' is supported.", p + ".type", "invalid_value");
            }

            if (call.Function?.Name is not { Length: > 0 } name)
            {
                throw OpenAiException.MissingParameter(p + ".function.name");
            }

            CheckFunctionName(name, p + ".function.name");
            calls.Add(new ToolCall(call.Id, name, call.Function.Arguments ?? "{}"));
        }

        return calls;
    }

    private static List<ToolDefinition> ReadTools(List<ToolDto?>? tools)
    {
        if (tools is null)
        {
            return [];
        }

        if (tools.Count > MaxTools)
        {
            throw OpenAiException.InvalidRequest($"'tools' has {tools.Count} tools; the limit is {MaxTools}.", "tools", "array_above_max_length");
        }

        var result = new List<ToolDefinition>(tools.Count);
        for (var i = 0; i < tools.Count; i++)
        {
            var at = $"tools[{i}]";
            var tool = tools[i] ?? throw OpenAiException.InvalidType(at, "an object");
            if (tool.Type != "function")
            {
                throw OpenAiException.InvalidRequest($"Invalid value for '{at}.type': '{tool.Type}'. EdgeServer supports 'function' tools.", at + ".type", "invalid_value");
            }

            RejectUnrecognized(tool.Unrecognized, at + ".");

            var function = tool.Function ?? throw OpenAiException.MissingParameter(at + ".function");
            RejectUnrecognized(function.Unrecognized, at + ".function.");
            if (string.IsNullOrEmpty(function.Name))
            {
                throw OpenAiException.MissingParameter(at + ".function.name");
            }

            CheckFunctionName(function.Name, at + ".function.name");
            var parameters = "{\"type\":\"object\",\"properties\":{}}";
            if (function.Parameters is { ValueKind: not JsonValueKind.Null } schema)
            {
                if (schema.ValueKind != JsonValueKind.Object)
                {
                    throw OpenAiException.InvalidType(at + ".function.parameters", "a JSON Schema object");
                }

                parameters = schema.GetRawText();
            }

            result.Add(new ToolDefinition(function.Name, function.Description, parameters, function.Strict == true));
        }

        return result;
    }

    /// <summary>OpenAI's rule for function names, ^[a-zA-Z0-9_-]{1,64}$, for tools and for the calls that name them.</summary>
    private static void CheckFunctionName(string name, string param)
    {
        if (name.Length > MaxNameLength || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            var shown = name.Length > MaxNameLength ? name[..MaxNameLength] + "..." : name;
            throw OpenAiException.InvalidRequest($"Invalid '{param}': '{shown}'. Names are 1 to {MaxNameLength} characters of a-z, A-Z, 0-9, underscores and dashes.", param, "invalid_value");
        }
    }

    private static ToolChoice ReadToolChoice(JsonElement? value, bool haveTools)
    {
        if (value is not { } choice || choice.ValueKind == JsonValueKind.Null)
        {
            return haveTools ? ToolChoice.Auto : new ToolChoice(ToolChoiceMode.None);
        }

        if (choice.ValueKind == JsonValueKind.String)
        {
            return Text(choice, "tool_choice") switch
            {
                "auto" => ToolChoice.Auto,
                "none" => new ToolChoice(ToolChoiceMode.None),
                "required" => new ToolChoice(ToolChoiceMode.Required),
                var other => throw OpenAiException.InvalidRequest($"Invalid value for 'tool_choice': '{other}'. Supported values are: 'none', 'auto', 'required' or an object naming a function.", "tool_choice", "invalid_value"),
            };
        }

        if (choice.ValueKind == JsonValueKind.Object
            && choice.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() == "function"
            && choice.TryGetProperty("function", out var function) && function.ValueKind == JsonValueKind.Object
            && function.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
        {
            return new ToolChoice(ToolChoiceMode.Function, Text(name, "tool_choice.function.name"));
        }

        throw OpenAiException.InvalidRequest("Invalid 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice", "invalid_value");
    }

    private static ResponseFormat ReadResponseFormat(ResponseFormatDto? format)
    {
        if (format is null)
        {
            return ResponseFormat.Text;
        }

        RejectUnrecognized(format.Unrecognized, "response_format.");
        switch (format.Type)
        {
            case null:
                throw OpenAiException.MissingParameter("response_format.type");
            case "text":
                return ResponseFormat.Text;
            case "json_object":
                return new ResponseFormat(ResponseFormatKind.JsonObject);
            case "json_schema":
                var spec = format.JsonSchema ?? throw OpenAiException.MissingParameter("response_format.json_schema");
                RejectUnrecognized(spec.Unrecognized, "response_format.json_schema.");
                if (string.IsNullOrEmpty(spec.Name))
                {
                    throw OpenAiException.MissingParameter("response_format.json_schema.name");
                }

                if (spec.Schema is not { ValueKind: not JsonValueKind.Null } schema)
                {
                    return new ResponseFormat(ResponseFormatKind.JsonObject);
                }

                return schema.ValueKind == JsonValueKind.Object
                    ? new ResponseFormat(ResponseFormatKind.JsonSchema, schema.GetRawText())
                    : throw OpenAiException.InvalidType("response_format.json_schema.schema", "a JSON Schema object");
            default:
                throw OpenAiException.InvalidRequest($"Invalid value for 'response_format.type': '{format.Type}'. Supported values are: 'text', 'json_object' and 'json_schema'.", "response_format.type", "invalid_value");
        }
    }

    /// <summary>OpenAI's answer to a field it does not know, naming it.</summary>
    internal static void RejectUnrecognized(Dictionary<string, JsonElement>? unrecognized, string prefix)
    {
        if (unrecognized is { Count: > 0 })
        {
            var name = prefix + unrecognized.Keys.First();
            throw OpenAiException.InvalidRequest($"Unrecognized request argument supplied: {name}", name, "unknown_parameter");
        }
    }

    internal static OpenAiException Unsupported(string param, string why) =>
        OpenAiException.InvalidRequest($"'{param}' is not supported by EdgeServer: {why}", param, "unsupported_parameter");

    /// <summary>Refuses the first field that is set (not absent, not null), with why EdgeServer cannot honour it.</summary>
    internal static void RejectSet(params (string Name, JsonElement? Value, string Why)[] fields)
    {
        foreach (var (name, value, why) in fields)
        {
            if (value is { ValueKind: not JsonValueKind.Null })
            {
                throw Unsupported(name, why);
            }
        }
    }

    /// <summary>Fields of OpenAI's request that EdgeServer cannot honour: set to anything but null, they are refused.</summary>
    private static void RejectUnsupported(ChatCompletionRequest body)
    {
        RejectSet(
            ("audio", body.Audio, "EdgeServer serves text models; there is no audio output."),
            ("prediction", body.Prediction, "predicted outputs are not implemented."),
            ("web_search_options", body.WebSearchOptions, "EdgeServer runs offline and does not search the web."),
            ("reasoning_effort", body.ReasoningEffort, "the models it serves have no adjustable reasoning effort."),
            ("verbosity", body.Verbosity, "the models it serves have no verbosity setting."),
            ("moderation", body.Moderation, "EdgeServer has no moderation model."),
            ("functions", body.Functions, "the deprecated functions are not supported; send 'tools'."),
            ("function_call", body.FunctionCall, "the deprecated function_call is not supported; send 'tool_choice'."));

        if (body.Modalities is { } modalities && modalities.Any(m => m != "text"))
        {
            throw Unsupported("modalities", "EdgeServer produces text only; use [\"text\"] or leave it out.");
        }

        if (body.Metadata is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Object) })
        {
            throw OpenAiException.InvalidType("metadata", "an object of strings");
        }
    }

    public static GenerationRequest FromCompletion(CompletionRequest body, LimitsOptions limits)
    {
        RejectUnrecognized(body.Unrecognized, string.Empty);
        if (body.Echo == true)
        {
            throw Unsupported("echo", "the prompt is not echoed back; leave 'echo' out or false.");
        }

        if (!string.IsNullOrEmpty(body.Suffix))
        {
            throw Unsupported("suffix", "insertion (fill-in-the-middle) is not implemented.");
        }

        if (body.BestOf is { } bestOf && bestOf != (body.N ?? 1))
        {
            throw Unsupported("best_of", "choices are not generated server-side and ranked; use 'n'.");
        }

        if (body.Logprobs is < 0 or > 5)
        {
            throw OpenAiException.InvalidRequest($"Invalid 'logprobs': {body.Logprobs}. It must be from 0 to 5.", "logprobs", "invalid_value");
        }

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

        return Common(body, model, body.MaxTokens ?? Math.Min(CompletionsDefaultMaxTokens, limits.MaxTokens), "max_tokens", limits) with
        {
            Prompt = text,
            Logprobs = body.Logprobs is not null,
            TopLogprobs = body.Logprobs ?? 0,
        };
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
            LogitBias = ReadLogitBias(body.LogitBias),
        };
    }

    /// <summary>n: how many choices to generate for the request, side by side.</summary>
    public static int Choices(GenerationRequestDto body) => body.N ?? 1;

    private static Dictionary<int, float> ReadLogitBias(JsonElement? value)
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
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var token))
            {
                throw OpenAiException.InvalidRequest($"Invalid key in 'logit_bias': '{entry.Name}'. Keys are token ids (use /tokenize to find them).", "logit_bias", "invalid_value");
            }

            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetSingle(out var b) || b is < -100 or > 100)
            {
                throw OpenAiException.InvalidRequest($"Invalid value in 'logit_bias' for token {token}: it must be a number from -100 to 100.", "logit_bias", "invalid_value");
            }

            bias[token] = b;
        }

        return bias;
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
    internal static string Text(JsonElement value, string param)
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
    internal static OpenAiException Limit(string param, string what, int limit, string setting) =>
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
