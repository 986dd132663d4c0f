namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>A regular language as a tree: what patterns, formats and number ranges are written in before they become automata.</summary>
internal abstract record RegexNode
{
    /// <summary>The empty string.</summary>
    public static RegexNode Epsilon { get; } = new RegexSequence([]);

    public static RegexNode Chars(CharSet set) => new RegexChars(set);

    public static RegexNode Chars(int lo, int hi) => new RegexChars(CharSet.Range(lo, hi));

    public static RegexNode Literal(string text) =>
        text.Length == 1 ? Chars(CharSet.Of(text)) : new RegexSequence([.. text.EnumerateRunes().Select(r => Chars(CharSet.Of(r.Value)))]);

    public static RegexNode Sequence(params RegexNode[] parts) => parts.Length == 1 ? parts[0] : new RegexSequence(parts);

    public static RegexNode Choice(params RegexNode[] options) => options.Length == 1 ? options[0] : new RegexChoice(options);

    public static RegexNode Repeat(RegexNode item, int min, int? max) => new RegexRepeat(item, min, max);

    public static RegexNode Optional(RegexNode item) => new RegexRepeat(item, 0, 1);
}

internal sealed record RegexChars(CharSet Set) : RegexNode;

internal sealed record RegexSequence(IReadOnlyList<RegexNode> Parts) : RegexNode;

/// <summary>Any one of the options; with none, no string at all.</summary>
internal sealed record RegexChoice(IReadOnlyList<RegexNode> Options) : RegexNode;

/// <summary><see cref="Item"/> from <see cref="Min"/> to <see cref="Max"/> times (null: without end).</summary>
internal sealed record RegexRepeat(RegexNode Item, int Min, int? Max) : RegexNode;
