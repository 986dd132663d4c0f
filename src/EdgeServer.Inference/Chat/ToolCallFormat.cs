using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using EdgeServer.Inference.Sampling;

namespace EdgeServer.Inference.Chat;

public enum ToolCallSyntax
{
    /// <summary>The model's template knows no tools: EdgeServer describes them in the system prompt and asks for
    /// <c>{"tool_calls": [{"name": ..., "arguments": {...}}]}</c>.</summary>
    Generic,

    /// <summary>Hermes, Qwen 2.5/3, SmolLM3: <c>&lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt;</c>.</summary>
    Hermes,

    /// <summary>Mistral: <c>[TOOL_CALLS][{"name": ..., "arguments": {...}}]</c>.</summary>
    Mistral,

    /// <summary>Llama 3.1/3.2/3.3: <c>{"name": ..., "parameters": {...}}</c>, one call per turn.</summary>
    Llama3,
}

/// <summary>How one family of models writes tool calls: detection, the grammar that forces a call, and parsing.</summary>
internal static class ToolCallFormat
{
    public const string HermesOpen = "<tool_call>";
    public const string HermesClose = "</tool_call>";
    public const string MistralOpen = "[TOOL_CALLS]";
    public const string GenericKey = "{\"tool_calls\"";

    /// <summary>The most calls one forced turn may hold, so a model that repeats itself still stops.</summary>
    public const int MaxParallelCalls = 8;

    /// <summary>The syntax a template's source teaches its model. Generic when it shows none we can parse.</summary>
    public static ToolCallSyntax Detect(string templateSource)
    {
        if (templateSource.Contains(HermesOpen, StringComparison.Ordinal))
        {
            return ToolCallSyntax.Hermes;
        }

        if (templateSource.Contains(MistralOpen, StringComparison.Ordinal))
        {
            return ToolCallSyntax.Mistral;
        }

        if (templateSource.Contains("<|python_tag|>", StringComparison.Ordinal) || (templateSource.Contains("ipython", StringComparison.Ordinal) && templateSource.Contains("\"parameters\"", StringComparison.Ordinal)))
        {
            return ToolCallSyntax.Llama3;
        }

        return ToolCallSyntax.Generic;
    }

    /// <summary>Whether a format's calls can only start the reply (so any other first character means text).</summary>
    public static bool StartsReply(ToolCallSyntax syntax) => syntax is ToolCallSyntax.Llama3 or ToolCallSyntax.Generic;

    /// <summary>The text that opens a call.</summary>
    public static string Marker(ToolCallSyntax syntax) => syntax switch
    {
        ToolCallSyntax.Hermes => HermesOpen,
        ToolCallSyntax.Mistral => MistralOpen,
        ToolCallSyntax.Llama3 => "{",
        _ => GenericKey,
    };

    /// <summary>What EdgeServer adds to the system prompt when the template cannot show tools itself.</summary>
    public static string GenericInstructions(IReadOnlyList<ToolDefinition> tools, ToolChoice choice, bool parallel)
    {
        var list = new StringBuilder("[");
        for (var i = 0; i < tools.Count; i++)
        {
            var t = tools[i];
            list.Append(i > 0 ? ", " : string.Empty)
                .Append("{\"name\": ").Append(JsonSchemaGrammar.JsonString(t.Name))
                .Append(t.Description is null ? string.Empty : ", \"description\": " + JsonSchemaGrammar.JsonString(t.Description))
                .Append(", \"parameters\": ").Append(t.Parameters).Append('}');
        }

        list.Append(']');
        var when = choice.Mode switch
        {
            ToolChoiceMode.Required => "You must call at least one tool.",
            ToolChoiceMode.Function => $"You must call the tool \"{choice.Function}\".",
            _ => "Call a tool when it helps; otherwise answer normally.",
        };
        var how = parallel
            ? "{\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}]} (one or more calls)"
            : "{\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}]} (exactly one call)";
        return $"You can call these tools:\n{list}\n{when} To call tools, reply with only this JSON and nothing else:\n{how}";
    }

    /// <summary>
    /// A grammar that admits only calls (of <paramref name="choice"/>'s function, when named). <paramref name="lazy"/>
    /// makes the grammar of <see cref="Trigger"/>, which starts where the model itself opened a call: any tool may be
    /// called there, a non-strict one with any JSON object as its arguments, and whitespace between the syntax's
    /// parts is free, since the model wrote the text up to the trigger unconstrained.
    /// </summary>
    public static string Grammar(ToolCallSyntax syntax, IReadOnlyList<ToolDefinition> tools, ToolChoice choice, bool parallel, int maxAlternatives = JsonSchemaGrammar.DefaultMaxAlternatives, bool lazy = false)
    {
        return JsonSchemaGrammar.Compose(visit =>
        {
            var calls = new List<string>();
            for (var i = 0; i < tools.Count; i++)
            {
                var tool = tools[i];
                if (choice.Mode == ToolChoiceMode.Function && tool.Name != choice.Function)
                {
                    continue;
                }

                string args;
                if (lazy && !tool.Strict)
                {
                    args = "object";
                }
                else
                {
                    using var schema = JsonDocument.Parse(tool.Parameters);
                    args = visit(schema.RootElement, $"tool-{i}-args", new FieldRef(GenerationField.ToolParameters, i));
                }

                var name = JsonSchemaGrammar.GbnfLiteral(JsonSchemaGrammar.JsonString(tool.Name));
                var argsKey = syntax == ToolCallSyntax.Llama3 ? "\"parameters\"" : "\"arguments\"";
                calls.Add($"\"{{\" space \"\\\"name\\\"\" space \":\" space {name} space \",\" space {JsonSchemaGrammar.GbnfLiteral(argsKey)} space \":\" space {args} \"}}\"");
            }

            var call = "(" + string.Join(" | ", calls) + ")";
            if (lazy)
            {
                return syntax switch
                {
                    ToolCallSyntax.Hermes => Repeat($"\"<tool_call>\" {Ws} {call} {Ws} \"</tool_call>\"", Ws, parallel),
                    ToolCallSyntax.Mistral => $"\"[TOOL_CALLS]\" {Ws} \"[\" {Ws} {Repeat(call, $"{Ws} \",\" {Ws}", parallel)} {Ws} \"]\"",
                    ToolCallSyntax.Llama3 => call,
                    _ => $"\"{{\\\"tool_calls\\\"\" {Ws} \":\" {Ws} \"[\" {Ws} {Repeat(call, $"{Ws} \",\" {Ws}", parallel)} {Ws} \"]\" {Ws} \"}}\"",
                };
            }

            return syntax switch
            {
                ToolCallSyntax.Hermes => Repeat($"\"<tool_call>\\n\" {call} \"\\n</tool_call>\"", "\"\\n\"", parallel),
                ToolCallSyntax.Mistral => $"\"[TOOL_CALLS][\" {Repeat(call, "\",\" space", parallel)} \"]\"",
                ToolCallSyntax.Llama3 => call,
                _ => $"\"{{\\\"tool_calls\\\": [\" {Repeat(call, "\",\" space", parallel)} \"]}}\"",
            };
        }, maxAlternatives);

        static string Repeat(string item, string separator, bool many) => many ? $"{item} ({separator} {item}){{0,{MaxParallelCalls - 1}}}" : item;
    }

    /// <summary>Whitespace a model may write between the parts of a call's syntax (a lazy grammar allows it).</summary>
    private const string Ws = "[ \\t\\r\\n]{0,8}";

    /// <summary>
    /// In auto mode with strict tools: the grammar that takes over once the model opens a call in its syntax, so a
    /// strict tool's arguments obey its schema while a text reply stays free. Null when no tool is strict.
    /// </summary>
    public static GrammarTrigger? Trigger(ToolCallSyntax syntax, IReadOnlyList<ToolDefinition> tools, bool parallel, int maxAlternatives = JsonSchemaGrammar.DefaultMaxAlternatives) =>
        tools.Any(t => t.Strict)
            ? new GrammarTrigger(Grammar(syntax, tools, ToolChoice.Auto, parallel, maxAlternatives, lazy: true), TriggerMarker(syntax), StartsReply(syntax))
            : null;

    /// <summary>
    /// The text that starts a lazy call grammar: the call's marker, but for Llama 3 the call's first key as its
    /// template teaches it, so that a reply that is some other JSON object stays free.
    /// </summary>
    private static string TriggerMarker(ToolCallSyntax syntax) => syntax == ToolCallSyntax.Llama3 ? "{\"name\"" : Marker(syntax);

    /// <summary>
    /// Splits a finished reply into text and calls. Null when it holds no well-formed call of a known tool, in
    /// which case the whole reply is text.
    /// </summary>
    public static (string Content, List<ToolCall> Calls)? Parse(ToolCallSyntax syntax, string output, IReadOnlyList<ToolDefinition> tools)
    {
        var calls = new List<ToolCall>();
        string content;
        switch (syntax)
        {
            case ToolCallSyntax.Hermes:
                var start = output.IndexOf(HermesOpen, StringComparison.Ordinal);
                if (start < 0)
                {
                    return null;
                }

                content = output[..start].Trim();
                var rest = output[start..];
                while (rest.StartsWith(HermesOpen, StringComparison.Ordinal))
                {
                    var end = rest.IndexOf(HermesClose, StringComparison.Ordinal);
                    var body = end < 0 ? rest[HermesOpen.Length..] : rest[HermesOpen.Length..end];
                    if (!TryReadCall(body, "arguments", tools, syntax, calls))
                    {
                        return null;
                    }

                    rest = end < 0 ? string.Empty : rest[(end + HermesClose.Length)..].TrimStart();
                }

                if (rest.Length > 0)
                {
                    return null;
                }

                break;
            case ToolCallSyntax.Mistral:
                var at = output.IndexOf(MistralOpen, StringComparison.Ordinal);
                if (at < 0 || !TryReadArray(output[(at + MistralOpen.Length)..], tools, syntax, calls))
                {
                    return null;
                }

                content = output[..at].Trim();
                break;
            case ToolCallSyntax.Llama3:
                content = string.Empty;
                var text = output.Trim();
                if (text.StartsWith("<|python_tag|>", StringComparison.Ordinal))
                {
                    text = text["<|python_tag|>".Length..];
                }

                if (!TryReadCall(text, "parameters", tools, syntax, calls))
                {
                    return null;
                }

                break;
            default:
                content = string.Empty;
                try
                {
                    using var doc = JsonDocument.Parse(output);
                    if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("tool_calls", out var list)
                        || !TryReadArray(list.GetRawText(), tools, syntax, calls))
                    {
                        return null;
                    }
                }
                catch (JsonException)
                {
                    return null;
                }

                break;
        }

        return calls.Count == 0 ? null : (content, calls);
    }

    /// <summary>
    /// Reads a reply that max_tokens cut off inside a call, as OpenAI returns one: the calls so far, the last one's
    /// arguments the partial JSON text written so far. Null when no call of a known tool has its name written yet,
    /// in which case the whole reply is text.
    /// </summary>
    public static (string Content, List<ToolCall> Calls)? ParseCutOff(ToolCallSyntax syntax, string output, IReadOnlyList<ToolDefinition> tools)
    {
        var calls = new List<ToolCall>();
        string content;
        switch (syntax)
        {
            case ToolCallSyntax.Hermes:
                var start = output.IndexOf(HermesOpen, StringComparison.Ordinal);
                if (start < 0)
                {
                    return null;
                }

                content = output[..start].Trim();
                var rest = output[start..];
                while (rest.StartsWith(HermesOpen, StringComparison.Ordinal))
                {
                    var end = rest.IndexOf(HermesClose, StringComparison.Ordinal);
                    var body = (end < 0 ? rest[HermesOpen.Length..] : rest[HermesOpen.Length..end]).TrimStart();
                    if (!ReadCutOff(Encoding.UTF8.GetBytes(body), array: false, "arguments", tools, syntax, calls))
                    {
                        break;
                    }

                    rest = end < 0 ? string.Empty : rest[(end + HermesClose.Length)..].TrimStart();
                }

                break;
            case ToolCallSyntax.Mistral:
                var at = output.IndexOf(MistralOpen, StringComparison.Ordinal);
                if (at < 0)
                {
                    return null;
                }

                content = output[..at].Trim();
                ReadCutOff(Encoding.UTF8.GetBytes(output[(at + MistralOpen.Length)..].TrimStart()), array: true, "arguments", tools, syntax, calls);
                break;
            case ToolCallSyntax.Llama3:
                content = string.Empty;
                var text = output.Trim();
                if (text.StartsWith("<|python_tag|>", StringComparison.Ordinal))
                {
                    text = text["<|python_tag|>".Length..];
                }

                ReadCutOff(Encoding.UTF8.GetBytes(text), array: false, "parameters", tools, syntax, calls);
                break;
            default:
                content = string.Empty;
                var json = output.TrimStart();
                if (!json.StartsWith(GenericKey, StringComparison.Ordinal))
                {
                    return null;
                }

                var list = json.AsSpan(GenericKey.Length).TrimStart();
                if (list is [':', ..])
                {
                    ReadCutOff(Encoding.UTF8.GetBytes(list[1..].TrimStart().ToString()), array: true, "arguments", tools, syntax, calls);
                }

                break;
        }

        return calls.Count == 0 ? null : (content, calls);
    }

    /// <summary>
    /// Reads the calls of a cut-off reply: whole ones as <see cref="Parse"/> does, then the unfinished one, whose
    /// arguments are the text from their start to the end. False when the text stops being calls of known tools.
    /// </summary>
    private static bool ReadCutOff(byte[] json, bool array, string argumentsKey, IReadOnlyList<ToolDefinition> tools, ToolCallSyntax syntax, List<ToolCall> calls)
    {
        var reader = new Utf8JsonReader(json, isFinalBlock: false, default);
        try
        {
            if (array && (!reader.Read() || reader.TokenType != JsonTokenType.StartArray))
            {
                return false;
            }

            while (reader.Read() && !(array && reader.TokenType == JsonTokenType.EndArray))
            {
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    return false;
                }

                var start = (int)reader.TokenStartIndex;
                if (!reader.TrySkip())
                {
                    return ReadUnfinishedCall(json.AsSpan(start), argumentsKey, tools, syntax, calls);
                }

                if (!TryReadCall(Encoding.UTF8.GetString(json, start, (int)reader.BytesConsumed - start), argumentsKey, tools, syntax, calls))
                {
                    return false;
                }

                if (!array)
                {
                    return true;
                }
            }

            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>A call object cut off before its end: its name, once whole, and its arguments' text so far.</summary>
    private static bool ReadUnfinishedCall(ReadOnlySpan<byte> json, string argumentsKey, IReadOnlyList<ToolDefinition> tools, ToolCallSyntax syntax, List<ToolCall> calls)
    {
        var reader = new Utf8JsonReader(json, isFinalBlock: false, default);
        string? name = null;
        var arguments = -1;
        while (arguments < 0 && reader.Read())
        {
            if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1)
            {
                continue;
            }

            var key = reader.GetString();
            if (!reader.Read())
            {
                break;
            }

            if (key == "name" && reader.TokenType == JsonTokenType.String)
            {
                name = reader.GetString();
            }
            else if (key == argumentsKey || key == "arguments")
            {
                arguments = (int)reader.TokenStartIndex;
            }
            else if (!reader.TrySkip())
            {
                break;
            }
        }

        if (name is null || tools.All(t => t.Name != name))
        {
            return false;
        }

        calls.Add(new ToolCall(NewId(syntax), name, arguments < 0 ? string.Empty : Encoding.UTF8.GetString(json[arguments..]).TrimEnd()));
        return true;
    }

    private static bool TryReadArray(string json, IReadOnlyList<ToolDefinition> tools, ToolCallSyntax syntax, List<ToolCall> calls)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
            {
                return false;
            }

            foreach (var item in doc.RootElement.EnumerateArray())
            {
                if (!TryReadCall(item.GetRawText(), "arguments", tools, syntax, calls))
                {
                    return false;
                }
            }

            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool TryReadCall(string json, string argumentsKey, IReadOnlyList<ToolDefinition> tools, ToolCallSyntax syntax, List<ToolCall> calls)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
            {
                return false;
            }

            if (!root.TryGetProperty(argumentsKey, out var args) && !root.TryGetProperty("arguments", out args))
            {
                return false;
            }

            var toolName = name.GetString()!;
            if (tools.All(t => t.Name != toolName) || args.ValueKind != JsonValueKind.Object)
            {
                return false;
            }

            calls.Add(new ToolCall(NewId(syntax), toolName, JsonSchemaGrammar.CompactJson(args)));
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>"call_" and 24 random characters; Mistral's templates insist on exactly 9 alphanumerics.</summary>
    public static string NewId(ToolCallSyntax syntax)
    {
        const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        return syntax == ToolCallSyntax.Mistral
            ? RandomNumberGenerator.GetString(Alphabet, 9)
            : "call_" + RandomNumberGenerator.GetString(Alphabet, 24);
    }
}
