using System.Globalization;
using System.Text;
using EdgeServer.Inference.Text;

namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>Sets of characters written in GBNF: as they stand, and as they are written inside a JSON string.</summary>
internal static class GbnfChars
{
    private static readonly CharSet Controls = CharSet.Range(0, 0x1F);

    /// <summary>What a JSON string cannot hold as itself (DEL it could, but the plain string grammar escapes it too).</summary>
    private static readonly CharSet Escaped = CharSet.From([(0, 0x1F), ('"', '"'), ('\\', '\\'), (0x7F, 0x7F)]);

    /// <summary>One GBNF symbol matching exactly the characters of <paramref name="set"/> (not empty).</summary>
    public static string Class(CharSet set)
    {
        if (set.Ranges is [var (lo, hi)] && lo == hi)
        {
            return StringLiteral.Quote(char.ConvertFromUtf32(lo), StringLiteralSyntax.Gbnf);
        }

        var b = new StringBuilder("[");
        foreach (var (from, to) in set.Ranges)
        {
            Append(b, from);
            if (to != from)
            {
                if (to > from + 1)
                {
                    b.Append('-');
                }

                Append(b, to);
            }
        }

        return b.Append(']').ToString();
    }

    /// <summary>
    /// GBNF sequences that write each character of <paramref name="set"/> inside a JSON string, one way each:
    /// itself where JSON allows, else its escape. Together they match exactly the JSON text of the set's characters.
    /// </summary>
    public static IEnumerable<string> InJsonString(CharSet set)
    {
        var plain = set.Subtract(Escaped);
        if (!plain.IsEmpty)
        {
            yield return Class(plain);
        }

        if (set.Contains('"'))
        {
            yield return StringLiteral.Quote("\\\"", StringLiteralSyntax.Gbnf);
        }

        if (set.Contains('\\'))
        {
            yield return StringLiteral.Quote("\\\\", StringLiteralSyntax.Gbnf);
        }

        var controls = set.Intersect(Controls);
        if (controls.Equals(Controls))
        {
            yield return StringLiteral.Quote("\\u00", StringLiteralSyntax.Gbnf) + " [01] [0-9a-fA-F]";
        }
        else
        {
            foreach (var (lo, hi) in controls.Ranges)
            {
                for (var c = lo; c <= hi; c++)
                {
                    yield return StringLiteral.Quote(JsonEscape(c), StringLiteralSyntax.Gbnf);
                }
            }
        }

        if (set.Contains(0x7F))
        {
            yield return StringLiteral.Quote("\\u007f", StringLiteralSyntax.Gbnf);
        }
    }

    private static string JsonEscape(int c) => c switch
    {
        '\b' => "\\b",
        '\f' => "\\f",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        _ => "\\u" + c.ToString("x4", CultureInfo.InvariantCulture),
    };

    private static void Append(StringBuilder b, int c)
    {
        if (c < 0x80 && char.IsAsciiLetterOrDigit((char)c))
        {
            b.Append((char)c);
        }
        else if (c <= 0xFF)
        {
            b.Append("\\x").Append(c.ToString("X2", CultureInfo.InvariantCulture));
        }
        else if (c <= 0xFFFF)
        {
            b.Append("\\u").Append(c.ToString("X4", CultureInfo.InvariantCulture));
        }
        else
        {
            b.Append("\\U").Append(c.ToString("X8", CultureInfo.InvariantCulture));
        }
    }
}
