using System.Buffers;
using System.Text;
using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Text;

/// <summary>A stretch of a prompt split at special tokens: a special token, or raw text (<see cref="Token"/> -1).</summary>
internal readonly record struct PromptFragment(int Token, int Start, int Length)
{
    public bool IsToken => Token >= 0;
}

/// <summary>
/// A vocabulary's special tokens (control, user-defined and unknown), matched the way llama.cpp's tokenizer
/// matches them when it parses special tokens (tokenizer_st_partition in llama-vocab.cpp): the longest text
/// first, everywhere in the text, each token dropping the whitespace beside it its strip attributes name.
/// It also finds, in text a caller supplied, the control and unknown token texts, which must stay text.
/// </summary>
internal sealed class SpecialTokens
{
    private const LlamaTokenAttr Special = LlamaTokenAttr.Control | LlamaTokenAttr.UserDefined | LlamaTokenAttr.Unknown;
    private const LlamaTokenAttr Reserved = LlamaTokenAttr.Control | LlamaTokenAttr.Unknown;

    private readonly (int Id, string Text, LlamaTokenAttr Attr)[] _tokens;
    private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _reserved;
    private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _heads;
    private readonly HashSet<string>.AlternateLookup<ReadOnlySpan<char>> _tails;
    private readonly int _longest;

    public SpecialTokens(IEnumerable<(int Id, string Text, LlamaTokenAttr Attr)> tokens)
    {
        // llama.cpp sorts by byte length, longest first; ties are in no defined order there, by id here.
        _tokens = tokens.Where(t => (t.Attr & Special) != 0 && t.Text.Length > 0)
            .OrderByDescending(t => Encoding.UTF8.GetByteCount(t.Text)).ThenBy(t => t.Id).ToArray();
        var reserved = new HashSet<string>(StringComparer.Ordinal);
        var heads = new HashSet<string>(StringComparer.Ordinal);
        var tails = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, text, attr) in _tokens)
        {
            if ((attr & Reserved) == 0)
            {
                continue;
            }

            reserved.Add(text);
            _longest = Math.Max(_longest, text.Length);
            for (var n = 1; n < text.Length; n++)
            {
                heads.Add(text[..n]);
                tails.Add(text[^n..]);
            }
        }

        _reserved = reserved.GetAlternateLookup<ReadOnlySpan<char>>();
        _heads = heads.GetAlternateLookup<ReadOnlySpan<char>>();
        _tails = tails.GetAlternateLookup<ReadOnlySpan<char>>();
        ReservedStarts = SearchValues.Create(reserved.Select(t => t[0]).Distinct().ToArray());
    }

    /// <summary>The first characters of the control and unknown token texts.</summary>
    public SearchValues<char> ReservedStarts { get; }

    public bool HasReserved => _longest > 0;

    /// <summary>Whether <paramref name="text"/> is a control or unknown token's text (its piece is only written when asked for).</summary>
    public bool IsReserved(string text) => _reserved.Contains(text);

    /// <summary>Splits <paramref name="text"/> at its special tokens as llama.cpp does with special-token parsing on.</summary>
    public List<PromptFragment> Partition(string text)
    {
        var fragments = new List<PromptFragment> { new(-1, 0, text.Length) };
        var next = new List<PromptFragment>();
        foreach (var (id, token, attr) in _tokens)
        {
            next.Clear();
            foreach (var fragment in fragments)
            {
                if (fragment.IsToken)
                {
                    next.Add(fragment);
                    continue;
                }

                int start = fragment.Start, end = fragment.Start + fragment.Length;
                int match;
                while (start < end && (match = text.IndexOf(token, start, end - start, StringComparison.Ordinal)) >= 0)
                {
                    var left = match;
                    if ((attr & LlamaTokenAttr.LStrip) != 0)
                    {
                        while (left > start && IsSpace(text[left - 1]))
                        {
                            left--;
                        }
                    }

                    if (left > start)
                    {
                        next.Add(new(-1, start, left - start));
                    }

                    next.Add(new(id, match, token.Length));
                    start = match + token.Length;
                    if ((attr & LlamaTokenAttr.RStrip) != 0)
                    {
                        while (start < end && IsSpace(text[start]))
                        {
                            start++;
                        }
                    }
                }

                if (start < end)
                {
                    next.Add(new(-1, start, end - start));
                }
            }

            (fragments, next) = (next, fragments);
        }

        return fragments;
    }

    /// <summary>The length of the longest control or unknown token text <paramref name="text"/> starts with; 0 for none.</summary>
    public int ReservedAt(ReadOnlySpan<char> text)
    {
        var found = 0;
        for (var n = 1; n <= Math.Min(_longest, text.Length); n++)
        {
            var head = text[..n];
            if (_reserved.Contains(head))
            {
                found = n;
            }

            if (!_heads.Contains(head))
            {
                break;
            }
        }

        return found;
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that a control or unknown token text begins with.</summary>
    public int ReservedHeadAtEnd(ReadOnlySpan<char> text)
    {
        for (var n = Math.Min(_longest - 1, text.Length); n > 0; n--)
        {
            if (_heads.Contains(text[^n..]))
            {
                return n;
            }
        }

        return 0;
    }

    /// <summary>The length of the longest start of <paramref name="text"/> that a control or unknown token text ends with.</summary>
    public int ReservedTailAtStart(ReadOnlySpan<char> text)
    {
        for (var n = Math.Min(_longest - 1, text.Length); n > 0; n--)
        {
            if (_tails.Contains(text[..n]))
            {
                return n;
            }
        }

        return 0;
    }

    /// <summary>C's isspace, which llama.cpp strips with.</summary>
    private static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
