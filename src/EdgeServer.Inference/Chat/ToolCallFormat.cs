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

    /// <summary>A grammar that admits only calls (of <paramref name="choice"/>'s function, when named).</summary>
    public static string Grammar(ToolCallSyntax syntax, IReadOnlyList<ToolDefinition> tools, ToolChoice choice, bool parallel, int maxAlternatives = JsonSchemaGrammar.DefaultMaxAlternatives)
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

                using var schema = JsonDocument.Parse(tool.Parameters);
                var args = visit(schema.RootElement, $"tool-{i}-args", new FieldRef(GenerationField.ToolParameters, i));
                var name = JsonSchemaGrammar.GbnfLiteral(JsonSchemaGrammar.JsonString(tool.Name));
                var argsKey = syntax == ToolCallSyntax.Llama3 ? "\"parameters\"" : "\"arguments\"";
                calls.Add($"\"{{\" space \"\\\"name\\\"\" space \":\" space {name} space \",\" space {JsonSchemaGrammar.GbnfLiteral(argsKey)} space \":\" space {args} \"}}\"");
            }

            var call = "(" + string.Join(" | ", calls) + ")";
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
