using System.Text;
using EdgeServer.Inference.Text.Templates;

namespace EdgeServer.Inference.Chat;

/// <summary>
/// A model's chat template: renders a conversation (with tools and tool results) into the prompt text.
/// The GGUF's Jinja template is rendered by <see cref="JinjaTemplate"/>; a template that engine cannot run
/// falls back to llama.cpp's built-in renderer, and a model without a template gets ChatML.
/// Two gaps are bridged the way llama-server does: a template that ignores or refuses the system role gets the
/// system text at the start of the first user turn, and a template that cannot show tools gets them (and the
/// calls and results in the history) described in text, in the <see cref="ToolCallSyntax.Generic"/> syntax.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>ChatML, for models without a template (llama-server's fallback too).</summary>
    public const string ChatMl =
        "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}" +
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    private const string SystemProbe = "edgeserver-system-probe";
    private const string ToolProbe = "edgeserver_probe_tool";

    private readonly JinjaTemplate? _jinja;
    private readonly Func<IReadOnlyList<ChatMessage>, string?>? _builtin;
    private readonly string _bos;
    private readonly string _eos;
    private readonly bool _stripBos;
    private readonly TimeProvider _clock;

    private ChatTemplate(string name, JinjaTemplate? jinja, Func<IReadOnlyList<ChatMessage>, string?>? builtin, string bos, string eos, bool stripBos, TimeProvider clock)
    {
        Name = name;
        _jinja = jinja;
        _builtin = builtin;
        _bos = bos;
        _eos = eos;
        _stripBos = stripBos;
        _clock = clock;
    }

    /// <summary>"model" when the GGUF's own template is rendered; otherwise what is used instead and why.</summary>
    public string Name { get; }

    /// <summary>How tool calls are shown to and read from the model.</summary>
    public ToolCallSyntax Syntax { get; private set; } = ToolCallSyntax.Generic;

    public bool SupportsSystemRole { get; private set; } = true;

    /// <summary>How the model marks its thinking, when the template shows it; null for models that do not think.</summary>
    public ReasoningSyntax? Reasoning { get; private set; }

    /// <param name="source">The GGUF's tokenizer.chat_template; null or empty when it has none.</param>
    /// <param name="builtin">llama.cpp's renderer for <paramref name="source"/> (null when it cannot render it).</param>
    /// <param name="tokenizerAddsBos">The tokenizer adds BOS itself, so a BOS the template writes is dropped.</param>
    public static ChatTemplate Create(string? source, Func<IReadOnlyList<ChatMessage>, string?>? builtin, string bos, string eos, bool tokenizerAddsBos, TimeProvider? clock = null)
    {
        clock ??= TimeProvider.System;
        var strip = tokenizerAddsBos && bos.Length > 0;
        if (string.IsNullOrEmpty(source))
        {
            return Probe(new ChatTemplate(Models.LlamaModel.NoTemplateFallback, JinjaTemplate.Parse(ChatMl), null, bos, eos, strip, clock), ChatMl);
        }

        string why;
        try
        {
            var jinja = JinjaTemplate.Parse(source);
            var template = new ChatTemplate("model", jinja, null, bos, eos, strip, clock);
            template.RenderJinja([new ChatMessage("user", "hi")], null);
            return Probe(template, source);
        }
        catch (Exception e) when (e is TemplateSyntaxException or TemplateRenderException)
        {
            why = e.Message;
        }

        if (builtin is not null && builtin([new ChatMessage("system", "s"), new ChatMessage("user", "u")]) is not null)
        {
            return new ChatTemplate($"model (llama.cpp's built-in renderer; the Jinja renderer failed: {why})", null, builtin, bos, eos, strip, clock)
            {
                Reasoning = ReasoningFormat.Detect(source),
            };
        }

        return Probe(new ChatTemplate($"chatml (fallback: the model's chat template cannot be rendered: {why})", JinjaTemplate.Parse(ChatMl), null, bos, eos, strip, clock), ChatMl);
    }

    private static ChatTemplate Probe(ChatTemplate template, string source)
    {
        template.SupportsSystemRole = Renders(template, [new ChatMessage("system", SystemProbe), new ChatMessage("user", "hi")], null, SystemProbe);
        template.Reasoning = ReasoningFormat.Detect(source);
        var syntax = ToolCallFormat.Detect(source);
        var probeTool = new List<object?>
        {
            new Dictionary<string, object?>
            {
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?>
                {
                    ["name"] = ToolProbe,
                    ["description"] = "probe",
                    ["parameters"] = new Dictionary<string, object?> { ["type"] = "object", ["properties"] = new Dictionary<string, object?>() },
                },
            },
        };
        if (syntax != ToolCallSyntax.Generic && Renders(template, [new ChatMessage("user", "hi")], probeTool, ToolProbe))
        {
            template.Syntax = syntax;
        }

        return template;

        static bool Renders(ChatTemplate t, List<ChatMessage> messages, List<object?>? tools, string marker)
        {
            try
            {
                return t.RenderJinja(messages, tools).Contains(marker, StringComparison.Ordinal);
            }
            catch (Exception e) when (e is TemplateRenderException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// The prompt for <paramref name="messages"/>, opening the assistant's turn. Tools are shown unless
    /// <paramref name="choice"/> is none. <paramref name="enableThinking"/> and <paramref name="reasoningEffort"/>
    /// become the template's <c>enable_thinking</c> and <c>reasoning_effort</c> (as llama.cpp passes them) unless
    /// null. Throws <see cref="TemplateRaisedException"/> when the template refuses the conversation and
    /// <see cref="TemplateRenderException"/> when it fails on it.
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, IReadOnlyList<ToolDefinition> tools, ToolChoice choice, bool parallelToolCalls,
        bool? enableThinking = null, string? reasoningEffort = null)
    {
        var showTools = tools.Count > 0 && choice.Mode != ToolChoiceMode.None;
        var list = messages.ToList();
        if (Syntax == ToolCallSyntax.Generic) // always so for llama.cpp's renderer, which knows no tools
        {
            list = DescribeToolHistory(list);
            if (showTools)
            {
                list = AddToSystem(list, ToolCallFormat.GenericInstructions(tools, choice, parallelToolCalls));
            }
        }

        if (!SupportsSystemRole)
        {
            list = MergeSystemIntoUser(list);
        }

        string prompt;
        if (_jinja is not null)
        {
            var toolValues = showTools && Syntax != ToolCallSyntax.Generic ? tools.Select(ToValue).ToList() : null;
            prompt = RenderJinja(list, toolValues, enableThinking, reasoningEffort);
        }
        else
        {
            prompt = _builtin!(list) ?? throw new TemplateRenderException("llama.cpp's chat template renderer could not render the messages");
        }

        return _stripBos && prompt.StartsWith(_bos, StringComparison.Ordinal) ? prompt[_bos.Length..] : prompt;
    }

    private string RenderJinja(List<ChatMessage> messages, List<object?>? tools, bool? enableThinking = null, string? reasoningEffort = null)
    {
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages.Select(ToValue).ToList(),
            ["tools"] = tools,
            ["documents"] = null,
            ["add_generation_prompt"] = true,
            ["bos_token"] = _bos,
            ["eos_token"] = _eos,
        };
        if (enableThinking is { } thinking)
        {
            variables["enable_thinking"] = thinking;
        }

        if (reasoningEffort is not null)
        {
            variables["reasoning_effort"] = reasoningEffort;
        }

        return _jinja!.Render(variables, _clock);
    }

    private static object? ToValue(ChatMessage m)
    {
        var d = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["role"] = m.Role,
            // Templates concatenate content; a tool-calling turn without text is "", as llama-server passes it.
            ["content"] = m.Content ?? string.Empty,
        };
        if (m.ToolCalls is { Count: > 0 } calls)
        {
            d["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?>(StringComparer.Ordinal)
                {
                    ["name"] = c.Name,
                    ["arguments"] = ParseArguments(c.Arguments),
                },
            }).ToList();
        }

        if (m.ToolCallId is not null)
        {
            d["tool_call_id"] = m.ToolCallId;
        }

        if (m.Name is not null)
        {
            d["name"] = m.Name;
        }

        if (m.Reasoning is not null)
        {
            d["reasoning_content"] = m.Reasoning;
        }

        return d;
    }

    private static object? ToValue(ToolDefinition t)
    {
        var function = new Dictionary<string, object?>(StringComparer.Ordinal) { ["name"] = t.Name };
        if (t.Description is not null)
        {
            function["description"] = t.Description;
        }

        function["parameters"] = ParseArguments(t.Parameters);
        return new Dictionary<string, object?>(StringComparer.Ordinal) { ["type"] = "function", ["function"] = function };
    }

    /// <summary>Templates index into arguments (Llama, Qwen), so they get the object; text that is not JSON stays text.</summary>
    private static object? ParseArguments(string json)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(json);
            return JinjaTemplate.FromJson(doc.RootElement);
        }
        catch (System.Text.Json.JsonException)
        {
            return json;
        }
    }

    /// <summary>For templates that cannot show tool calls: calls become JSON text, results become user turns.</summary>
    private static List<ChatMessage> DescribeToolHistory(List<ChatMessage> messages)
    {
        if (!messages.Any(m => m.ToolCalls is { Count: > 0 } || m.Role == "tool"))
        {
            return messages;
        }

        var result = new List<ChatMessage>();
        foreach (var m in messages)
        {
            if (m.ToolCalls is { Count: > 0 } calls)
            {
                var json = new StringBuilder("{\"tool_calls\": [");
                for (var i = 0; i < calls.Count; i++)
                {
                    json.Append(i > 0 ? ", " : string.Empty)
                        .Append("{\"name\": ").Append(Sampling.JsonSchemaGrammar.JsonString(calls[i].Name))
                        .Append(", \"arguments\": ").Append(calls[i].Arguments)
                        .Append(", \"id\": ").Append(Sampling.JsonSchemaGrammar.JsonString(calls[i].Id)).Append('}');
                }

                json.Append("]}");
                var text = string.IsNullOrEmpty(m.Content) ? json.ToString() : m.Content + "\n" + json;
                result.Add(new ChatMessage("assistant", text));
            }
            else if (m.Role == "tool")
            {
                var response = $"{{\"tool_response\": {{\"tool_call_id\": {Sampling.JsonSchemaGrammar.JsonString(m.ToolCallId ?? string.Empty)}, \"content\": {Sampling.JsonSchemaGrammar.JsonString(m.Content ?? string.Empty)}}}}}";
                if (result.Count > 0 && result[^1].Role == "user" && result[^1].Content!.StartsWith("{\"tool_response\"", StringComparison.Ordinal))
                {
                    result[^1] = result[^1] with { Content = result[^1].Content + "\n" + response };
                }
                else
                {
                    result.Add(new ChatMessage("user", response));
                }
            }
            else
            {
                result.Add(m);
            }
        }

        return result;
    }

    private static List<ChatMessage> AddToSystem(List<ChatMessage> messages, string text)
    {
        if (messages.Count > 0 && messages[0].Role == "system")
        {
            var copy = messages.ToList();
            copy[0] = copy[0] with { Content = copy[0].Content + "\n\n" + text };
            return copy;
        }

        return [new ChatMessage("system", text), .. messages];
    }

    /// <summary>System text moves to the start of the first user turn (separated by a newline).</summary>
    private static List<ChatMessage> MergeSystemIntoUser(List<ChatMessage> messages)
    {
        var system = string.Join("\n\n", messages.Where(m => m.Role == "system").Select(m => m.Content));
        if (system.Length == 0)
        {
            return messages.Where(m => m.Role != "system").ToList();
        }

        var rest = messages.Where(m => m.Role != "system").ToList();
        var firstUser = rest.FindIndex(m => m.Role == "user");
        if (firstUser < 0)
        {
            return [new ChatMessage("user", system), .. rest];
        }

        rest[firstUser] = rest[firstUser] with { Content = system + "\n" + rest[firstUser].Content };
        return rest;
    }
}
