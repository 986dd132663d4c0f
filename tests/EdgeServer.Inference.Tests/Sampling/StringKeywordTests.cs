using System.Text;
using System.Text.RegularExpressions;
using CsCheck;
using EdgeServer.Inference.Sampling;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>
/// pattern and format become grammars that llama.cpp's engine holds to exactly (patterns are checked against
/// .NET's own regular expressions), combine with each other and with length limits, and hostile patterns are
/// refused by name, quickly, before any grammar is built.
/// </summary>
public sealed class StringKeywordTests(GrammarMatcher matcher) : IClassFixture<GrammarMatcher>
{
    private static string Schema(string pattern, string extra = "") =>
        $$"""{"type":"string","pattern":{{JsonSchemaGrammar.JsonString(pattern)}}{{extra}}}""";

    /// <summary>The JSON text the grammars write: quote, backslash and control characters escaped, all else as itself.</summary>
    private static string Json(string value)
    {
        var b = new StringBuilder("\"");
        foreach (var c in value)
        {
            b.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                < ' ' => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return b.Append('"').ToString();
    }

    [Theory]
    [InlineData(@"^[a-c]{2}-[0-9]{3}$", "ab-123|cc-000", "ab-12|ad-123|xab-123|ab-1234|")]
    [InlineData("abc", "abc|xxabcxx|abcabc", "ab|acb|")]
    [InlineData("^a|b$", "a|axx|xxb|b", "xa|bx|")]
    [InlineData("^(foo|bar)+$", "foo|barfoo", "fo|foob|")]
    [InlineData(@"^\d+(\.\d{1,2})?$", "12|1.5|0.25", "1.|1.234|a|")]
    [InlineData("^a\"b\\\\c$", "a\"b\\c", "a\"bc|ab\\c")]
    [InlineData(@"^\w+@\w+\.com$", "me@site.com|a_1@b.com", "me@site.org|@site.com")]
    [InlineData("^.{2,3}$", "éé|€a€|ab", "é|abcd|a\n")]
    [InlineData(@"^[\u00e9-\u00ff]+$", "éÿ|é", "e|")]
    [InlineData(@"^(?:a|b)*c?$", "|abba|abc|c", "cc|ca")]
    [InlineData(@"^(?<year>\d{4})-\d{2}$", "2024-05", "24-05")]
    [InlineData(@"^\s*$", "|  |\t", "a")]
    [InlineData("^[^a]$", "b|\"|\\|é|😀", "a|")]
    [InlineData("^😀+$", "😀|😀😀", "|😃")]
    [InlineData("^a+?b$", "ab|aab", "b")]
    [InlineData(@"^\$\^\.\*\+\?\(\)\[\]\{\}\/$", "$^.*+?()[]{}/", "x")]
    [InlineData("^a{2}$", "aa", "a|aaa")]
    [InlineData("^a{2,}$", "aa|aaaa", "a")]
    [InlineData("^a{,2}$", "a{,2}", "aa")]
    [InlineData("^$", "", "a")]
    [InlineData(@"^[\d-z]+$", "1-z", "a")]
    public void PatternsMatchAsInJavaScript(string pattern, string accepted, string refused)
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar(Schema(pattern)));
        foreach (var text in accepted.Split('|'))
        {
            Assert.True(grammar.Accepts(Json(text)), $"/{pattern}/ should accept {Json(text)}:\n{grammar.Text}");
        }

        foreach (var text in refused.Split('|'))
        {
            Assert.False(grammar.Accepts(Json(text)), $"/{pattern}/ should refuse {Json(text)}:\n{grammar.Text}");
        }
    }

    [Theory]
    [InlineData(@"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$", "a.b@ex.com|o'n+1@mail.ex.org", ".a@ex.com|a..b@ex.com|a@ex.c|a.@ex.com")] // zod 4's email
    [InlineData(@"^(?=.*[A-Z])(?=.*\d).{8,}$", "Abcdefg1|12345678X", "abcdefg1|Abcdefgh|Ab1")]
    [InlineData(@"^(?=.{3,5}$)[a-z]+$", "abc|abcde", "ab|abcdef|ab1")]
    [InlineData(@"^(?!admin$|root$)\w+", "adminx|rooted|bob", "admin|root|")]
    public void LookaheadsAfterTheLeadingCaretAreIntersections(string pattern, string accepted, string refused)
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar(Schema(pattern)));
        foreach (var text in accepted.Split('|'))
        {
            Assert.True(grammar.Accepts(Json(text)), $"/{pattern}/ should accept {text}");
            Assert.Matches(pattern, text);
        }

        foreach (var text in refused.Split('|'))
        {
            Assert.False(grammar.Accepts(Json(text)), $"/{pattern}/ should refuse {text}");
            Assert.DoesNotMatch(pattern, text);
        }
    }

    [Fact]
    public void RandomPatternsAgreeWithDotNetRegex()
    {
        var text = Gen.Char["ab1-"].Array[0, 6].Select(c => new string(c));
        Gen.Select(Pattern(3), Gen.Bool, Gen.Bool, text.Array[12]).Sample((body, start, end, texts) =>
        {
            var pattern = (start ? "^" : string.Empty) + body + (end ? "$" : string.Empty);
            var grammar = matcher.Compile(GrammarMatcher.Grammar(Schema(pattern)));
            foreach (var t in texts)
            {
                Assert.True(grammar.Accepts(Json(t)) == Regex.IsMatch(t, pattern, RegexOptions.None, TimeSpan.FromSeconds(5)), $"/{pattern}/ on \"{t}\"");
            }
        }, iter: 150, threads: 1);
    }

    private static Gen<string> Pattern(int depth)
    {
        var atom = Gen.OneOf("a", "b", "1", ".", "[ab]", "[^a]", @"\d", @"\w", "-", "(?:a|1)");
        if (depth == 0)
        {
            return atom;
        }

        var inner = Pattern(depth - 1);
        return Gen.OneOf(
            atom,
            Gen.Select(inner, inner, (a, b) => a + b),
            Gen.Select(inner, inner, (a, b) => $"({a}|{b})"),
            Gen.Select(inner, Gen.OneOf("*", "+", "?", "{0,2}", "{1,3}", "{2}", "*?"), (a, q) => $"({a}){q}"));
    }

    [Theory]
    [InlineData("date", "2024-02-29|1999-12-31", "2024-13-01|2024-1-01|24-01-01|2024-01-32")]
    [InlineData("time", "23:59:59Z|12:00:00.123+02:00|00:00:00-11:30", "24:00:00Z|12:00:00|12:60:00Z")]
    [InlineData("date-time", "2024-01-01T12:00:00Z|2024-06-30T23:59:59.5+01:00", "2024-01-01 12:00:00Z|2024-01-01T12:00Z")]
    [InlineData("duration", "P1D|PT1H30M|P1Y2M3DT4H5M6S|P2W|PT0S|P3M", "P|PT|1D|P1H|P1DT|P1W2D")]
    [InlineData("email", "a.b+c@example.com|x@localhost|o'neil@ex-ample.org", "a@@b|.a@b.c|a@-b.com|ab|a..b@c.d|a@b_c.com")]
    [InlineData("hostname", "example.com|a-b.c|localhost|xn--bcher-kva.example", "-a.com|a..b|a_b.com|a-.com|.com")]
    [InlineData("ipv4", "192.168.0.1|0.0.0.0|255.255.255.255", "256.1.1.1|01.1.1.1|1.1.1|1.1.1.1.1")]
    [InlineData("ipv6", "::1|::|2001:db8::ff00:42:8329|1:2:3:4:5:6:7:8|::ffff:192.0.2.128|fe80::1:2|1::|1:2:3:4:5:6::8", "1:2:3:4:5:6:7:8:9|:::|1::2::3|12345::1|g::1|1:2:3:4:5:6:7|::ffff:256.0.0.1")]
    [InlineData("uuid", "123e4567-e89b-12d3-a456-426614174000|ABCDEFAB-CDEF-ABCD-EFAB-CDEFABCDEFAB", "123e4567e89b12d3a456426614174000|123e4567-e89b-12d3-a456-42661417400")]
    public void FormatsHoldTheirStrings(string format, string accepted, string refused)
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar($$"""{"type":"string","format":"{{format}}"}"""));
        foreach (var text in accepted.Split('|'))
        {
            Assert.True(grammar.Accepts(Json(text)), $"{format} should accept {text}");
        }

        foreach (var text in refused.Split('|'))
        {
            Assert.False(grammar.Accepts(Json(text)), $"{format} should refuse {text}");
        }
    }

    [Fact]
    public void HostnameLabelsHaveAtMost63Characters()
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar("""{"type":"string","format":"hostname"}"""));
        Assert.True(grammar.Accepts(Json(new string('a', 63) + ".com")));
        Assert.False(grammar.Accepts(Json(new string('a', 64) + ".com")));
    }

    [Theory]
    [InlineData("""{"type":"string","format":"email","maxLength":10}""", "a@b.co|abcdef@g.h", "abcdefg@h.com|a@")]
    [InlineData("""{"type":"string","pattern":"^[a-z]+$","minLength":2,"maxLength":4}""", "ab|abcd", "a|abcde|ab1")]
    [InlineData("""{"type":"string","format":"ipv4","pattern":"^10\\."}""", "10.0.0.1|10.255.3.4", "11.0.0.1|10.0.0")]
    [InlineData("""{"type":"string","pattern":"x","minLength":3}""", "axb|xxx", "x|ax|abc")]
    public void PatternsFormatsAndLengthsCombine(string schema, string accepted, string refused)
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar(schema));
        foreach (var text in accepted.Split('|'))
        {
            Assert.True(grammar.Accepts(Json(text)), $"{schema} should accept {text}");
        }

        foreach (var text in refused.Split('|'))
        {
            Assert.False(grammar.Accepts(Json(text)), $"{schema} should refuse {text}");
        }
    }

    [Theory]
    [InlineData("(?=a)b", "lookahead")]
    [InlineData("(?<!a)b", "lookbehind")]
    [InlineData("(a)\\1", "backreferences")]
    [InlineData("\\k<x>", "backreferences")]
    [InlineData("\\bword\\b", "word boundary")]
    [InlineData("\\p{L}+", "property escapes")]
    [InlineData("(?i)abc", "inline flags")]
    [InlineData("a^b", "'^'")]
    [InlineData("(abc", "missing ')'")]
    [InlineData("abc)", "unmatched ')'")]
    [InlineData("[a-", "missing ']'")]
    [InlineData("[z-a]", "out of order")]
    [InlineData("*a", "nothing to repeat")]
    [InlineData("a**", "quantifier cannot follow")]
    [InlineData("a{3,2}", "out of order")]
    [InlineData("a{2001}", "above the limit of 2000")]
    [InlineData("a{99999999999999999999}", "above the limit of 2000")]
    [InlineData("\\", "lone '\\'")]
    [InlineData("\\q", "unknown escape")]
    [InlineData("\\x4", "hexadecimal digit")]
    [InlineData("(a{2000}){2000}", "more than 20000 states")]
    [InlineData("(a|b)*a(a|b){15}", "too large")]
    [InlineData("(a?){900}a{900}", "too many steps")]
    [InlineData("^(a|b)*a(a|b){12}$", "more than 4000")]
    [InlineData("[]", "no string matches")]
    public void HostilePatternsAreRefusedNamingWhy(string pattern, string why)
    {
        var e = GrammarMatcher.Refused($$$"""{"type":"object","properties":{"p":{{{Schema(pattern)}}}}}""");
        Assert.Equal("pattern", e.Keyword);
        Assert.Contains("/properties/p", e.Message, StringComparison.Ordinal);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DeeplyNestedGroupsAreRefused()
    {
        var e = GrammarMatcher.Refused(Schema(new string('(', 40) + "a" + new string(')', 40)));
        Assert.Contains("nested deeper than 32", e.Message, StringComparison.Ordinal);
        Assert.True(matcher.Accepts(GrammarMatcher.Grammar(Schema(new string('(', 30) + "a" + new string(')', 30))), Json("bab")));
    }

    [Fact]
    public void ALongPatternIsRefused()
    {
        var e = GrammarMatcher.Refused(Schema(new string('a', 1001)));
        Assert.Contains("at most 1000 characters", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ManyCostlyPatternsShareOneBound()
    {
        // Each pattern alone is fine (some 2000 rules); together they pass the bound on one grammar's automata.
        var properties = string.Join(",", Enumerable.Range(0, 40).Select(i => $"\"p{i}\":{Schema($"^x{i}(a|b)*a(a|b){{10}}$")}"));
        var e = GrammarMatcher.Refused("{\"type\":\"object\",\"properties\":{" + properties + "}}");
        Assert.Equal("pattern", e.Keyword);
        Assert.Contains("together", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CatastrophicBacktrackingPatternsAreSmallGrammars()
    {
        // Exponential for a backtracking engine, a handful of states for an automaton.
        foreach (var pattern in new[] { "^(a+)+$", "^(a|a)*b$", "^(a*)*b$", "^(x+x+)+y$", "^(.*a){12}$" })
        {
            var grammar = GrammarMatcher.Grammar(Schema(pattern));
            Assert.True(grammar.Length < 20_000, $"/{pattern}/: {grammar.Length} characters");
            Assert.False(matcher.Accepts(grammar, Json(new string('a', 40) + "!")));
        }
    }

    [Fact]
    public void UnknownFormatsAreRefusedListingTheKnownOnes()
    {
        var e = GrammarMatcher.Refused("""{"type":"string","format":"uri"}""");
        Assert.Equal("format", e.Keyword);
        Assert.Contains("email", e.Message, StringComparison.Ordinal);
        Assert.Contains("ipv6", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MaxLengthBelowMinLengthIsRefused()
    {
        var e = GrammarMatcher.Refused("""{"type":"string","minLength":5,"maxLength":2}""");
        Assert.Equal("maxLength", e.Keyword);
        Assert.Contains("no string can match", e.Message, StringComparison.Ordinal);
    }
}
