using System.Globalization;
using System.Text;

namespace EdgeServer.Inference.Text.Templates;

internal enum TokenKind
{
    Text,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

internal readonly record struct Token(TokenKind Kind, string Value, int Position)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;

    public bool IsName(string value) => Is(TokenKind.Name, value);

    public bool IsOperator(string value) => Is(TokenKind.Operator, value);

    public override string ToString() => Kind is TokenKind.End ? "end of template" : $"'{Value}'";
}

/// <summary>
/// Splits a template into text and tag tokens the way Jinja2 does with the settings Hugging Face renders chat
/// templates with: trim_blocks and lstrip_blocks on, '-' and '+' whitespace control, line endings normalised
/// to '\n' and one trailing newline dropped.
/// </summary>
internal static class JinjaLexer
{
    private static readonly string[] Operators =
    [
        "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|",
    ];

    public static List<Token> Tokenize(string source)
    {
        source = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (source.EndsWith('\n'))
        {
            source = source[..^1];
        }

        var tokens = new List<Token>();
        var pos = 0;
        var stripNextText = false;
        var trimNextNewline = false;
        while (pos < source.Length)
        {
            var open = FindTagStart(source, pos);
            var textEnd = open < 0 ? source.Length : open;
            var text = source[pos..textEnd];
            if (stripNextText)
            {
                text = text.TrimStart();
            }
            else if (trimNextNewline && text.StartsWith('\n'))
            {
                text = text[1..];
            }

            stripNextText = trimNextNewline = false;
            if (open < 0)
            {
                Emit(tokens, text, textEnd);
                break;
            }

            var kind = source[open + 1];
            var marker = open + 2 < source.Length ? source[open + 2] : '\0';
            if (marker == '-')
            {
                text = text.TrimEnd();
            }
            else if (marker != '+' && kind is '%' or '#')
            {
                // lstrip_blocks: drop spaces and tabs between the line start and a block or comment tag.
                var original = source.AsSpan(pos, textEnd - pos);
                var newline = original.LastIndexOf('\n');
                var tail = original[(newline + 1)..];
                if ((newline >= 0 || pos == 0 || source[pos - 1] == '\n') && tail.Trim(" \t").IsEmpty)
                {
                    text = text[..(text.Length - Math.Min(text.Length, tail.Length))];
                }
            }

            Emit(tokens, text, open);
            pos = open + 2 + (marker is '-' or '+' ? 1 : 0);
            if (kind == '#')
            {
                var close = source.IndexOf("#}", pos, StringComparison.Ordinal);
                if (close < 0)
                {
                    throw new TemplateSyntaxException("a comment is not closed with '#}'", open);
                }

                (stripNextText, trimNextNewline) = CloseMarks(source, close, block: true);
                pos = close + 2;
                continue;
            }

            var block = kind == '%';
            tokens.Add(new Token(block ? TokenKind.BlockBegin : TokenKind.VariableBegin, block ? "{%" : "{{", open));
            var closer = block ? "%}" : "}}";
            pos = LexExpression(source, pos, closer, tokens, out var closeAt);
            (stripNextText, trimNextNewline) = CloseMarks(source, closeAt, block);
            tokens.Add(new Token(block ? TokenKind.BlockEnd : TokenKind.VariableEnd, closer, closeAt));

            // {% raw %} ... {% endraw %}: everything between is text.
            if (block && tokens.Count >= 3 && tokens[^2].IsName("raw") && tokens[^3].Kind == TokenKind.BlockBegin)
            {
                tokens.RemoveRange(tokens.Count - 3, 3);
                var end = System.Text.RegularExpressions.Regex.Match(source[pos..], @"\{%[-+]?\s*endraw\s*[-+]?%\}");
                if (!end.Success)
                {
                    throw new TemplateSyntaxException("'raw' is not closed with 'endraw'", open);
                }

                var raw = source.Substring(pos, end.Index);
                if (stripNextText)
                {
                    raw = raw.TrimStart();
                }

                if (end.Value.StartsWith("{%-", StringComparison.Ordinal))
                {
                    raw = raw.TrimEnd();
                }

                Emit(tokens, raw, pos);
                (stripNextText, trimNextNewline) = (end.Value.EndsWith("-%}", StringComparison.Ordinal), !end.Value.EndsWith("+%}", StringComparison.Ordinal));
                pos += end.Index + end.Length;
            }
        }

        tokens.Add(new Token(TokenKind.End, string.Empty, source.Length));
        return tokens;
    }

    private static (bool Strip, bool TrimNewline) CloseMarks(string source, int closeAt, bool block)
    {
        var before = closeAt > 0 ? source[closeAt - 1] : '\0';
        return before switch
        {
            '-' => (true, false),
            '+' => (false, false),
            _ => (false, block),
        };
    }

    private static void Emit(List<Token> tokens, string text, int position)
    {
        if (text.Length > 0)
        {
            tokens.Add(new Token(TokenKind.Text, text, position));
        }
    }

    private static int FindTagStart(string source, int from)
    {
        for (var i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
        {
            if (source[i + 1] is '{' or '%' or '#')
            {
                return i;
            }
        }

        return -1;
    }

    private static int LexExpression(string source, int pos, string closer, List<Token> tokens, out int closeAt)
    {
        var depth = 0;
        while (true)
        {
            while (pos < source.Length && char.IsWhiteSpace(source[pos]))
            {
                pos++;
            }

            if (pos >= source.Length)
            {
                throw new TemplateSyntaxException($"a tag is not closed with '{closer}'", pos);
            }

            // The closer, possibly preceded by '-' or '+'; inside brackets "}}" closes a dict, not the tag.
            var markerLength = source[pos] is '-' or '+' && string.CompareOrdinal(source, pos + 1, closer, 0, 2) == 0 ? 1 : 0;
            if (string.CompareOrdinal(source, pos + markerLength, closer, 0, 2) == 0 && (depth == 0 || closer == "%}"))
            {
                closeAt = pos + markerLength;
                return closeAt + 2;
            }

            var c = source[pos];
            if (c is '"' or '\'')
            {
                pos = LexString(source, pos, tokens);
            }
            else if (char.IsAsciiDigit(c))
            {
                var start = pos;
                while (pos < source.Length && (char.IsAsciiDigit(source[pos]) || source[pos] == '_'))
                {
                    pos++;
                }

                var isFloat = false;
                if (pos + 1 < source.Length && source[pos] == '.' && char.IsAsciiDigit(source[pos + 1]))
                {
                    isFloat = true;
                    pos++;
                    while (pos < source.Length && char.IsAsciiDigit(source[pos]))
                    {
                        pos++;
                    }
                }

                if (pos < source.Length && source[pos] is 'e' or 'E' && pos + 1 < source.Length && (char.IsAsciiDigit(source[pos + 1]) || source[pos + 1] is '+' or '-'))
                {
                    isFloat = true;
                    pos += 2;
                    while (pos < source.Length && char.IsAsciiDigit(source[pos]))
                    {
                        pos++;
                    }
                }

                tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, source[start..pos].Replace("_", string.Empty, StringComparison.Ordinal), start));
            }
            else if (char.IsLetter(c) || c == '_')
            {
                var start = pos;
                while (pos < source.Length && (char.IsLetterOrDigit(source[pos]) || source[pos] == '_'))
                {
                    pos++;
                }

                tokens.Add(new Token(TokenKind.Name, source[start..pos], start));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(source, pos, o, 0, o.Length) == 0)
                    ?? throw new TemplateSyntaxException($"unexpected character '{c}'", pos);
                depth += op is "(" or "[" or "{" ? 1 : op is ")" or "]" or "}" ? -1 : 0;
                tokens.Add(new Token(TokenKind.Operator, op, pos));
                pos += op.Length;
            }
        }
    }

    private static int LexString(string source, int pos, List<Token> tokens)
    {
        var quote = source[pos];
        var start = pos++;
        var value = new StringBuilder();
        while (true)
        {
            if (pos >= source.Length)
            {
                throw new TemplateSyntaxException("a string literal is not closed", start);
            }

            var c = source[pos++];
            if (c == quote)
            {
                break;
            }

            if (c != '\\' || pos >= source.Length)
            {
                value.Append(c);
                continue;
            }

            var e = source[pos++];
            switch (e)
            {
                case 'n': value.Append('\n'); break;
                case 't': value.Append('\t'); break;
                case 'r': value.Append('\r'); break;
                case 'b': value.Append('\b'); break;
                case 'f': value.Append('\f'); break;
                case '0': value.Append('\0'); break;
                case '\\': value.Append('\\'); break;
                case '\'': value.Append('\''); break;
                case '"': value.Append('"'); break;
                case '\n': break;
                case 'x' when pos + 2 <= source.Length:
                    value.Append((char)int.Parse(source.AsSpan(pos, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    pos += 2;
                    break;
                case 'u' when pos + 4 <= source.Length:
                    value.Append((char)int.Parse(source.AsSpan(pos, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    pos += 4;
                    break;
                default:
                    value.Append('\\').Append(e);
                    break;
            }
        }

        tokens.Add(new Token(TokenKind.String, value.ToString(), start));
        return pos;
    }
}
