using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// A Responses API request becomes a <see cref="GenerationRequest"/> directly: <c>instructions</c> a system message,
/// <c>input</c> the messages, <c>text.format</c> the response format. Fields are read against
/// <see cref="RequestFields.Responses"/>; errors name them by <see cref="ResponsesFieldNames"/>.
/// </summary>
internal static class ResponsesMapper
{
    public static (GenerationRequest Request, IFieldNames Names) FromResponses(CreateResponseRequest body, SamplingParameters defaults)
    {
        RequestFields.Responses.RejectUnbound(body.Unrecognized);
        if (body.ToolChoice is { ValueKind: not JsonValueKind.Null } choice && !(choice.ValueKind == JsonValueKind.String && WireReader.Text(choice, "tool_choice") is "none" or "auto"))
        {
            throw WireReader.Unsupported("tool_choice", "tools are served by /v1/chat/completions; /v1/responses is text in, text out.");
        }

        if (body.Truncation is not (null or "disabled"))
        {
            throw OpenAiException.InvalidRequest($"Invalid value for 'truncation': '{body.Truncation}'. EdgeServer does not drop input; only 'disabled' is supported.", "truncation", "unsupported_value");
        }

        var model = WireReader.RequireModel(body.Model);
        var messages = new List<ChatMessage>();
        var instructions = !string.IsNullOrEmpty(body.Instructions);
        if (instructions)
        {
            messages.Add(new ChatMessage("system", body.Instructions));
        }

        var items = new List<int>();
        var inputIsText = ReadInput(body.Input, messages, items);
        if (body.Text is { } text)
        {
            WireReader.RejectUnrecognized(text.Unrecognized, "text.");
        }

        if (body.Reasoning is { } reasoning)
        {
            WireReader.RejectUnrecognized(reasoning.Unrecognized, "reasoning.");
        }

        var format = body.Text?.Format is { } f ? new ResponseFormatDto { Type = f.Type, JsonSchema = f.Type == "json_schema" ? f : null, Unrecognized = f.Unrecognized } : null;
        var request = new GenerationRequest
        {
            Model = model,
            Messages = messages,
            MaxTokens = body.MaxOutputTokens,
            Sampling = defaults.Override(temperature: body.Temperature, topP: body.TopP),
            ResponseFormat = ChatMapper.ReadResponseFormat(format, "text.format"),
            ToolChoice = new ToolChoice(ToolChoiceMode.None),
            ReasoningEffort = ChatMapper.ReadReasoningEffort(body.Reasoning?.Effort, "reasoning.effort"),
            KeepAlive = Hosting.KeepAliveDuration.Read(body.KeepAlive, "keep_alive"),
        };
        return (request, new ResponsesFieldNames(instructions, inputIsText, items));
    }

    /// <summary>Adds the input's messages, and to <paramref name="items"/> the input item of each; true when the input is one string.</summary>
    private static bool ReadInput(JsonElement? input, List<ChatMessage> messages, List<int> items)
    {
        if (input is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("input");
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            messages.Add(new ChatMessage("user", WireReader.Text(value, "input")));
            return true;
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.InvalidType("input", "a string or an array of messages");
        }

        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            var at = $"input[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw OpenAiException.InvalidType(at, "a message object");
            }

            var type = item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? WireReader.Text(t, at + ".type") : "message";
            if (type == "reasoning")
            {
                // An earlier reply's thinking, replayed with its output: templates drop old thinking, so it is too.
                continue;
            }

            if (type != "message")
            {
                throw OpenAiException.InvalidRequest($"Invalid item type '{type}' in '{at}': EdgeServer's /v1/responses takes messages only.", at + ".type", "unsupported_value");
            }

            var role = ChatMapper.ReadRole(item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? WireReader.Text(r, at + ".role") : null, at + ".role");
            if (!item.TryGetProperty("content", out var content))
            {
                throw OpenAiException.MissingParameter(at + ".content");
            }

            // An assistant turn may be given without text (as in chat), e.g. when a conversation is replayed.
            var text = WireReader.Content(content, at + ".content", "input_text", "output_text");
            items.Add(index - 1);
            messages.Add(new ChatMessage(role, text ?? (role == "assistant" ? string.Empty : null)));
        }

        return false;
    }
}
