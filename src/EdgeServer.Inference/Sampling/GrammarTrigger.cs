using System.Text;
using System.Text.Unicode;
using EdgeServer.Inference.Chat;

namespace EdgeServer.Inference.Sampling;

/// <summary>
/// A grammar that constrains sampling only from where the output opens it: <see cref="Marker"/> anywhere in the
/// answer, or, when <see cref="AtStart"/>, as the answer's first text. Thinking (<see cref="Reasoning"/>) is never
/// the answer. <see cref="Grammar"/>'s root matches from the marker on. This is llama.cpp's lazy grammar done here,
/// so that text the grammar does not accept is checked before it is fed, never fed (llama.cpp aborts on it).
/// </summary>
internal sealed record GrammarTrigger(string Grammar, string Marker, bool AtStart)
{
    /// <summary>How the model marks thinking, when its output is split; null otherwise.</summary>
    public ReasoningSyntax? Reasoning { get; init; }

    /// <summary>The prompt opened the thinking, so the output starts inside it.</summary>
    public bool ReasoningOpen { get; init; }

    /// <summary>Control tokens' text counts as output (as the session that reads the output renders it).</summary>
    public bool RenderSpecialTokens { get; init; }

    /// <summary>The grammar for output that starts with <paramref name="prefix"/> and then the marker.</summary>
    public string WithPrefix(string prefix)
    {
        if (prefix.Length == 0)
        {
            return Grammar;
        }

        // JsonSchemaGrammar writes the root rule on the first line.
        const string Root = "root ::= ";
        var end = Grammar.IndexOf('\n', StringComparison.Ordinal);
        return $"{Root}{JsonSchemaGrammar.GbnfLiteral(prefix)} ({Grammar[Root.Length..end]}){Grammar[end..]}";
    }
}

/// <summary>
/// Follows a sequence's output, token by token, until <see cref="GrammarTrigger.Marker"/> opens in its answer. Works
/// on bytes (the markers are ASCII), so a token may end inside a character or hold the marker's end and more.
/// </summary>
internal sealed class GrammarTriggerWatch(GrammarTrigger trigger)
{
    /// <summary>How many tokens back from the marker's token a start on a whole character is looked for.</summary>
    private const int MaxTokensBack = 8;

    private readonly byte[] _marker = Encoding.UTF8.GetBytes(trigger.Marker);
    private readonly byte[]? _open = trigger.Reasoning is { } r ? Encoding.UTF8.GetBytes(r.Open) : null;
    private readonly byte[]? _close = trigger.Reasoning is { } r ? Encoding.UTF8.GetBytes(r.Close) : null;
    private readonly List<byte> _bytes = [];
    private readonly List<(int Token, int Start)> _tokens = [];
    private int _thinkingFrom = -1; // where thinking starts, once known
    private int _answerFrom = -1; // where the answer starts, once known
    private int _searchFrom; // the marker does not start before this

    public GrammarTrigger Trigger => trigger;

    /// <summary>The marker has appeared; <see cref="Start"/> tells where the grammar begins.</summary>
    public bool Fired { get; private set; }

    /// <summary>The output can no longer open the marker (a reply that must start with it did not).</summary>
    public bool Ended { get; private set; }

    /// <summary>Where in the output's bytes the marker starts, once it has fired.</summary>
    public int MarkerAt { get; private set; } = -1;

    /// <summary>Takes the next sampled token and its text; true when the marker has opened with it.</summary>
    public bool Push(int token, ReadOnlySpan<byte> piece)
    {
        if (Fired || Ended)
        {
            return false;
        }

        _tokens.Add((token, _bytes.Count));
        _bytes.AddRange(piece);
        if (AnswerFrom() is not { } answer)
        {
            return false;
        }

        var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_bytes);
        if (trigger.AtStart)
        {
            var first = SkipWhitespace(bytes, answer);
            var rest = bytes[first..];
            if (rest.StartsWith(_marker))
            {
                return Fire(first);
            }

            Ended = rest.Length > 0 && !_marker.AsSpan().StartsWith(rest);
            return false;
        }

        var from = Math.Max(answer, _searchFrom);
        var at = bytes[from..].IndexOf(_marker);
        if (at >= 0)
        {
            return Fire(from + at);
        }

        _searchFrom = Math.Max(from, bytes.Length - _marker.Length + 1);
        return false;
    }

    /// <summary>
    /// After <see cref="Fired"/>: the tokens to feed the grammar, from the one that holds the marker's start (or an
    /// earlier one, so that the text before the marker is whole characters), and that text, which the grammar is to
    /// start with. Null when no such start is near.
    /// </summary>
    public (string Prefix, List<int> Tokens)? Start()
    {
        if (!Fired)
        {
            return null;
        }

        var i = _tokens.FindLastIndex(t => t.Start <= MarkerAt);
        var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_bytes);
        for (var j = i; j >= 0 && j > i - MaxTokensBack; j--)
        {
            var prefix = bytes[_tokens[j].Start..MarkerAt];
            if (Utf8.IsValid(prefix))
            {
                return (Encoding.UTF8.GetString(prefix), _tokens.Skip(j).Select(t => t.Token).ToList());
            }
        }

        return null;
    }

    private bool Fire(int at)
    {
        Fired = true;
        MarkerAt = at;
        return true;
    }

    /// <summary>Where the answer starts, as <see cref="ReasoningSplitter"/> splits thinking; null while unknown.</summary>
    private int? AnswerFrom()
    {
        if (_answerFrom >= 0)
        {
            return _answerFrom;
        }

        if (_open is null || _close is null)
        {
            return _answerFrom = 0;
        }

        var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_bytes);
        if (_thinkingFrom < 0)
        {
            if (trigger.ReasoningOpen)
            {
                _thinkingFrom = 0;
            }
            else
            {
                var first = SkipWhitespace(bytes, 0);
                var rest = bytes[first..];
                if (rest.StartsWith(_open))
                {
                    _thinkingFrom = first + _open.Length;
                }
                else if (rest.Length == 0 || _open.AsSpan().StartsWith(rest))
                {
                    return null;
                }
                else
                {
                    return _answerFrom = 0;
                }
            }

            _searchFrom = _thinkingFrom;
        }

        var end = bytes[_searchFrom..].IndexOf(_close);
        if (end < 0)
        {
            _searchFrom = Math.Max(_searchFrom, bytes.Length - _close.Length + 1);
            return null;
        }

        _answerFrom = _searchFrom + end + _close.Length;
        _searchFrom = _answerFrom;
        return _answerFrom;
    }

    private static int SkipWhitespace(ReadOnlySpan<byte> bytes, int from)
    {
        while (from < bytes.Length && bytes[from] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
        {
            from++;
        }

        return from;
    }
}
