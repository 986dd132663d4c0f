using System.Text;
using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.OpenAi;

namespace EdgeServer.Anthropic;

/// <summary>
/// Anthropic's Messages requests become a <see cref="GenerationRequest"/>: the system prompt a system message, text
/// blocks text, tool_use blocks an assistant turn's calls, tool_result blocks tool messages. Shapes and types are read
/// here; what the values mean the engine checks, named by <see cref="AnthropicFieldNames"/>. Anthropic's own narrower
/// range for temperature (0 to 1) is its wire rule and is checked here.
/// </summary>
internal static class AnthropicMapper
{
    private const string EmptySchema = "{\"type\":\"object\",\"properties\":{}}";

    /// <param name="countOnly">For count_tokens: max_tokens is neither required nor used.</param>
    public static (GenerationRequest Request, IFieldNames Names) FromMessages(AnthropicMessagesRequest body, SamplingParameters defaults, bool countOnly = false)
    {
        if (string.IsNullOrEmpty(body.Model))
        {
            throw AnthropicResults.BadRequest("model: Field required");
        }

        if (!countOnly && body.MaxTokens is null)
        {
            throw AnthropicResults.BadRequest("max_tokens: Field required");
        }

        if (body.Messages is null)
        {
            throw AnthropicResults.BadRequest("messages: Field required");
        }

        if (body.Temperature is { } temperature && temperature is < 0 or > 1)
        {
            throw AnthropicResults.BadRequest($"temperature: Input should be between 0 and 1 (Anthropic's range), got {temperature}");
        }

        if (body.StopSequences?.IndexOf(null!) is >= 0 and var nullStop)
        {
            throw AnthropicResults.BadRequest($"stop_sequences[{nullStop}]: Input should be a valid string");
        }

        var messages = new List<ChatMessage>();
        var paths = new List<string>();
        if (SystemPrompt(body.System) is { } system)
        {
            messages.Add(new ChatMessage("system", system));
            paths.Add("system");
        }

        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < body.Messages.Count; i++)
        {
            ReadMessage(body.Messages[i], i, messages, paths, callNames);
        }

        var tools = ReadTools(body.Tools);
        var effort = ReadThinking(body.Thinking, countOnly ? null : body.MaxTokens);
        var request = new GenerationRequest
        {
            ReasoningEffort = effort,
            Model = body.Model,
            Messages = messages,
            MaxTokens = countOnly ? null : body.MaxTokens,
            Stop = body.StopSequences ?? [],
            Sampling = defaults.Override(temperature: body.Temperature, topP: body.TopP, topK: body.TopK),
            Tools = tools,
            ToolChoice = ReadToolChoice(body.ToolChoice, tools.Count > 0),
        };
        return (request, new AnthropicFieldNames(paths));
    }

    /// <summary>
    /// Anthropic's thinking: <c>disabled</c> turns a reasoning model's thinking off (its template's switch),
    /// <c>enabled</c> (with <c>budget_tokens</c>, checked as Anthropic checks it) and <c>adaptive</c> leave it on, as
    /// does no thinking at all: a model that thinks has its thinking returned in thinking blocks either way.
    /// </summary>
    private static ReasoningEffort ReadThinking(JsonElement? value, int? maxTokens)
    {
        if (value is not { } thinking || thinking.ValueKind == JsonValueKind.Null)
        {
            return ReasoningEffort.Default;
        }

        if (thinking.ValueKind != JsonValueKind.Object)
        {
            throw AnthropicResults.BadRequest("thinking: Input should be an object");
        }

        var type = thinking.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        switch (type)
        {
            case "disabled":
                return ReasoningEffort.None;
            case "adaptive":
                return ReasoningEffort.Default;
            case "enabled":
                if (!thinking.TryGetProperty("budget_tokens", out var budget) || budget.ValueKind != JsonValueKind.Number || !budget.TryGetInt32(out var tokens))
                {
                    throw AnthropicResults.BadRequest("thinking.enabled.budget_tokens: Field required (an integer)");
                }

                if (tokens < 1024)
                {
                    throw AnthropicResults.BadRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024");
                }

                if (maxTokens is { } max && tokens >= max)
                {
                    throw AnthropicResults.BadRequest("max_tokens must be greater than thinking.budget_tokens");
                }

                return ReasoningEffort.Default;
            default:
                throw AnthropicResults.BadRequest("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'");
        }
    }

    /// <summary>A string, or text blocks joined by newlines.</summary>
    private static string? SystemPrompt(JsonElement? value)
    {
        if (value is not { } system || system.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return system.ValueKind switch
        {
            JsonValueKind.String => system.GetString(),
            JsonValueKind.Array => string.Join('\n', system.EnumerateArray().Select((block, j) => TextBlock(block, $"system[{j}]"))),
            _ => throw AnthropicResults.BadRequest("system: Input should be a valid string or a list of text blocks"),
        };
    }

    private static string TextBlock(JsonElement block, string at) =>
        BlockType(block, at) == "text" ? RequiredString(block, "text", at) : throw AnthropicResults.BadRequest($"{at}.type: only text blocks are allowed here");

    private static void ReadMessage(AnthropicMessage? m, int i, List<ChatMessage> messages, List<string> paths, Dictionary<string, string> callNames)
    {
        var at = $"messages[{i}]";
        if (m is null)
        {
            throw AnthropicResults.BadRequest($"{at}: Input should be an object");
        }

        if (m.Role is not ("user" or "assistant"))
        {
            throw AnthropicResults.BadRequest($"{at}.role: Input should be 'user' or 'assistant'");
        }

        if (m.Content is not { ValueKind: JsonValueKind.String or JsonValueKind.Array } content)
        {
            throw AnthropicResults.BadRequest($"{at}.content: Input should be a valid string or a list of content blocks");
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            messages.Add(new ChatMessage(m.Role, content.GetString()));
            paths.Add(at + ".content");
            return;
        }

        var added = messages.Count;
        var text = new StringBuilder();
        var hasText = false;
        var calls = new List<ToolCall>();
        var thought = new StringBuilder();
        void FlushText()
        {
            if (hasText)
            {
                messages.Add(new ChatMessage("user", text.ToString()));
                paths.Add(at + ".content");
                text.Clear();
                hasText = false;
            }
        }

        var j = 0;
        foreach (var block in content.EnumerateArray())
        {
            var p = $"{at}.content[{j++}]";
            var type = BlockType(block, p);
            switch (type)
            {
                case "text":
                    text.Append(hasText ? "\n" : string.Empty).Append(RequiredString(block, "text", p));
                    hasText = true;
                    break;
                case "image" or "document" or "search_result" or "container_upload":
                    throw AnthropicResults.BadRequest($"{p}: {type} blocks are not supported; EdgeServer serves text models, send text blocks");
                case "tool_use" when m.Role == "assistant":
                    var id = RequiredString(block, "id", p);
                    var name = RequiredString(block, "name", p);
                    var input = block.TryGetProperty("input", out var value) ? value : default;
                    if (input.ValueKind != JsonValueKind.Object)
                    {
                        throw AnthropicResults.BadRequest($"{p}.input: Input should be an object");
                    }

                    calls.Add(new ToolCall(id, name, input.GetRawText()));
                    callNames[id] = name;
                    break;
                case "tool_result" when m.Role == "user":
                    FlushText();
                    var callId = RequiredString(block, "tool_use_id", p);
                    var result = ToolResultContent(block, p);
                    var isError = block.TryGetProperty("is_error", out var error) && error.ValueKind == JsonValueKind.True;
                    messages.Add(new ChatMessage("tool", isError ? "Error: " + result : result) { ToolCallId = callId, Name = callNames.GetValueOrDefault(callId) });
                    paths.Add(p);
                    break;
                case "thinking" when m.Role == "assistant":
                    // Given to the template, which shows it where the model expects it (Qwen3: within a tool-calling turn).
                    thought.Append(block.TryGetProperty("thinking", out var thinking) && thinking.ValueKind == JsonValueKind.String ? thinking.GetString() : null);
                    break;
                case "redacted_thinking" when m.Role == "assistant":
                    break;
                case "tool_use" or "tool_result" or "thinking" or "redacted_thinking":
                    throw AnthropicResults.BadRequest($"{p}: {type} blocks belong in {(type == "tool_result" ? "user" : "assistant")} messages");
                default:
                    throw AnthropicResults.BadRequest($"{p}.type: unknown content block type '{type}'; EdgeServer accepts text, tool_use, tool_result and thinking blocks");
            }
        }

        if (m.Role == "assistant")
        {
            messages.Add(new ChatMessage("assistant", hasText ? text.ToString() : calls.Count > 0 ? null : string.Empty)
            {
                ToolCalls = calls.Count > 0 ? calls : null,
                Reasoning = thought.Length > 0 ? thought.ToString() : null,
            });
            paths.Add(at + ".content");
            return;
        }

        FlushText();
        if (messages.Count == added)
        {
            messages.Add(new ChatMessage("user", string.Empty));
            paths.Add(at + ".content");
        }
    }

    /// <summary>A tool result's content: a string, or text blocks (joined by newlines); none is empty.</summary>
    private static string ToolResultContent(JsonElement block, string at)
    {
        if (!block.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            return string.Empty;
        }

        return content.ValueKind switch
        {
            JsonValueKind.String => content.GetString()!,
            JsonValueKind.Array => string.Join('\n', content.EnumerateArray().Select((b, k) => TextBlock(b, $"{at}.content[{k}]"))),
            _ => throw AnthropicResults.BadRequest($"{at}.content: Input should be a valid string or a list of text blocks"),
        };
    }

    private static string BlockType(JsonElement block, string at) =>
        block.ValueKind == JsonValueKind.Object && block.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
            ? type.GetString()!
            : throw AnthropicResults.BadRequest($"{at}: Input should be a content block, an object with a string 'type'");

    private static string RequiredString(JsonElement block, string name, string at) =>
        block.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw AnthropicResults.BadRequest($"{at}.{name}: Field required (a string)");

    private static List<ToolDefinition> ReadTools(List<AnthropicTool?>? tools)
    {
        var result = new List<ToolDefinition>(tools?.Count ?? 0);
        for (var i = 0; i < (tools?.Count ?? 0); i++)
        {
            var at = $"tools[{i}]";
            var tool = tools![i] ?? throw AnthropicResults.BadRequest($"{at}: Input should be an object");
            if (tool.Type is not (null or "custom"))
            {
                throw AnthropicResults.BadRequest($"{at}.type: '{tool.Type}' is one of Anthropic's server tools, which EdgeServer does not run; define a custom tool with input_schema");
            }

            var schema = tool.InputSchema switch
            {
                null or { ValueKind: JsonValueKind.Null } => throw AnthropicResults.BadRequest($"{at}.input_schema: Field required"),
                { ValueKind: JsonValueKind.Object } s => s.GetRawText(),
                _ => throw AnthropicResults.BadRequest($"{at}.input_schema: Input should be a JSON Schema object"),
            };
            result.Add(new ToolDefinition(tool.Name ?? string.Empty, tool.Description, schema == "{}" ? EmptySchema : schema));
        }

        return result;
    }

    /// <summary>auto, any (a call is required), tool (this one), none; absent is auto with tools.</summary>
    private static ToolChoice ReadToolChoice(JsonElement? value, bool haveTools)
    {
        if (value is not { } choice || choice.ValueKind == JsonValueKind.Null)
        {
            return haveTools ? ToolChoice.Auto : new ToolChoice(ToolChoiceMode.None);
        }

        var type = choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        return type switch
        {
            "auto" => haveTools ? ToolChoice.Auto : new ToolChoice(ToolChoiceMode.None),
            "none" => new ToolChoice(ToolChoiceMode.None),
            "any" => new ToolChoice(ToolChoiceMode.Required),
            "tool" => new ToolChoice(ToolChoiceMode.Function, RequiredString(choice, "name", "tool_choice")),
            _ => throw AnthropicResults.BadRequest("tool_choice: Input should be an object with type 'auto', 'any', 'tool' (with a name) or 'none'"),
        };
    }
}

/// <summary>
/// How Anthropic's requests name the engine's fields in errors: <c>max_tokens</c>, <c>stop_sequences</c>, the
/// sampling fields by their names, a message by where it came from (<c>system</c>, <c>messages[i].content</c>, or
/// the tool_result block it was made of), tools by <c>tools[i].name</c> and <c>tools[i].input_schema</c>.
/// </summary>
internal sealed class AnthropicFieldNames(IReadOnlyList<string> paths) : IFieldNames
{
    public string Name(FieldRef field) => field.Field switch
    {
        GenerationField.MaxTokens => "max_tokens",
        GenerationField.Stop => "stop_sequences",
        GenerationField.MessageRole or GenerationField.MessageContent or GenerationField.MessageName or GenerationField.MessageToolCalls
            or GenerationField.MessageToolCallId or GenerationField.ToolCallId or GenerationField.ToolCallName
            when field.Index >= 0 && field.Index < paths.Count => paths[field.Index],
        GenerationField.ToolName => $"tools[{field.Index}].name",
        GenerationField.ToolParameters or GenerationField.ToolStrict => $"tools[{field.Index}].input_schema",
        GenerationField.ToolChoice => "tool_choice",
        _ => FieldNames.Canonical.Name(field),
    };

    public string Setting(GenerationLimit limit) => LimitSettings.Name(limit);
}
