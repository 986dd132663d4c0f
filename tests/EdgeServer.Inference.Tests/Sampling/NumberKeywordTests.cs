using System.Globalization;
using CsCheck;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>
/// minimum, maximum, exclusiveMinimum, exclusiveMaximum and multipleOf become exact digit grammars: llama.cpp's
/// grammar engine accepts exactly the numbers in range (checked against plain arithmetic), and bounds no value
/// can meet are refused by name.
/// </summary>
public sealed class NumberKeywordTests(GrammarMatcher matcher) : IClassFixture<GrammarMatcher>
{
    private const long SafeInteger = 9007199254740991; // what zod's .int() writes

    [Theory]
    [InlineData("""{"type":"integer","minimum":-5,"maximum":37}""", "-5 -1 0 9 10 29 30 37", "-6 38 40 99 100 370 -10 -0 007 1.5 1e1")]
    [InlineData("""{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":100}""", "1 9 10 50 99", "0 -1 100 101 1000")]
    [InlineData("""{"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":10,"exclusiveMaximum":true}""", "1 9", "0 10")]
    [InlineData("""{"type":"integer","minimum":1.5,"maximum":4.5}""", "2 3 4", "1 5")]
    [InlineData("""{"type":"integer","minimum":100}""", "100 101 999 1000 9999999999999999", "99 0 -5 10000000000000000")]
    [InlineData("""{"type":"integer","maximum":-20}""", "-20 -21 -100 -9999999999999999", "-19 0 5 -10000000000000000")]
    [InlineData("""{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991}""",
        "0 -1 1 9007199254740991 -9007199254740991 9007199254740990 1000000000000000 999999999999999",
        "9007199254740992 -9007199254740992 9007199254741000 10000000000000000 -0")]
    [InlineData("""{"type":"integer","maximum":1e300}""", "0 -3 9999999999999999", "10000000000000000")]
    [InlineData("""{"type":"integer","multipleOf":7,"minimum":-30,"maximum":30}""", "0 7 -7 28 -28 14", "1 -1 35 -35 6 29")]
    [InlineData("""{"type":"integer","multipleOf":0.5}""", "0 1 -3 123", "1.5")]
    [InlineData("""{"type":"number","minimum":0.5,"exclusiveMaximum":2.25}""", "0.5 0.50 0.6 1 1.0 2 2.2 2.249999 2.24", "0.4 0.49999 2.25 2.250 2.3 3 -1 0")]
    [InlineData("""{"type":"number","exclusiveMinimum":0}""", "0.1 0.0001 1 123.5", "0 0.0 0.000 -0.1 -1")]
    [InlineData("""{"type":"number","minimum":-1.5,"maximum":-0.25}""", "-1.5 -1 -0.25 -0.3 -1.49", "-1.51 -0.2 0 -2 1")]
    [InlineData("""{"type":"number","minimum":3,"maximum":3}""", "3 3.0 3.00", "3.01 2.99 4")]
    [InlineData("""{"type":"number","multipleOf":0.01,"minimum":0,"maximum":10}""", "0 0.01 9.99 10 3.5 3.50", "0.001 10.01 -0.01")]
    [InlineData("""{"type":"number","multipleOf":0.25}""", "0 0.25 -0.75 10.5 3", "0.1 0.3 1.2")]
    public void RangesAreExact(string schema, string accepted, string refused)
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar(schema));
        foreach (var text in accepted.Split(' '))
        {
            Assert.True(grammar.Accepts(text), $"{schema} should accept {text}:\n{grammar.Text}");
        }

        foreach (var text in refused.Split(' '))
        {
            Assert.False(grammar.Accepts(text), $"{schema} should refuse {text}:\n{grammar.Text}");
        }
    }

    [Fact]
    public void IntegerRangesAgreeWithArithmetic()
    {
        var bound = Gen.OneOf(Gen.Long[-300, 300], Gen.Long[-SafeInteger, SafeInteger], Gen.Int[0, 15].Select(k => (long)Math.Pow(10, k)), Gen.Int[1, 16].Select(k => 1 - (long)Math.Pow(10, k)));
        Gen.Select(bound, bound, Gen.Bool, Gen.Bool, Gen.Long[-1000, 1000].Array[6]).Sample((a, b, exclusiveLow, exclusiveHigh, offsets) =>
        {
            var (lo, hi) = (Math.Min(a, b), Math.Max(a, b));
            var schema = $$"""{"type":"integer","{{(exclusiveLow ? "exclusiveMinimum" : "minimum")}}":{{lo}},"{{(exclusiveHigh ? "exclusiveMaximum" : "maximum")}}":{{hi}}}""";
            var (min, max) = (exclusiveLow ? lo + 1 : lo, exclusiveHigh ? hi - 1 : hi);
            if (min > max)
            {
                Assert.Contains("no value can match", GrammarMatcher.Refused(schema).Message, StringComparison.Ordinal);
                return;
            }

            var grammar = matcher.Compile(GrammarMatcher.Grammar(schema));
            long[] values = [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 0, .. offsets.Select(o => lo + o), .. offsets.Select(o => hi - o)];
            foreach (var v in values.Distinct())
            {
                Assert.True(grammar.Accepts(v.ToString(CultureInfo.InvariantCulture)) == (v >= min && v <= max), $"{schema} on {v}");
            }
        }, iter: 60, threads: 1);
    }

    [Fact]
    public void DecimalRangesAgreeWithArithmetic()
    {
        var bound = Gen.Int[-30000, 30000].Select(n => n / 1000m);
        var value = Gen.Int[-400000, 400000].Select(n => n / 10000m);
        Gen.Select(bound, bound, Gen.Bool, Gen.Bool, value.Array[10]).Sample((a, b, exclusiveLow, exclusiveHigh, values) =>
        {
            var (lo, hi) = (Math.Min(a, b), Math.Max(a, b));
            var schema = $$"""{"type":"number","{{(exclusiveLow ? "exclusiveMinimum" : "minimum")}}":{{Text(lo)}},"{{(exclusiveHigh ? "exclusiveMaximum" : "maximum")}}":{{Text(hi)}}}""";
            if (lo == hi && (exclusiveLow || exclusiveHigh))
            {
                Assert.Contains("no value can match", GrammarMatcher.Refused(schema).Message, StringComparison.Ordinal);
                return;
            }

            var grammar = matcher.Compile(GrammarMatcher.Grammar(schema));
            foreach (var v in values.Concat([lo, hi, lo - 0.0001m, hi + 0.0001m, lo + 0.0001m, hi - 0.0001m, 0m]).Distinct())
            {
                var inside = (exclusiveLow ? v > lo : v >= lo) && (exclusiveHigh ? v < hi : v <= hi);
                Assert.True(grammar.Accepts(Text(v)) == inside, $"{schema} on {Text(v)}");
            }
        }, iter: 60, threads: 1);
    }

    [Fact]
    public void MultiplesAgreeWithArithmetic()
    {
        var grammar = matcher.Compile(GrammarMatcher.Grammar("""{"type":"integer","multipleOf":7,"minimum":-100,"maximum":100}"""));
        for (var v = -110; v <= 110; v++)
        {
            Assert.True(grammar.Accepts(v.ToString(CultureInfo.InvariantCulture)) == (v is >= -100 and <= 100 && v % 7 == 0), $"{v}");
        }

        var quarters = matcher.Compile(GrammarMatcher.Grammar("""{"type":"number","multipleOf":0.25,"minimum":0,"maximum":3}"""));
        for (var k = -10; k <= 320; k++)
        {
            var v = k / 100m;
            Assert.True(quarters.Accepts(Text(v)) == (v is >= 0 and <= 3 && k % 25 == 0), Text(v));
        }
    }

    [Fact]
    public void TheSafeIntegerRangeIsASmallGrammar()
    {
        var grammar = GrammarMatcher.Grammar($$$"""{"type":"object","properties":{"n":{"type":"integer","minimum":{{{-SafeInteger}}},"maximum":{{{SafeInteger}}}}},"required":["n"]}""");
        Assert.InRange(grammar.Length, 1, 16_000);
        var compiled = matcher.Compile(grammar);
        Assert.True(compiled.Accepts($$"""{"n":{{SafeInteger}}}"""));
        Assert.False(compiled.Accepts($$"""{"n":{{SafeInteger + 1}}}"""));
    }

    [Theory]
    [InlineData("""{"type":"integer","minimum":10,"maximum":5}""", "maximum")]
    [InlineData("""{"type":"integer","exclusiveMinimum":4,"exclusiveMaximum":5}""", "exclusiveMaximum")]
    [InlineData("""{"type":"number","exclusiveMinimum":1,"maximum":1}""", "maximum")]
    [InlineData("""{"type":"integer","minimum":1e300}""", "minimum")]
    [InlineData("""{"type":"number","minimum":-1e300,"maximum":-1e200}""", "maximum")]
    [InlineData("""{"type":"integer","minimum":1,"maximum":6,"multipleOf":10}""", "multipleOf")]
    public void BoundsNoValueMeetsAreRefusedNamingTheKeyword(string schema, string keyword)
    {
        var e = GrammarMatcher.Refused(schema);
        Assert.Equal(keyword, e.Keyword);
        Assert.Contains("no value can match", e.Message, StringComparison.Ordinal);
        Assert.Equal("response_format.json_schema.schema", e.Parameter);
    }

    [Theory]
    [InlineData("""{"type":"integer","minimum":"0"}""", "minimum", "must be a number")]
    [InlineData("""{"type":"integer","exclusiveMinimum":true}""", "exclusiveMinimum", "needs 'minimum'")]
    [InlineData("""{"type":"integer","multipleOf":0}""", "multipleOf", "greater than 0")]
    [InlineData("""{"type":"number","multipleOf":-2}""", "multipleOf", "greater than 0")]
    [InlineData("""{"type":"number","multipleOf":1e-60}""", "multipleOf", "decimal places")]
    [InlineData("""{"type":"integer","multipleOf":1e40}""", "multipleOf", "larger than any number")]
    [InlineData("""{"type":"integer","multipleOf":7919}""", "multipleOf", "too large")]
    [InlineData("""{"type":"string","minimum":1}""", "minimum", "cannot be enforced")]
    public void InvalidNumberKeywordsAreRefusedNamingThem(string schema, string keyword, string why)
    {
        var e = GrammarMatcher.Refused(schema);
        Assert.Equal(keyword, e.Keyword);
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AHugeBoundTextIsRefused()
    {
        var e = GrammarMatcher.Refused($$"""{"type":"number","minimum":1{{new string('0', 5000)}}}""");
        Assert.Equal("minimum", e.Keyword);
        Assert.Contains("at most 100 characters", e.Message, StringComparison.Ordinal);
    }

    private static string Text(decimal v) => v == 0 ? "0" : v.ToString("0.####", CultureInfo.InvariantCulture);
}
