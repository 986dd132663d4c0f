using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// A request of the chat or legacy completions API becomes a <see cref="GenerationRequest"/>: wire shapes and types
/// are read here against <see cref="RequestFields.Chat"/> and <see cref="RequestFields.Completions"/>; what the
/// values mean the engine checks. Errors about fields are named by the returned <see cref="IFieldNames"/>.
/// </summary>
internal static class ChatMapper
{
    public const int CompletionsDefaultMaxTokens = 16;

    private static readonly Dictionary<string, string> Roles = new(StringComparer.Ordinal)
    {
        ["system"] = "system",
        ["developer"] = "system", // OpenAI's newer name for it; chat templates know "system"
        ["user"] = "user",
        ["assistant"] = "assistant",
        ["tool"] = "tool",
    };

    /// <param name="defaults">The sampling of the fields the request leaves out: the model's (<see cref="GenerationRunner.DefaultSampling"/>).</param>
    public static (GenerationRequest Request, IFieldNames Names) FromChat(ChatCompletionRequest body, SamplingParameters defaults)
    {
        RequestFields.Chat.RejectUnbound(body.Unrecognized);
        if (body.Modalities is { } modalities && modalities.Any(m => m != "text"))
        {
            throw WireReader.Unsupported("modalities", "EdgeServer produces text only; use [\"text\"] or leave it out.");
        }

        if (body.Metadata is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Object) })
        {
            throw OpenAiException.InvalidType("metadata", "an object of strings");
        }

        var model = WireReader.RequireModel(body.Model);
        if (body.Messages is null)
        {
            throw OpenAiException.MissingParameter("messages");
        }

        var messages = new List<ChatMessage>(body.Messages.Count);
        for (var i = 0; i < body.Messages.Count; i++)
        {
            messages.Add(ReadMessage(body.Messages[i], i));
        }

        var tools = ReadTools(body.Tools);
        var names = new ApiFieldNames(RequestFields.Chat, body.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens");
        return (Common(body, model, body.MaxCompletionTokens ?? body.MaxTokens, defaults) with
        {
            Messages = messages,
            Tools = tools,
            ToolChoice = ReadToolChoice(body.ToolChoice, tools.Count > 0),
            ParallelToolCalls = body.ParallelToolCalls ?? false,
            ResponseFormat = ReadResponseFormat(body.ResponseFormat, "response_format"),
            Logprobs = body.Logprobs == true,
            TopLogprobs = body.TopLogprobs ?? 0,
            ReasoningEffort = ReadReasoningEffort(body.ReasoningEffort, "reasoning_effort"),
        }, names);
    }

    /// <summary>OpenAI's reasoning effort levels (chat's reasoning_effort, the Responses API's reasoning.effort).</summary>
    internal static ReasoningEffort ReadReasoningEffort(string? value, string param) => value switch
    {
        null => ReasoningEffort.Default,
        "none" => ReasoningEffort.None,
        "minimal" => ReasoningEffort.Minimal,
        "low" => ReasoningEffort.Low,
        "medium" => ReasoningEffort.Medium,
        "high" => ReasoningEffort.High,
        "xhigh" => ReasoningEffort.XHigh,
        "max" => ReasoningEffort.Max,
        _ => throw OpenAiException.InvalidRequest($"Invalid value for '{param}': '{value}'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh' and 'max'.", param, "invalid_value"),
    };

    public static (GenerationRequest Request, IFieldNames Names) FromCompletion(CompletionRequest body, SamplingParameters defaults, int maxTokensLimit)
    {
        RequestFields.Completions.RejectUnbound(body.Unrecognized);
        if (body.BestOf is { } bestOf && bestOf != (body.N ?? 1))
        {
            throw WireReader.Unsupported("best_of", "choices are not generated server-side and ranked; use 'n'.");
        }

        var logprobs = RequestFields.Completions["logprobs"].Range!;
        if (body.Logprobs is { } top && !logprobs.Contains(top))
        {
            throw OpenAiException.InvalidRequest($"Invalid 'logprobs': {top}. It must be {logprobs.Describe()}.", "logprobs", "invalid_value");
        }

        var model = WireReader.RequireModel(body.Model);
        if (body.Prompt is not { } prompt || prompt.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("prompt");
        }

        var text = prompt.ValueKind switch
        {
            JsonValueKind.String => WireReader.Text(prompt, "prompt"),
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String => WireReader.Text(prompt[0], "prompt"),
            JsonValueKind.Array => throw OpenAiException.InvalidRequest("'prompt' as an array must hold exactly one string; batches of prompts and token arrays are not supported.", "prompt", "invalid_value"),
            _ => throw OpenAiException.InvalidType("prompt", "a string"),
        };

        return (Common(body, model, body.MaxTokens ?? Math.Min(CompletionsDefaultMaxTokens, maxTokensLimit), defaults) with
        {
            Prompt = text,
            Logprobs = body.Logprobs is not null,
            TopLogprobs = body.Logprobs ?? 0,
        }, CompletionFieldNames.Instance);
    }

    public static bool IsStreaming(GenerationRequestDto body) => body.Stream == true;

    public static bool IncludeUsage(GenerationRequestDto body) => body.StreamOptions?.IncludeUsage == true;

    /// <summary>The response format of chat's response_format, or of the Responses API's text.format (<paramref name="param"/>).</summary>
    internal static ResponseFormat ReadResponseFormat(ResponseFormatDto? format, string param)
    {
        if (format is null)
        {
            return ResponseFormat.Text;
        }

        WireReader.RejectUnrecognized(format.Unrecognized, param + ".");
        switch (format.Type)
        {
            case null:
                throw OpenAiException.MissingParameter(param + ".type");
            case "text":
                return ResponseFormat.Text;
            case "json_object":
                return new ResponseFormat(ResponseFormatKind.JsonObject);
            case "json_schema":
                var spec = format.JsonSchema ?? throw OpenAiException.MissingParameter(param + ".json_schema");
                var at = param == "response_format" ? param + ".json_schema" : param;
                WireReader.RejectUnrecognized(spec.Unrecognized, at + ".");
                if (string.IsNullOrEmpty(spec.Name))
                {
                    throw OpenAiException.MissingParameter(at + ".name");
                }

                if (spec.Schema is not { ValueKind: not JsonValueKind.Null } schema)
                {
                    return new ResponseFormat(ResponseFormatKind.JsonObject);
                }

                return schema.ValueKind == JsonValueKind.Object
                    ? new ResponseFormat(ResponseFormatKind.JsonSchema, schema.GetRawText())
                    : throw OpenAiException.InvalidType(at + ".schema", "a JSON Schema object");
            default:
                throw OpenAiException.InvalidRequest($"Invalid value for '{param}.type': '{format.Type}'. Supported values are: 'text', 'json_object' and 'json_schema'.", param + ".type", "invalid_value");
        }
    }

    /// <summary>A chat message's role as the engine knows it; "developer" is "system".</summary>
    internal static string ReadRole(string? role, string param) => role is null
        ? throw OpenAiException.MissingParameter(param)
        : Roles.GetValueOrDefault(role) ?? throw OpenAiException.InvalidRequest(
            $"Invalid value for '{param}': '{role}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.", param, "invalid_value");

    private static ChatMessage ReadMessage(ChatMessageDto? m, int i)
    {
        var at = $"messages[{i}]";
        if (m is null)
        {
            throw OpenAiException.InvalidType(at, "an object");
        }

        WireReader.RejectUnrecognized(m.Unrecognized, at + ".");
        var role = ReadRole(m.Role, $"{at}.role");
        if (m.Audio is { ValueKind: not JsonValueKind.Null })
        {
            throw WireReader.Unsupported($"{at}.audio", "EdgeServer serves text models, so messages carry no audio.");
        }

        if (m.FunctionCall is { ValueKind: not JsonValueKind.Null })
        {
            throw WireReader.Unsupported($"{at}.function_call", "The deprecated function_call is not supported; send 'tool_calls'.");
        }

        var calls = m.ToolCalls is { Count: > 0 } ? ReadToolCalls(m.ToolCalls, at) : null;
        var content = WireReader.Content(m.Content, $"{at}.content", "text");

        // An assistant turn may leave content out: empty text, or none at all when it only called tools.
        return new ChatMessage(role, content ?? (role == "assistant" && calls is null ? string.Empty : null))
        {
            ToolCalls = calls,
            ToolCallId = role == "tool" ? m.ToolCallId : null,
            Name = m.Name,
            Reasoning = role == "assistant" ? m.ReasoningContent ?? m.Reasoning : null,
        };
    }

    private static List<ToolCall> ReadToolCalls(List<ToolCallDto?> dtos, string at)
    {
        var calls = new List<ToolCall>(dtos.Count);
        for (var j = 0; j < dtos.Count; j++)
        {
            var p = $"{at}.tool_calls[{j}]";
            var call = dtos[j] ?? throw OpenAiException.InvalidType(p, "an object");
            if (call.Type is not (null or "function"))
            {
                throw OpenAiException.InvalidRequest($"Invalid value for '{p}.type': '{call.Type}'. Only 'function' is supported.", p + ".type", "invalid_value");
            }

            calls.Add(new ToolCall(call.Id ?? string.Empty, call.Function?.Name ?? string.Empty, call.Function?.Arguments ?? "{}"));
        }

        return calls;
    }

    /// <param name="strict">Refuse fields OpenAI does not define (OpenAI's API); false ignores them (Ollama's, whose tools carry more).</param>
    internal static List<ToolDefinition> ReadTools(List<ToolDto?>? tools, bool strict = true)
    {
        if (tools is null)
        {
            return [];
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

            var function = tool.Function ?? throw OpenAiException.MissingParameter(at + ".function");
            if (strict)
            {
                WireReader.RejectUnrecognized(tool.Unrecognized, at + ".");
                WireReader.RejectUnrecognized(function.Unrecognized, at + ".function.");
            }

            var parameters = "{\"type\":\"object\",\"properties\":{}}";
            if (function.Parameters is { ValueKind: not JsonValueKind.Null } schema)
            {
                parameters = schema.ValueKind == JsonValueKind.Object ? schema.GetRawText() : throw OpenAiException.InvalidType(at + ".function.parameters", "a JSON Schema object");
            }

            result.Add(new ToolDefinition(function.Name ?? string.Empty, function.Description, parameters, function.Strict == true));
        }

        return result;
    }

    internal static ToolChoice ReadToolChoice(JsonElement? value, bool haveTools)
    {
        if (value is not { } choice || choice.ValueKind == JsonValueKind.Null)
        {
            return haveTools ? ToolChoice.Auto : new ToolChoice(ToolChoiceMode.None);
        }

        if (choice.ValueKind == JsonValueKind.String)
        {
            return WireReader.Text(choice, "tool_choice") switch
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
            return new ToolChoice(ToolChoiceMode.Function, WireReader.Text(name, "tool_choice.function.name"));
        }

        throw OpenAiException.InvalidRequest("Invalid 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice", "invalid_value");
    }

    private static GenerationRequest Common(GenerationRequestDto body, string model, int? maxTokens, SamplingParameters defaults)
    {
        if (body.StreamOptions is not null && body.Stream != true)
        {
            throw OpenAiException.InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "invalid_value");
        }

        return new GenerationRequest
        {
            Model = model,
            MaxTokens = maxTokens,
            Stop = WireReader.Stop(body.Stop),
            Sampling = defaults.Override(body.Temperature, body.TopP, body.TopK, body.MinP, body.RepeatPenalty, body.PresencePenalty, body.FrequencyPenalty)
                with { Seed = WireReader.Seed(body.Seed) },
            IgnoreEos = body.IgnoreEos == true,
            LogitBias = WireReader.LogitBias(body.LogitBias),
            Choices = body.N ?? 1,
            KeepAlive = Hosting.KeepAliveDuration.Read(body.KeepAlive, "keep_alive"),
        };
    }
}
