using System.Text.Json;
using EdgeServer.Inference;

namespace EdgeServer.OpenAi;

/// <summary>
/// A Responses request mapped: the generation, how its errors name fields, the conversation it continues and adds
/// to (without its instructions, which OpenAI does not carry over to a follow-up), and the tools and tool choice the
/// response echoes.
/// </summary>
internal sealed record ResponsesRequest(
    GenerationRequest Request,
    IFieldNames Names,
    IReadOnlyList<ChatMessage> Conversation,
    IReadOnlyList<ResponseFunctionToolOut> Tools,
    JsonElement ToolChoice);

/// <summary>
/// A Responses API request becomes a <see cref="GenerationRequest"/> directly: <c>instructions</c> a system message,
/// the stored conversation of <c>previous_response_id</c> and then <c>input</c> the messages (function_call items an
/// assistant turn's tool calls, function_call_output items tool messages, as chat's are), <c>tools</c> and
/// <c>tool_choice</c> chat's, <c>text.format</c> the response format. Fields are read against
/// <see cref="RequestFields.Responses"/>; errors name them by <see cref="ResponsesFieldNames"/>.
/// </summary>
internal static class ResponsesMapper
{
    private static readonly JsonElement AutoChoice = JsonDocument.Parse("\"auto\"").RootElement.Clone();
    private static readonly JsonElement EmptyParameters = JsonDocument.Parse("""{"type":"object","properties":{}}""").RootElement.Clone();

    /// <param name="previous">The conversation of a stored response by id (null: unknown), for previous_response_id.</param>
    public static ResponsesRequest FromResponses(CreateResponseRequest body, SamplingParameters defaults, Func<string, IReadOnlyList<ChatMessage>?> previous)
    {
        RequestFields.Responses.RejectUnbound(body.Unrecognized);
        if (body.Truncation is not (null or "disabled"))
        {
            throw OpenAiException.InvalidRequest($"Invalid value for 'truncation': '{body.Truncation}'. EdgeServer does not drop input; only 'disabled' is supported.", "truncation", "unsupported_value");
        }

        var model = WireReader.RequireModel(body.Model);
        var (tools, echoed) = ReadTools(body.Tools);
        var (toolChoice, choiceEcho) = ReadToolChoice(body.ToolChoice, tools.Count > 0);
        var messages = new List<ChatMessage>();
        var instructions = !string.IsNullOrEmpty(body.Instructions);
        if (instructions)
        {
            messages.Add(new ChatMessage("system", body.Instructions));
        }

        var earlier = 0;
        if (body.PreviousResponseId is { } id)
        {
            var conversation = previous(id) ?? throw NotFound(id);
            messages.AddRange(conversation);
            earlier = conversation.Count;
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
            Tools = tools,
            ToolChoice = toolChoice,
            ParallelToolCalls = body.ParallelToolCalls ?? false,
            ReasoningEffort = ChatMapper.ReadReasoningEffort(body.Reasoning?.Effort, "reasoning.effort"),
            KeepAlive = Hosting.KeepAliveDuration.Read(body.KeepAlive, "keep_alive"),
        };
        var names = new ResponsesFieldNames(instructions, inputIsText, items) { Earlier = earlier };
        return new ResponsesRequest(request, names, messages.Skip(instructions ? 1 : 0).ToList(), echoed, choiceEcho);
    }

    /// <summary>An unknown, expired, evicted or another key's previous_response_id, as OpenAI answers it.</summary>
    public static OpenAiException NotFound(string id) => new(StatusCodes.Status404NotFound,
        $"Previous response with id '{id}' not found. Responses are kept in memory for a limited time and number (EdgeServer:Responses settings), and only for the API key that made them.",
        "invalid_request_error", "previous_response_id", "previous_response_not_found");

    /// <summary>Function tools, flat as the Responses API has them; the engine checks names and schemas.</summary>
    private static (List<ToolDefinition> Tools, List<ResponseFunctionToolOut> Echo) ReadTools(List<ResponseToolDto?>? dtos)
    {
        var tools = new List<ToolDefinition>();
        var echo = new List<ResponseFunctionToolOut>();
        for (var i = 0; i < (dtos?.Count ?? 0); i++)
        {
            var at = $"tools[{i}]";
            var tool = dtos![i] ?? throw OpenAiException.InvalidType(at, "an object");
            if (tool.Type != "function")
            {
                throw tool.Type is null
                    ? OpenAiException.MissingParameter(at + ".type")
                    : WireReader.Unsupported(at + ".type", $"EdgeServer serves 'function' tools only; '{tool.Type}' tools (hosted by OpenAI) are not available.");
            }

            WireReader.RejectUnrecognized(tool.Unrecognized, at + ".");
            var parameters = EmptyParameters;
            if (tool.Parameters is { ValueKind: not JsonValueKind.Null } schema)
            {
                parameters = schema.ValueKind == JsonValueKind.Object ? schema : throw OpenAiException.InvalidType(at + ".parameters", "a JSON Schema object");
            }

            var strict = tool.Strict == true;
            tools.Add(new ToolDefinition(tool.Name ?? string.Empty, tool.Description, parameters.GetRawText(), strict));
            echo.Add(new ResponseFunctionToolOut("function", tool.Name ?? string.Empty, tool.Description, parameters, strict));
        }

        return (tools, echo);
    }

    /// <summary>"none", "auto", "required" as chat's; a function is named flat: {"type":"function","name":...}.</summary>
    private static (ToolChoice Choice, JsonElement Echo) ReadToolChoice(JsonElement? value, bool haveTools)
    {
        if (value is not { } choice || choice.ValueKind == JsonValueKind.Null)
        {
            return (ChatMapper.ReadToolChoice(null, haveTools), AutoChoice);
        }

        if (choice.ValueKind == JsonValueKind.String)
        {
            return (ChatMapper.ReadToolChoice(choice, haveTools), choice);
        }

        if (choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String)
        {
            if (type.ValueEquals("function"))
            {
                var name = choice.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? WireReader.Text(n, "tool_choice.name") : throw OpenAiException.MissingParameter("tool_choice.name");
                return (new ToolChoice(ToolChoiceMode.Function, name), choice);
            }

            throw WireReader.Unsupported("tool_choice", $"EdgeServer serves function tools only; a tool_choice of type '{type.GetString()}' cannot be honoured. Use 'none', 'auto', 'required' or {{\"type\": \"function\", \"name\": ...}}.");
        }

        throw OpenAiException.InvalidRequest("Invalid 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}.", "tool_choice", "invalid_value");
    }

    /// <summary>
    /// Adds the input's messages, and to <paramref name="items"/> the input item of each; true when the input is one
    /// string. Function calls join the assistant turn before them (a reply's message and calls are one turn), or
    /// start one; a call's output becomes a tool message named by the call it answers.
    /// </summary>
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

        // Names of the calls in the conversation so far, for the tool messages that answer them.
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var call in messages.Where(m => m.ToolCalls is not null).SelectMany(m => m.ToolCalls!))
        {
            callNames[call.Id] = call.Name;
        }

        var first = messages.Count;
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            var at = $"input[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw OpenAiException.InvalidType(at, "a message object");
            }

            var type = item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? WireReader.Text(t, at + ".type") : "message";
            switch (type)
            {
                case "reasoning":
                    // An earlier reply's thinking, replayed with its output: templates drop old thinking, so it is too.
                    continue;
                case "function_call":
                    var call = new ToolCall(Required(item, "call_id", at), Required(item, "name", at), Required(item, "arguments", at));
                    callNames[call.Id] = call.Name;
                    if (messages.Count > first && messages[^1] is { Role: "assistant" } turn)
                    {
                        messages[^1] = turn with { Content = string.IsNullOrEmpty(turn.Content) ? null : turn.Content, ToolCalls = [.. turn.ToolCalls ?? [], call] };
                    }
                    else
                    {
                        messages.Add(new ChatMessage("assistant", null) { ToolCalls = [call] });
                        items.Add(index - 1);
                    }

                    continue;
                case "function_call_output":
                    var callId = Required(item, "call_id", at);
                    if (!item.TryGetProperty("output", out var output))
                    {
                        throw OpenAiException.MissingParameter(at + ".output");
                    }

                    var result = WireReader.Content(output, at + ".output", "input_text", "output_text") ?? throw OpenAiException.InvalidType(at + ".output", "a string or an array of input_text parts");
                    messages.Add(new ChatMessage("tool", result) { ToolCallId = callId, Name = callNames.GetValueOrDefault(callId) });
                    items.Add(index - 1);
                    continue;
                case "message":
                    break;
                default:
                    throw OpenAiException.InvalidRequest($"Invalid item type '{type}' in '{at}': EdgeServer's /v1/responses takes messages, function_call and function_call_output items.", at + ".type", "unsupported_value");
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

    private static string Required(JsonElement item, string name, string at) =>
        item.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value.ValueKind == JsonValueKind.String ? WireReader.Text(value, $"{at}.{name}") : throw OpenAiException.InvalidType($"{at}.{name}", "a string")
            : throw OpenAiException.MissingParameter($"{at}.{name}");
}
