using System.Text.Json;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Sampling;
using EdgeServer.TestSupport;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>
/// Schemas whose grammar llama.cpp would follow along many paths at once (its work per token grows with their
/// number) are merged where that changes nothing, and refused beyond the bound, naming where.
/// </summary>
public sealed class GrammarComplexityTests : IDisposable
{
    private readonly LlamaModel _model;

    public GrammarComplexityTests()
    {
        TestRuntime.Ensure();
        _model = LlamaModel.Load(SuccessorModel.SharedPath);
    }

    public void Dispose() => _model.Dispose();

    private static string Grammar(string schema, int max = JsonSchemaGrammar.DefaultMaxAlternatives)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema, max);
    }

    private static UnsupportedSchemaException Refused(string schema, int max = JsonSchemaGrammar.DefaultMaxAlternatives)
    {
        using var doc = JsonDocument.Parse(schema);
        return Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema, max));
    }

    [Fact]
    public void OptionsThatDifferOnlyInBoundsBecomeOne()
    {
        // The 7 KB schema that froze a model: 4 levels of 20 arrays differing only in maxItems.
        var schema = HostileSchemas.Nested(4, 20, tagged: false);
        Assert.InRange(schema.Length, 4000, 16000);
        var grammar = Grammar(schema);
        Assert.DoesNotContain("|", grammar.Split('\n').Where(l => l.StartsWith("ref-", StringComparison.Ordinal)), StringComparer.Ordinal);
        Assert.Contains("{0,19}", grammar, StringComparison.Ordinal);
        AssertParses(grammar);
    }

    [Fact]
    public void BoundsThatLeaveAGapStayApart()
    {
        var grammar = Grammar("""{"anyOf":[{"type":"string","maxLength":2},{"type":"string","minLength":3,"maxLength":4},{"type":"string","minLength":8}]}""");
        // 0-2 and 3-4 join; 8 and more stays its own option.
        Assert.Contains("char{0,4}", grammar, StringComparison.Ordinal);
        Assert.Contains("char{8,}", grammar, StringComparison.Ordinal);
        AssertParses(grammar);
    }

    [Fact]
    public void NestedOptionsThatReadAlikeAreRefusedNamingWhere()
    {
        var e = Refused(HostileSchemas.Nested(4, 20, tagged: true));
        Assert.Equal("(complexity)", e.Keyword);
        Assert.Equal("response_format.json_schema.schema", e.Parameter);
        Assert.Contains("#/$defs/l", e.Message, StringComparison.Ordinal);
        Assert.Contains("limit of 16", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(2, 4)]
    [InlineData(1, 16)]
    public void NestingWithinTheBoundIsServed(int depth, int width) => AssertParses(Grammar(HostileSchemas.Nested(depth, width, tagged: true)));

    [Fact]
    public void TheBoundIsASetting()
    {
        var schema = HostileSchemas.Nested(2, 8, tagged: true);
        Assert.Contains("limit of 16", Refused(schema, max: 16).Message, StringComparison.Ordinal);
        AssertParses(Grammar(schema, max: 64));
    }

    [Fact]
    public void ManyOptionsThatStartDifferentlyCostNothing()
    {
        var options = string.Join(",", Enumerable.Range(0, 200).Select(i => $$$"""{"type":"object","properties":{"k{{{i}}}":{"type":"integer"}},"required":["k{{{i}}}"]}"""));
        AssertParses(Grammar($$"""{"anyOf":[{{options}}]}"""));
        AssertParses(Grammar("""{"type":"array","items":{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"null"},{"type":"boolean"},{"type":"object"}]}}"""));

        // A discriminated union (OpenAI strict-mode style): the constant first property tells 40 shapes apart.
        var shapes = string.Join(",", Enumerable.Range(0, 40).Select(i => $$$"""{"type":"object","properties":{"kind":{"const":"s{{{i}}}"},"size":{"type":"integer"}},"required":["kind","size"],"additionalProperties":false}"""));
        AssertParses(Grammar("""{"type":"object","properties":{"shape":{"anyOf":[""" + shapes + """]}},"required":["shape"]}"""));
    }

    [Fact]
    public void RecursionWhoseOptionsReadAlikeIsRefused()
    {
        var e = Refused("""{"$ref":"#/$defs/t","$defs":{"t":{"anyOf":[{"type":"array","items":{"$ref":"#/$defs/t"}},{"type":"array","prefixItems":[{"$ref":"#/$defs/t"},{"const":1}],"items":false}]}}}""");
        Assert.Equal("$ref", e.Keyword);
        Assert.Contains("lead back into the schema itself", e.Message, StringComparison.Ordinal);

        // A tree whose options start differently is fine however deep it goes.
        AssertParses(Grammar("""{"$ref":"#/$defs/n","$defs":{"n":{"anyOf":[{"type":"string"},{"type":"array","items":{"$ref":"#/$defs/n"}}]}}}"""));
    }

    [Fact]
    public void RecursionBesideOptionsThatReadAlikeIsFine()
    {
        // Pydantic's `value: float | int` in a recursive model: the alike options are not on the way back.
        AssertParses(Grammar("""{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"value":{"anyOf":[{"type":"number"},{"type":"integer"}]},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["value","children"]}}}"""));
    }

    [Fact]
    public async Task SchemasThatBranchThroughRefsAreReadInLinearTime()
    {
        // Each level an anyOf of refs to the next (or to itself): walked naively, 5^16 paths.
        var recursive = """{"$ref":"#/$defs/a","$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"$ref":"#/$defs/a"},{"$ref":"#/$defs/a"},{"$ref":"#/$defs/a"},{"$ref":"#/$defs/a"}]}}}""";
        var chain = "{\"$ref\":\"#/$defs/d0\",\"$defs\":{" + string.Join(",", Enumerable.Range(0, 20).Select(i =>
            $"\"d{i}\":{{\"anyOf\":[{string.Join(",", Enumerable.Repeat(i == 19 ? "{\"type\":\"integer\"}" : $"{{\"$ref\":\"#/$defs/d{i + 1}\"}}", 4))}]}}")) + "}}";
        foreach (var schema in new[] { recursive, chain })
        {
            var outcome = await Task.Run(() => Record.Exception(() => Grammar(schema))).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.True(outcome is null or UnsupportedSchemaException, outcome?.ToString());
        }
    }

    [Fact]
    public void ConstantsBecomeOnePrefixTree()
    {
        var values = string.Join(",", Enumerable.Range(0, 1000).Select(i => $"\"country-{i:D4}\""));
        var grammar = Grammar("{\"enum\":[" + values + "]}");
        AssertParses(grammar);

        // No rule offers more ways than a character can pick (10 digits); as plain alternatives it would be 1000.
        Assert.All(grammar.Split('\n'), line => Assert.True(line.Split(" | ").Length <= 11, line));

        var consts = string.Join(",", Enumerable.Range(0, 300).Select(i => $"{{\"const\":\"aaaa{i}\"}}"));
        var merged = Grammar("{\"anyOf\":[" + consts + ",{\"type\":\"integer\"}]}");
        AssertParses(merged);
        Assert.All(merged.Split('\n'), line => Assert.True(line.Split(" | ").Length <= 11, line));
    }

    [Fact]
    public void OptionalPropertiesMakeALinearGrammar()
    {
        var names = Enumerable.Range(0, 400).Select(i => $"\"p{i}\":{{\"type\":\"integer\"}}");
        var grammar = Grammar("{\"type\":\"object\",\"properties\":{" + string.Join(",", names) + "}}");
        AssertParses(grammar);
        // Written out, every optional property would repeat all later ones: 400 * 400 / 2 references.
        Assert.InRange(grammar.Length, 1, 200_000);

        var tooMany = Enumerable.Range(0, 513).Select(i => $"\"p{i}\":{{\"type\":\"integer\"}}");
        Assert.Equal("properties", Refused("{\"type\":\"object\",\"properties\":{" + string.Join(",", tooMany) + "}}").Keyword);
    }

    [Fact]
    public void CountsLlamaCppCannotEnforceAreRefused()
    {
        // llama.cpp turns a bound above 2000 into "unbounded" without a word: that would drop the keyword silently.
        Assert.Equal("maxLength", Refused("""{"type":"string","maxLength":2001}""").Keyword);
        Assert.Equal("maxItems", Refused("""{"type":"array","maxItems":5000}""").Keyword);
        AssertParses(Grammar("""{"type":"string","maxLength":2000}"""));
    }

    private void AssertParses(string grammar)
    {
        var sampler = NativeMethods.llama_sampler_init_grammar(_model.Vocab, grammar, "root");
        Assert.True(sampler != IntPtr.Zero, "llama.cpp refused the grammar:\n" + grammar);
        NativeMethods.llama_sampler_free(sampler);
    }
}
