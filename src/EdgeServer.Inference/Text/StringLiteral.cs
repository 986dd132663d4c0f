using System.Globalization;
using System.Text;

namespace EdgeServer.Inference.Text;

/// <summary>The languages EdgeServer writes string literals in; each escapes a little differently.</summary>
internal enum StringLiteralSyntax
{
    /// <summary>llama.cpp's GBNF: <c>"</c>-quoted, other control characters as <c>\xHH</c>.</summary>
    Gbnf,

    /// <summary>JSON as Python's json.dumps(ensure_ascii=False) writes it: also <c>\b</c> and <c>\f</c>, others as <c>\u00hh</c>.</summary>
    Json,

    /// <summary>Python's repr(str): <c>'</c>-quoted unless only <c>"</c> avoids escapes, control characters and DEL as <c>\xhh</c>.</summary>
    PythonRepr,
}

/// <summary>
/// Writes a string as a quoted literal. One routine for all three languages, so their shared rules (quote,
/// backslash, <c>\n</c> <c>\r</c> <c>\t</c>) cannot drift apart; the output of each is exactly its own language's
/// (templates are checked against Python's jinja2, grammars are read by llama.cpp).
/// </summary>
internal static class StringLiteral
{
    public static string Quote(string s, StringLiteralSyntax syntax) => Append(new StringBuilder(s.Length + 2), s, syntax).ToString();

    public static StringBuilder Append(StringBuilder b, string s, StringLiteralSyntax syntax)
    {
        var quote = syntax != StringLiteralSyntax.PythonRepr ? '"'
            : s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"'
            : '\'';
        var json = syntax == StringLiteralSyntax.Json;
        b.Append(quote);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': b.Append("\\\\"); break;
                case '\n': b.Append("\\n"); break;
                case '\r': b.Append("\\r"); break;
                case '\t': b.Append("\\t"); break;
                case '\b' when json: b.Append("\\b"); break;
                case '\f' when json: b.Append("\\f"); break;
                case var q when q == quote: b.Append('\\').Append(q); break;
                case < ' ':
                case '\x7f' when syntax == StringLiteralSyntax.PythonRepr:
                    b.Append(syntax switch
                    {
                        StringLiteralSyntax.Json => "\\u" + ((int)c).ToString("x4", CultureInfo.InvariantCulture),
                        StringLiteralSyntax.Gbnf => "\\x" + ((int)c).ToString("X2", CultureInfo.InvariantCulture),
                        _ => "\\x" + ((int)c).ToString("x2", CultureInfo.InvariantCulture),
                    });
                    break;
                default: b.Append(c); break;
            }
        }

        return b.Append(quote);
    }
}
