using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.OpenAi;

namespace EdgeServer.Ollama;

/// <summary>
/// Ollama's /api/chat and /api/generate requests become a <see cref="GenerationRequest"/>: shapes and types are read
/// here, what the values mean the engine checks (ranges named by <see cref="OllamaFieldNames"/>).
/// </summary>
internal static class OllamaMapper
{
    /// <summary>
    /// The model id a name stands for: the name itself (an id or an alias), or without Ollama's default tag
    /// (<c>successor:latest</c> is <c>successor</c>). An unknown name is a 404, in Ollama's words.
    /// </summary>
    public static string ResolveModel(IInferenceEngine engine, string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw OllamaResults.BadRequest("model is required");
        }

        if (engine.FindModel(name) is { } model)
        {
            return model.Id;
        }

        const string latest = ":latest";
        return name.EndsWith(latest, StringComparison.Ordinal) && engine.FindModel(name[..^latest.Length]) is { } tagged
            ? tagged.Id
            : throw new OpenAiException(StatusCodes.Status404NotFound, $"model '{name}' not found", "invalid_request_error", "model", "model_not_found");
    }

    /// <summary>How Ollama lists an id: with its tag, <c>:latest</c> unless the id has one.</summary>
    public static string Tagged(string id) => id.Contains(':', StringComparison.Ordinal) ? id : id + ":latest";

    public static bool IsStreaming(OllamaGenerationRequest body) => body.Stream != false;

    /// <param name="thinks">Whether the model's template marks thinking (<see cref="ModelDescriptor.Reasoning"/>).</param>
    public static GenerationRequest FromChat(OllamaChatRequest body, string model, SamplingParameters defaults, bool thinks)
    {
        var messages = new List<ChatMessage>(body.Messages?.Count ?? 0);
        // Ollama's clients name a tool result by tool_name and often send calls without ids: ids are made up here and
        // each result takes the id of the oldest open call of its tool (or the oldest open call).
        var open = new List<ToolCall>();
        for (var i = 0; i < (body.Messages?.Count ?? 0); i++)
        {
            var m = body.Messages![i] ?? throw OllamaResults.BadRequest($"messages[{i}] must be an object");
            if (m.Images is { ValueKind: JsonValueKind.Array } images && images.GetArrayLength() > 0)
            {
                throw OllamaResults.BadRequest($"messages[{i}].images: EdgeServer serves text models and does not accept images");
            }

            List<ToolCall>? calls = null;
            if (m.ToolCalls is { Count: > 0 } dtos)
            {
                calls = [];
                for (var j = 0; j < dtos.Count; j++)
                {
                    var function = dtos[j]?.Function ?? throw OllamaResults.BadRequest($"messages[{i}].tool_calls[{j}].function is required");
                    calls.Add(new ToolCall(string.IsNullOrEmpty(dtos[j]!.Id) ? $"call_{i}_{j}" : dtos[j]!.Id!, function.Name ?? string.Empty, Arguments(function.Arguments, i, j)));
                }

                open.AddRange(calls);
            }

            string? callId = null;
            if (m.Role == "tool")
            {
                var answered = m.ToolCallId is { Length: > 0 } id ? open.FirstOrDefault(c => c.Id == id)
                    : open.FirstOrDefault(c => c.Name == m.ToolName) ?? open.FirstOrDefault();
                callId = m.ToolCallId is { Length: > 0 } given ? given : answered?.Id ?? $"call_{i}";
                if (answered is not null)
                {
                    open.Remove(answered);
                }
            }

            messages.Add(new ChatMessage(m.Role ?? string.Empty, m.Content ?? (m.Role == "assistant" && calls is not null ? null : string.Empty))
            {
                ToolCalls = calls,
                ToolCallId = callId,
                Name = m.Role == "tool" ? m.ToolName : null,
                Reasoning = m.Role == "assistant" && !string.IsNullOrEmpty(m.Thinking) ? m.Thinking : null,
            });
        }

        var tools = ChatMapper.ReadTools(body.Tools, strict: false);
        return Common(body, model, defaults, thinks) with
        {
            Messages = messages,
            Tools = tools,
            ToolChoice = ChatMapper.ReadToolChoice(body.ToolChoice, tools.Count > 0),
        };
    }

    public static GenerationRequest FromGenerate(OllamaGenerateRequest body, string model, SamplingParameters defaults, bool thinks)
    {
        if (body.Images is { ValueKind: JsonValueKind.Array } images && images.GetArrayLength() > 0)
        {
            throw OllamaResults.BadRequest("images: EdgeServer serves text models and does not accept images");
        }

        if (!string.IsNullOrEmpty(body.Suffix))
        {
            throw OllamaResults.BadRequest($"\"{body.Model}\" does not support insert: EdgeServer does not implement fill-in-the-middle");
        }

        if (!string.IsNullOrEmpty(body.Template))
        {
            throw OllamaResults.BadRequest("template is not supported: EdgeServer renders the model's own chat template; send raw: true with a prompt you formatted yourself");
        }

        if (body.Context is { Count: > 0 })
        {
            throw OllamaResults.BadRequest("context is not supported (it is deprecated in Ollama): send the conversation to /api/chat");
        }

        var request = Common(body, model, defaults, thinks);
        if (body.Raw == true)
        {
            return !string.IsNullOrEmpty(body.System)
                ? throw OllamaResults.BadRequest("raw mode does not support template, system, or context")
                : request with { Prompt = body.Prompt ?? string.Empty };
        }

        List<ChatMessage> messages = string.IsNullOrEmpty(body.System) ? [] : [new ChatMessage("system", body.System)];
        messages.Add(new ChatMessage("user", body.Prompt ?? string.Empty));
        return request with { Messages = messages };
    }

    /// <summary>
    /// Ollama's think: absent lets a thinking model think (as Ollama does), false turns thinking off, true or a level
    /// asks for it; asking a model that does not think is a 400, as Ollama answers.
    /// </summary>
    private static ReasoningEffort Think(OllamaGenerationRequest body, bool thinks)
    {
        var think = body.Think;
        if (think is null || think.Value.ValueKind is JsonValueKind.Null)
        {
            return ReasoningEffort.Default;
        }

        var effort = think.Value.ValueKind switch
        {
            JsonValueKind.False => ReasoningEffort.None,
            JsonValueKind.True => ReasoningEffort.Default,
            JsonValueKind.String => WireReader.Text(think.Value, "think") switch
            {
                "low" => ReasoningEffort.Low,
                "medium" => ReasoningEffort.Medium,
                "high" => ReasoningEffort.High,
                "max" => ReasoningEffort.Max,
                _ => (ReasoningEffort?)null,
            },
            _ => null,
        } ?? throw OllamaResults.BadRequest("think must be a boolean or one of \"low\", \"medium\", \"high\", \"max\"");
        return effort != ReasoningEffort.None && !thinks
            ? throw OllamaResults.BadRequest($"\"{body.Model}\" does not support thinking")
            : effort;
    }

    private static GenerationRequest Common(OllamaGenerationRequest body, string model, SamplingParameters defaults, bool thinks)
    {
        var effort = Think(body, thinks);
        var (sampling, maxTokens, stop) = OllamaOptions.Read(body.Options, defaults);
        return new GenerationRequest
        {
            ReasoningEffort = effort,
            Model = model,
            MaxTokens = maxTokens,
            Stop = stop,
            Sampling = sampling,
            ResponseFormat = Format(body.Format),
            KeepAlive = KeepAlive(body.KeepAlive),
        };
    }

    /// <summary>A keep_alive as Ollama takes it, with its error in Ollama's words.</summary>
    public static TimeSpan? KeepAlive(JsonElement? value)
    {
        try
        {
            return KeepAliveDuration.Read(value, "keep_alive");
        }
        catch (OpenAiException e)
        {
            throw OllamaResults.BadRequest(e.Message);
        }
    }

    private static ResponseFormat Format(JsonElement? value)
    {
        if (value is not { } format || format.ValueKind == JsonValueKind.Null || (format.ValueKind == JsonValueKind.String && WireReader.Text(format, "format") is "" or "null"))
        {
            return ResponseFormat.Text;
        }

        return format.ValueKind switch
        {
            JsonValueKind.String when WireReader.Text(format, "format") == "json" => new ResponseFormat(ResponseFormatKind.JsonObject),
            JsonValueKind.Object => new ResponseFormat(ResponseFormatKind.JsonSchema, format.GetRawText()),
            _ => throw OllamaResults.BadRequest($"invalid format: expected \"json\" or a JSON schema object, got {format.GetRawText()}"),
        };
    }

    /// <summary>Ollama sends arguments as an object; a string holding one is taken too.</summary>
    private static string Arguments(JsonElement? value, int i, int j)
    {
        if (value is not { } arguments || arguments.ValueKind == JsonValueKind.Null)
        {
            return "{}";
        }

        return arguments.ValueKind switch
        {
            JsonValueKind.Object => arguments.GetRawText(),
            JsonValueKind.String => WireReader.Text(arguments, "tool_calls.function.arguments"),
            _ => throw OllamaResults.BadRequest($"messages[{i}].tool_calls[{j}].function.arguments must be an object"),
        };
    }
}
