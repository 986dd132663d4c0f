using System.Buffers;
using System.Text;
using System.Text.Json;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Text;

namespace EdgeServer.Inference.Chat;

/// <summary>
/// Keeps the text a caller supplies (message content, names, tool results, tool calls, tool definitions) from
/// becoming control tokens: the rendered prompt is tokenized with special tokens parsed, which only the
/// template's own text may use. Before rendering, each control or unknown token's text in the caller's strings
/// (and a start or end of one at a string's edge, which the text beside it in the prompt could complete) is
/// swapped for a placeholder character followed by fillers, keeping its length. A prompt without placeholders is
/// tokenized as it always was; one with them is split at the template's special tokens, the placeholders get
/// their text back inside the raw stretches, and those are tokenized without special-token parsing — which is
/// what llama.cpp does to raw text next to a special token anyway, so the template's own parts give the same
/// tokens. User-defined tokens (e.g. &lt;think&gt;) are left alone: llama.cpp matches them in plain text too.
/// </summary>
internal sealed class UserTextShield
{
    // Placeholders are Yi syllables and radicals, then CJK extension A: no whitespace, no case, nothing a JSON
    // writer in the prompt path escapes, and no chat template writes them. Any the caller's text holds are skipped.
    private static readonly char[] Pool = [.. Range('\uA000', '\uA48C'), .. Range('\uA490', '\uA4C6'), .. Range('\u3400', '\u4DB5')];
    private static readonly SearchValues<char> PoolChars = SearchValues.Create(Pool);

    private readonly SpecialTokens _special;
    private readonly HashSet<char> _taken = [];
    private readonly List<string> _found = [];
    private readonly Dictionary<string, char> _slots = new(StringComparer.Ordinal);
    private readonly Dictionary<char, string> _literals = [];
    private char _filler;
    private SearchValues<char>? _markers;

    private UserTextShield(SpecialTokens special, IReadOnlyList<ChatMessage> messages, IReadOnlyList<ToolDefinition> tools, ToolChoice choice)
    {
        _special = special;
        Messages = messages;
        Tools = tools;
        ToolChoice = choice;
    }

    /// <summary>The conversation to render: the caller's strings with placeholders where needed.</summary>
    public IReadOnlyList<ChatMessage> Messages { get; private set; }

    public IReadOnlyList<ToolDefinition> Tools { get; private set; }

    public ToolChoice ToolChoice { get; private set; }

    /// <summary>Whether any placeholder was put in.</summary>
    public bool IsActive => _literals.Count > 0;

    public static UserTextShield Create(SpecialTokens special, IReadOnlyList<ChatMessage> messages, IReadOnlyList<ToolDefinition> tools, ToolChoice choice)
    {
        var shield = new UserTextShield(special, messages, tools, choice);
        if (!special.HasReserved)
        {
            return shield;
        }

        shield.Map(shield.Scan);
        if (shield._found.Count == 0)
        {
            return shield;
        }

        shield.Allocate();
        (shield.Messages, shield.Tools, shield.ToolChoice) = shield.Map(shield.Replace);
        return shield;
    }

    /// <summary>The prompt's tokens: special tokens only where the template wrote them.</summary>
    public int[] Tokenize(LlamaModel model, string prompt) =>
        IsActive && prompt.AsSpan().ContainsAny(_markers!)
            ? model.TokenizeAtSpecialTokens(prompt, Restore)
            : model.Tokenize(prompt, addSpecial: true, parseSpecial: true);

    /// <summary><paramref name="text"/> with the caller's text back in place of the placeholders.</summary>
    public string Restore(string text)
    {
        if (!IsActive || !text.AsSpan().ContainsAny(_markers!))
        {
            return text;
        }

        var b = new StringBuilder(text.Length + 64);
        foreach (var c in text)
        {
            if (_literals.TryGetValue(c, out var literal))
            {
                b.Append(literal);
            }
            else if (c != _filler)
            {
                b.Append(c);
            }
        }

        return b.ToString();
    }

    private (IReadOnlyList<ChatMessage>, IReadOnlyList<ToolDefinition>, ToolChoice) Map(Func<string, string> text)
    {
        string? Optional(string? s) => s is null ? null : text(s);
        var messages = Messages.Select(m => m with
        {
            Content = Optional(m.Content),
            Name = Optional(m.Name),
            Reasoning = Optional(m.Reasoning),
            ToolCallId = Optional(m.ToolCallId),
            ToolCalls = m.ToolCalls?.Select(c => new ToolCall(text(c.Id), text(c.Name), MapJson(c.Arguments, text))).ToList(),
        }).ToList();
        var tools = Tools.Select(t => t with { Name = text(t.Name), Description = Optional(t.Description), Parameters = MapJson(t.Parameters, text) }).ToList();
        return (messages, tools, ToolChoice with { Function = Optional(ToolChoice.Function) });
    }

    /// <summary>Applies <paramref name="text"/> to each string and property name in JSON (templates show them decoded).</summary>
    private static string MapJson(string json, Func<string, string> text)
    {
        var utf8 = Encoding.UTF8.GetBytes(json);
        StringBuilder? b = null;
        var copied = 0;
        try
        {
            var reader = new Utf8JsonReader(utf8);
            while (reader.Read())
            {
                if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName))
                {
                    continue;
                }

                var value = reader.GetString()!;
                var mapped = text(value);
                if (ReferenceEquals(mapped, value))
                {
                    continue;
                }

                var start = (int)reader.TokenStartIndex;
                b ??= new StringBuilder(json.Length + 16);
                b.Append(Encoding.UTF8.GetString(utf8, copied, start - copied));
                b.Append(Sampling.JsonSchemaGrammar.JsonString(mapped));
                copied = start + reader.ValueSpan.Length + 2;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return text(json); // not JSON: templates show it as it is
        }

        return b is null ? json : b.Append(Encoding.UTF8.GetString(utf8, copied, utf8.Length - copied)).ToString();
    }

    /// <summary>First pass: which texts need placeholders, and which placeholder characters the caller already uses.</summary>
    private string Scan(string s)
    {
        var rest = s.AsSpan();
        for (var i = rest.IndexOfAny(PoolChars); i >= 0; i = rest.IndexOfAny(PoolChars))
        {
            _taken.Add(rest[i]);
            rest = rest[(i + 1)..];
        }

        foreach (var (start, length) in Find(s))
        {
            var literal = s.Substring(start, length);
            if (_slots.TryAdd(literal, '\0'))
            {
                _found.Add(literal);
            }
        }

        return s;
    }

    private void Allocate()
    {
        var next = 0;
        char Next()
        {
            while (next < Pool.Length && _taken.Contains(Pool[next]))
            {
                next++;
            }

            return next < Pool.Length
                ? Pool[next++]
                : throw new InvalidGenerationParameterException(GenerationField.Messages, $"The conversation holds {_found.Count} different special-token texts; EdgeServer keeps them as text, but not that many.");
        }

        _filler = Next();
        foreach (var literal in _found)
        {
            var slot = Next();
            _slots[literal] = slot;
            _literals[slot] = literal;
        }

        _markers = SearchValues.Create([_filler, .. _literals.Keys]);
    }

    /// <summary>Second pass: each text to keep becomes its placeholder and fillers up to its length.</summary>
    private string Replace(string s)
    {
        var ranges = Find(s);
        if (ranges.Count == 0)
        {
            return s;
        }

        var b = new StringBuilder(s.Length);
        var copied = 0;
        foreach (var (start, length) in ranges)
        {
            b.Append(s, copied, start - copied).Append(_slots[s.Substring(start, length)]).Append(_filler, length - 1);
            copied = start + length;
        }

        return b.Append(s, copied, s.Length - copied).ToString();
    }

    /// <summary>
    /// Where <paramref name="s"/> holds control or unknown token texts (longest first, left to right), and the
    /// start of one at its end or the end of one at its start: the text around it in the prompt could complete those.
    /// </summary>
    private List<(int Start, int Length)> Find(string s)
    {
        var ranges = new List<(int Start, int Length)>();
        var span = s.AsSpan();
        var i = 0;
        while (span[i..].IndexOfAny(_special.ReservedStarts) is var next and >= 0)
        {
            i += next;
            var n = _special.ReservedAt(span[i..]);
            if (n > 0)
            {
                ranges.Add((i, n));
            }

            i += Math.Max(n, 1);
        }

        var first = ranges.Count > 0 ? ranges[0].Start : s.Length;
        var last = ranges.Count > 0 ? ranges[^1].Start + ranges[^1].Length : 0;
        var head = _special.ReservedTailAtStart(span[..first]);
        var tail = _special.ReservedHeadAtEnd(span[last..]);
        if (head > 0 && tail > 0 && s.Length - tail < head)
        {
            return [(0, s.Length)]; // both edges overlap: no text in between
        }

        if (head > 0)
        {
            ranges.Insert(0, (0, head));
        }

        if (tail > 0)
        {
            ranges.Add((s.Length - tail, tail));
        }

        return ranges;
    }

    private static IEnumerable<char> Range(char first, char last) => Enumerable.Range(first, last - first + 1).Select(c => (char)c);
}
