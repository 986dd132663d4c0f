using System.Text;

namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>A pattern outside the supported subset, or not a regular expression at all; the message says which part.</summary>
internal sealed class RegexException(string message) : Exception(message);

/// <summary>
/// Reads a JSON Schema <c>pattern</c> (an ECMA-262 regular expression, no flags) into a <see cref="RegexNode"/>
/// for the strings in which it finds a match: unanchored, as JSON Schema means it, so <c>abc</c> is "contains abc".
/// Supported: literals and escapes, <c>.</c>, classes (<c>[a-z]</c>, <c>[^...]</c>, <c>\d \w \s</c> and their
/// negations), groups (capturing, <c>(?:)</c>, named), alternation, the quantifiers <c>? * + {n} {n,} {n,m}</c>
/// (lazy ones match the same strings), <c>^</c>/<c>$</c> at the ends of the pattern or of a top-level
/// alternative, and lookaheads right after a leading <c>^</c> (<c>^(?!\.)(?=.*\d)...</c>, as zod writes for
/// emails and password rules), which become intersections of automata. Lookbehinds, other lookaheads,
/// backreferences, word boundaries and property escapes are refused by name. Length, nesting and repetition
/// counts are bounded so a pattern cannot make the grammar (or the work of building it) huge.
/// </summary>
internal sealed class RegexParser
{
    public const int MaxLength = 1000;
    public const int MaxNesting = 32;
    public const int MaxRepetition = 2000;

    private static readonly CharSet Digit = CharSet.Range('0', '9');
    private static readonly CharSet Word = CharSet.From([('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')]);
    private static readonly CharSet Space = CharSet.From(
        [('\t', '\r'), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]);
    private static readonly CharSet LineTerminators = CharSet.From([('\n', '\n'), ('\r', '\r'), (0x2028, 0x2029)]);

    private readonly int[] _text;
    private int _pos;
    private int _depth;

    private RegexParser(int[] text) => _text = text;

    /// <summary>
    /// The strings in which <paramref name="pattern"/> finds a match, as a minimal automaton. Throws
    /// <see cref="RegexException"/> for what is not supported and <see cref="AutomatonLimitException"/> past the bounds.
    /// </summary>
    public static Dfa Compile(string pattern, AutomatonBudget budget)
    {
        var parser = Reader(pattern);
        var (main, lookaheads) = parser.ParseWithLookaheads();
        var dfa = Dfa.FromRegex(main, budget).Minimize(budget);
        foreach (var (look, negative) in lookaheads)
        {
            var prefix = Dfa.FromRegex(look, budget);
            dfa = dfa.Intersect(negative ? prefix.Complement(budget) : prefix, budget).Minimize(budget);
        }

        return dfa;
    }

    /// <summary>
    /// The strings in which <paramref name="pattern"/> (without lookaheads) finds a match. Throws
    /// <see cref="RegexException"/>. For the server's own patterns, which may be longer than a request's.
    /// </summary>
    public static RegexNode ParseTrusted(string pattern) => Reader(pattern, int.MaxValue).ParsePattern();

    private static RegexParser Reader(string pattern, int maxLength = MaxLength)
    {
        if (pattern.Length > maxLength)
        {
            throw new RegexException($"a pattern may be at most {MaxLength} characters long");
        }

        var text = new List<int>(pattern.Length);
        for (var i = 0; i < pattern.Length;)
        {
            if (Rune.DecodeFromUtf16(pattern.AsSpan(i), out var rune, out var used) != System.Buffers.OperationStatus.Done)
            {
                throw new RegexException("the pattern holds a lone surrogate, which no UTF-8 text can contain");
            }

            text.Add(rune.Value);
            i += used;
        }

        return new RegexParser([.. text]);
    }

    private bool AtEnd => _pos >= _text.Length;

    private int Peek(int ahead = 0) => _pos + ahead < _text.Length ? _text[_pos + ahead] : -1;

    private bool Eat(char c)
    {
        if (Peek() == c)
        {
            _pos++;
            return true;
        }

        return false;
    }

    private RegexException Error(string what) => new($"{what} (at character {_pos + 1} of the pattern)");

    private static readonly RegexNode AnyText = RegexNode.Repeat(RegexNode.Chars(CharSet.All), 0, null);

    private RegexNode ParsePattern()
    {
        var branches = new List<RegexNode>();
        do
        {
            var anchoredStart = Eat('^');
            var terms = ParseAlternative(anchorable: true, out var anchoredEnd);
            branches.Add(RegexNode.Sequence([.. anchoredStart ? [] : new[] { AnyText }, .. terms, .. anchoredEnd ? [] : new[] { AnyText }]));
        }
        while (Eat('|'));

        if (!AtEnd)
        {
            throw Error("unmatched ')'");
        }

        return RegexNode.Choice([.. branches]);
    }

    /// <summary>
    /// The pattern, and the lookaheads right after its leading '^' as the strings each one reads from the start
    /// (must match, or must not when negative).
    /// </summary>
    private (RegexNode Main, List<(RegexNode Prefix, bool Negative)> Lookaheads) ParseWithLookaheads()
    {
        var lookaheads = new List<(RegexNode, bool)>();
        if (!(Peek() == '^' && Peek(1) == '(' && Peek(2) == '?' && Peek(3) is '=' or '!'))
        {
            return (ParsePattern(), lookaheads);
        }

        _pos++;
        while (Peek() == '(' && Peek(1) == '?' && Peek(2) is '=' or '!')
        {
            var negative = Peek(2) == '!';
            _pos += 3;
            var branches = new List<RegexNode>();
            do
            {
                var terms = ParseAlternative(anchorable: true, out var anchoredEnd);
                branches.Add(RegexNode.Sequence([.. terms, .. anchoredEnd ? [] : new[] { AnyText }]));
            }
            while (Eat('|'));

            if (!Eat(')'))
            {
                throw Error("missing ')'");
            }

            lookaheads.Add((RegexNode.Choice([.. branches]), negative));
        }

        var rest = ParseAlternative(anchorable: true, out var end);
        if (Peek() == '|')
        {
            throw Error("lookaheads are supported only in a pattern without top-level alternatives ('|')");
        }

        if (!AtEnd)
        {
            throw Error("unmatched ')'");
        }

        return (RegexNode.Sequence([.. rest, .. end ? [] : new[] { AnyText }]), lookaheads);
    }

    /// <summary>Terms up to '|', ')' or the end; <paramref name="anchorable"/>: a '$' may stand just before those.</summary>
    private List<RegexNode> ParseAlternative(bool anchorable, out bool anchoredEnd)
    {
        anchoredEnd = false;
        var terms = new List<RegexNode>();
        while (!AtEnd && Peek() != '|' && Peek() != ')')
        {
            if (Peek() == '^')
            {
                throw Error("'^' is supported only at the start of the pattern or of one of its top-level alternatives");
            }

            if (Peek() == '$')
            {
                if (anchorable && Peek(1) is -1 or '|' or ')')
                {
                    _pos++;
                    anchoredEnd = true;
                    break;
                }

                throw Error("'$' is supported only at the end of the pattern or of one of its top-level alternatives");
            }

            terms.Add(ParseQuantified(ParseAtom()));
        }

        return terms;
    }

    private RegexNode ParseDisjunction()
    {
        var options = new List<RegexNode>();
        do
        {
            options.Add(RegexNode.Sequence([.. ParseAlternative(anchorable: false, out _)]));
        }
        while (Eat('|'));

        return RegexNode.Choice([.. options]);
    }

    private RegexNode ParseQuantified(RegexNode atom)
    {
        int min;
        int? max;
        switch (Peek())
        {
            case '*':
                _pos++;
                (min, max) = (0, null);
                break;
            case '+':
                _pos++;
                (min, max) = (1, null);
                break;
            case '?':
                _pos++;
                (min, max) = (0, 1);
                break;
            case '{' when TryReadBraces(out min, out max):
                break;
            default:
                return atom;
        }

        Eat('?'); // lazy: the same strings
        if (Peek() is '*' or '+' or '?' || Peek() == '{' && TryReadBraces(out _, out _, peekOnly: true))
        {
            throw Error("a quantifier cannot follow a quantifier (nothing to repeat)");
        }

        return RegexNode.Repeat(atom, min, max);
    }

    /// <summary>Reads <c>{n}</c>, <c>{n,}</c> or <c>{n,m}</c>; anything else leaves <c>{</c> to be read as itself.</summary>
    private bool TryReadBraces(out int min, out int? max, bool peekOnly = false)
    {
        var start = _pos;
        min = 0;
        max = null;
        _pos++;
        var first = ReadNumber();
        if (first is null)
        {
            _pos = start;
            return false;
        }

        long? second = first;
        if (Eat(','))
        {
            second = ReadNumber();
        }

        if (!Eat('}'))
        {
            _pos = start;
            return false;
        }

        if (peekOnly)
        {
            _pos = start;
            return true;
        }

        if (first > MaxRepetition || second > MaxRepetition)
        {
            _pos = start;
            throw Error($"the repetition count {Math.Max(first.Value, second ?? 0)} is above the limit of {MaxRepetition}");
        }

        if (second < first)
        {
            _pos = start;
            throw Error("the numbers in a {n,m} quantifier are out of order");
        }

        min = (int)first.Value;
        max = second is { } s ? (int)s : null;
        return true;
    }

    private long? ReadNumber()
    {
        long value = 0;
        var digits = 0;
        while (Peek() is >= '0' and <= '9')
        {
            value = Math.Min(value * 10 + (Peek() - '0'), int.MaxValue);
            digits++;
            _pos++;
        }

        return digits == 0 ? null : value;
    }

    private RegexNode ParseAtom()
    {
        var c = Peek();
        switch (c)
        {
            case '(':
                return ParseGroup();
            case '[':
                _pos++;
                return RegexNode.Chars(ParseClass());
            case '.':
                _pos++;
                return RegexNode.Chars(LineTerminators.Complement());
            case '\\':
                _pos++;
                return RegexNode.Chars(ParseEscape(inClass: false));
            case '*' or '+' or '?':
                throw Error($"'{(char)c}' has nothing to repeat");
            case '{' when TryReadBraces(out _, out _, peekOnly: true):
                throw Error("'{' has nothing to repeat");
            default:
                _pos++;
                return RegexNode.Chars(CharSet.Of(c));
        }
    }

    private RegexNode ParseGroup()
    {
        _pos++;
        if (Eat('?'))
        {
            if (Peek() is '=' or '!' || Peek() == '<' && Peek(1) is '=' or '!')
            {
                throw Error("lookbehind assertions ((?<=, (?<!) are not supported, nor lookaheads ((?=, (?!) anywhere but right after a leading '^'");
            }

            if (Eat('<'))
            {
                var nameStart = _pos;
                while (!AtEnd && Peek() != '>')
                {
                    if (!Rune.IsLetterOrDigit(new Rune(Peek())) && Peek() is not ('_' or '$'))
                    {
                        throw Error("invalid group name");
                    }

                    _pos++;
                }

                if (_pos == nameStart || !Eat('>'))
                {
                    throw Error("invalid group name");
                }
            }
            else if (!Eat(':'))
            {
                throw Error("'(?' must begin '(?:', '(?<name>' (inline flags are not supported)");
            }
        }

        if (++_depth > MaxNesting)
        {
            throw Error($"groups nested deeper than {MaxNesting} levels are not supported");
        }

        var inner = ParseDisjunction();
        _depth--;
        if (!Eat(')'))
        {
            throw Error("missing ')'");
        }

        return inner;
    }

    private CharSet ParseClass()
    {
        var negated = Eat('^');
        var set = CharSet.Empty;
        while (true)
        {
            if (AtEnd)
            {
                throw Error("missing ']' to end a character class");
            }

            if (Eat(']'))
            {
                break;
            }

            var (from, fromSet) = ClassAtom();
            if (Peek() == '-' && Peek(1) is not (']' or -1))
            {
                _pos++;
                var (to, toSet) = ClassAtom();
                if (fromSet is null && toSet is null)
                {
                    if (to < from)
                    {
                        throw Error("a range in a character class is out of order");
                    }

                    set = set.Union(CharSet.Range(from, to));
                    continue;
                }

                // A class escape at either end: the '-' is itself (as ECMAScript's web compatibility rules read it).
                set = set.Union(fromSet ?? CharSet.Of(from)).Union(CharSet.Of('-')).Union(toSet ?? CharSet.Of(to));
                continue;
            }

            set = set.Union(fromSet ?? CharSet.Of(from));
        }

        return negated ? set.Complement() : set;
    }

    private (int Char, CharSet? Set) ClassAtom()
    {
        var c = Peek();
        _pos++;
        if (c != '\\')
        {
            return (c, null);
        }

        if (Eat('b'))
        {
            return ('\b', null);
        }

        if (Eat('-'))
        {
            return ('-', null);
        }

        var set = ParseEscape(inClass: true);
        return set.Ranges is [var (lo, hi)] && lo == hi ? (lo, null) : (0, set);
    }

    private CharSet ParseEscape(bool inClass)
    {
        if (AtEnd)
        {
            throw Error("the pattern ends with a lone '\\'");
        }

        var c = Peek();
        _pos++;
        switch (c)
        {
            case 'd': return Digit;
            case 'D': return Digit.Complement();
            case 'w': return Word;
            case 'W': return Word.Complement();
            case 's': return Space;
            case 'S': return Space.Complement();
            case 't': return CharSet.Of('\t');
            case 'n': return CharSet.Of('\n');
            case 'r': return CharSet.Of('\r');
            case 'v': return CharSet.Of('\v');
            case 'f': return CharSet.Of('\f');
            case 'b' or 'B' when !inClass:
                throw Error("word boundary assertions (\\b, \\B) are not supported");
            case >= '1' and <= '9':
                throw Error($"backreferences (\\{(char)c}) are not supported");
            case 'k':
                throw Error("backreferences (\\k<name>) are not supported");
            case 'p' or 'P':
                throw Error("Unicode property escapes (\\p{...}) are not supported");
            case '0':
                if (Peek() is >= '0' and <= '9')
                {
                    throw Error("octal escapes are not supported");
                }

                return CharSet.Of(0);
            case 'c':
                var letter = Peek();
                if (letter is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z'))
                {
                    _pos++;
                    return CharSet.Of(letter % 32);
                }

                throw Error("'\\c' must be followed by a letter");
            case 'x':
                return CharSet.Of(ReadHex(2));
            case 'u':
                return CharSet.Of(ReadUnicodeEscape());
            default:
                if (c < 0x80 && (char.IsAsciiLetterOrDigit((char)c) || c == '_'))
                {
                    throw Error($"unknown escape '\\{(char)c}'");
                }

                return CharSet.Of(c);
        }
    }

    private int ReadUnicodeEscape()
    {
        if (Eat('{'))
        {
            var value = 0L;
            var digits = 0;
            while (Peek() != '}')
            {
                value = value * 16 + HexValue(Peek());
                _pos++;
                if (++digits > 8 || value > CharSet.MaxCodePoint)
                {
                    throw Error("'\\u{...}' is beyond the last Unicode code point");
                }
            }

            _pos++;
            return digits == 0 ? throw Error("'\\u{}' is empty") : CheckScalar((int)value);
        }

        var unit = ReadHex(4);
        if (unit is >= 0xD800 and <= 0xDBFF && Peek() == '\\' && Peek(1) == 'u')
        {
            var back = _pos;
            _pos += 2;
            var low = ReadHex(4);
            if (low is >= 0xDC00 and <= 0xDFFF)
            {
                return char.ConvertToUtf32((char)unit, (char)low);
            }

            _pos = back;
        }

        return CheckScalar(unit);
    }

    private int CheckScalar(int value) =>
        value is >= 0xD800 and <= 0xDFFF ? throw Error("a lone surrogate escape cannot be written in UTF-8 text") : value;

    private int ReadHex(int digits)
    {
        var value = 0;
        for (var i = 0; i < digits; i++)
        {
            value = value * 16 + HexValue(Peek());
            _pos++;
        }

        return value;
    }

    private int HexValue(int c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => throw Error($"expected a hexadecimal digit, found {(c < 0 ? "the end" : "'" + char.ConvertFromUtf32(c) + "'")}"),
    };
}
