using System.Text.Json;
using EdgeServer.Inference.Chat;
using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.TestSupport;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>Grammars from JSON Schemas and tool lists: llama.cpp accepts each one; unenforceable keywords are named.</summary>
public sealed class GrammarTests : IDisposable
{
    private readonly LlamaModel _model;

    public GrammarTests()
    {
        TestRuntime.Ensure();
        _model = LlamaModel.Load(SuccessorModel.SharedPath);
    }

    public void Dispose() => _model.Dispose();

    public static TheoryData<string> Schemas => new()
    {
        """{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a"]}""",
        """{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"boolean"},"z":{"type":"null"}}}""",
        """{"type":"array","items":{"type":"string","minLength":1,"maxLength":3},"minItems":1,"maxItems":4}""",
        """{"type":"array","prefixItems":[{"type":"integer"},{"const":"x"}],"items":false}""",
        """{"enum":["red","green",3,null,{"k":"é"}]}""",
        """{"anyOf":[{"type":"string"},{"type":"integer"}]}""",
        """{"type":["string","null"]}""",
        """{"type":"object","additionalProperties":{"type":"integer"}}""",
        """{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}""",
        """{"type":"string","format":"date-time","description":"when"}""",
        """{"type":"string","format":"uuid"}""",
        """{"type":"object","properties":{"n":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991},"x":{"type":"number","exclusiveMinimum":0,"multipleOf":0.5}}}""",
        """{"type":"object","properties":{"e":{"type":"string","format":"email"},"ip":{"type":"string","format":"ipv6"},"d":{"type":"string","format":"duration"}}}""",
        """{"type":"string","pattern":"^[A-Z]{2}-\\d{4}$","maxLength":7}""",
        """{"title":"anything"}""",
        """{"type":"object","properties":{"quote\"d":{"type":"string"},"new\nline":{"const":"a\\b"}},"required":["quote\"d"],"additionalProperties":false}""",
    };

    [Theory]
    [MemberData(nameof(Schemas))]
    public void SchemaGrammarsParseInLlamaCpp(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        AssertParses(JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormat));
    }

    [Fact]
    public void TheAnyObjectGrammarParses() => AssertParses(JsonSchemaGrammar.AnyObject());

    [Theory]
    [InlineData(ToolCallSyntax.Generic, true)]
    [InlineData(ToolCallSyntax.Hermes, true)]
    [InlineData(ToolCallSyntax.Mistral, false)]
    [InlineData(ToolCallSyntax.Llama3, false)]
    public void ToolGrammarsParseInLlamaCpp(ToolCallSyntax syntax, bool parallel)
    {
        ToolDefinition[] tools =
        [
            new("set_light", "Switch", """{"type":"object","properties":{"room":{"enum":["kitchen","hall"]},"on":{"type":"boolean"}},"required":["room","on"]}"""),
            new("get_weather", null, """{"$defs":{"c":{"type":"string","maxLength":20}},"type":"object","properties":{"city":{"$ref":"#/$defs/c"}}}"""),
            new("ping", null, """{"type":"object","properties":{}}"""),
        ];
        AssertParses(ToolCallFormat.Grammar(syntax, tools, new ToolChoice(ToolChoiceMode.Required), parallel));
        AssertParses(ToolCallFormat.Grammar(syntax, tools, new ToolChoice(ToolChoiceMode.Function, "get_weather"), parallel));

        // Strict tools in auto mode: the lazy grammar, also as it starts after text before the marker.
        var lazy = ToolCallFormat.Trigger(syntax, [tools[0] with { Strict = true }, .. tools[1..]], parallel)!;
        AssertParses(lazy.Grammar);
        AssertParses(lazy.WithPrefix("Sure \"é\".\n"));
        Assert.Null(ToolCallFormat.Trigger(syntax, tools, parallel));
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^(a)\\1$"}""", "pattern")]
    [InlineData("""{"type":"string","minimum":0}""", "minimum")]
    [InlineData("""{"type":"number","multipleOf":0}""", "multipleOf")]
    [InlineData("""{"not":{"type":"string"}}""", "not")]
    [InlineData("""{"if":{"type":"string"},"then":{"maxLength":2}}""", "if")]
    [InlineData("""{"type":"object","patternProperties":{"^x":{}}}""", "patternProperties")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","format":"uri"}}}""", "format")]
    [InlineData("""{"$ref":"https://example.com/schema.json"}""", "$ref")]
    [InlineData("""{"type":"array","uniqueItems":true}""", "uniqueItems")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string"}},"required":["b"]}""", "required")]
    [InlineData("""{"type":"thing"}""", "type")]
    public void UnenforceableKeywordsAreNamed(string schema, string keyword)
    {
        using var doc = JsonDocument.Parse(schema);
        var e = Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema));
        Assert.Equal(keyword, e.Keyword);
        Assert.Equal("response_format.json_schema.schema", e.Parameter);
        Assert.Contains($"'{keyword}'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LiteralsEscapeWhatGbnfReadsAsSyntax()
    {
        var literal = JsonSchemaGrammar.GbnfLiteral("a\x01\b\x1f\u007f\t\n\r\"\\z");
        Assert.Equal("\"a\\x01\\x08\\x1F\u007f\\t\\n\\r\\\"\\\\z\"", literal);
        AssertParses("root ::= " + literal);
    }

    private void AssertParses(string grammar)
    {
        var sampler = NativeMethods.llama_sampler_init_grammar(_model.Vocab, grammar, "root");
        Assert.True(sampler != IntPtr.Zero, "llama.cpp refused the grammar:\n" + grammar);
        NativeMethods.llama_sampler_free(sampler);
    }
}
