using EdgeServer.Inference.Chat;
using EdgeServer.Inference.Text.Templates;

namespace EdgeServer.Inference.Tests.Text.Templates;

/// <summary>Jinja2 semantics chat templates rely on, each checked against what Python's jinja2 prints.</summary>
public sealed class JinjaTests
{
    [Theory]
    [InlineData("{{ 'a' ~ 1 ~ none }}", "a1None")]
    [InlineData("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 3 }}", "3 -4 1 2 3.5 8")]
    [InlineData("{{ 10 - 2 - 3 }} {{ 2 ** 3 ** 2 }} {{ 12 // 2 / 3 }} {{ 'a' ~ 1 + 2 ~ 'b' }} {{ false and true or true }} {{ 0 or none and 1 }}", "5 64 2.0 a12b True None")]
    [InlineData("{{ [1, 2, 3][::-1] }} {{ 'hello'[1:3] }} {{ [1, 2, 3][-1] }}", "[3, 2, 1] el 3")]
    [InlineData("{{ {'a': 1, 'b': [true, none]} }}", "{'a': 1, 'b': [True, None]}")]
    [InlineData("{{ {'a': 1, 'b': 'x\"y'} | tojson }}", "{\"a\": 1, \"b\": \"x\\\"y\"}")]
    [InlineData("{{ {'a': [1, 2]} | tojson(indent=2) }}", "{\n  \"a\": [\n    1,\n    2\n  ]\n}")]
    [InlineData("{{ 'é' | tojson }} {{ 1.0 | tojson }} {{ 0.1 + 0.2 }}", "\"é\" 1.0 0.30000000000000004")]
    [InlineData("{{ ['a\\x01\\x08\\x0c\\x1f\\x7f\\t\\n\\r\"\\'\\\\z'] }}|{{ [\"it's\"] }}|{{ 'a\\x01\\x08\\x0c\\x1f\\x7f\\t\\n\\r\"\\'\\\\z' | tojson }}",
        "['a\\x01\\x08\\x0c\\x1f\\x7f\\t\\n\\r\"\\'\\\\z']|[\"it's\"]|\"a\\u0001\\b\\f\\u001f\u007f\\t\\n\\r\\\"'\\\\z\"")]
    [InlineData("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "6")]
    [InlineData("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", "1")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }}{% if not loop.last %},{% endif %}{% endfor %}", "a=1,b=2")]
    [InlineData("{% set a, b = [1, 2] %}{{ b }}{{ a }}", "21")]
    [InlineData("{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}:{{ x }} {% endfor %}", "1:2 2:4 ")]
    [InlineData("{% for x in [] %}a{% else %}empty{% endfor %}", "empty")]
    [InlineData("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}", "1")]
    [InlineData("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }}", "Hi Ann! Hi Bo?")]
    [InlineData("{{ '  x  ' | trim }}|{{ 'a,b' .split(',') }}|{{ 'abc'.startswith(('x', 'a')) }}|{{ 'Hello' | upper }}", "x|['a', 'b']|True|HELLO")]
    [InlineData("{{ 'x' if false }}|{{ 'y' if true else 'z' }}|{{ undefined_thing | default('d') }}|{{ '' | default('e', true) }}", "|y|d|e")]
    [InlineData("{{ none is none }} {{ 1 is number }} {{ 'a' is string }} {{ {} is mapping }} {{ x is defined }} {{ 3 is divisibleby 3 }}", "True True True True False True")]
    [InlineData("{{ [{'r': 'u'}, {'r': 'a'}, {'r': 'u'}] | selectattr('r', 'equalto', 'u') | list | length }}", "2")]
    [InlineData("{{ [{'n': 'x'}, {'n': 'y'}] | map(attribute='n') | join(', ') }}", "x, y")]
    [InlineData("{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'cat' }}", "True True True True")]
    [InlineData("a\n  {%- if true %}\n  b\n  {%- endif %}\nc", "a  bc")]
    [InlineData("a\n  {% if true %}\n  b\n  {% endif %}\nc\n", "a\n  b\nc")]
    [InlineData("{# comment #}x{#- trimmed -#}  y", "xy")]
    [InlineData("{% set s %}in{{ 1 }}{% endset %}[{{ s }}]", "[in1]")]
    [InlineData("{% raw %}{{ not rendered }}{% endraw %}", "{{ not rendered }}")]
    [InlineData("{{ strftime_now('%Y-%m-%d %b') }}", "2024-07-26 Jul")]
    public void RendersLikeJinja2(string template, string expected)
    {
        var clock = new FixedClock(new DateTimeOffset(2024, 7, 26, 10, 30, 0, TimeSpan.Zero));
        Assert.Equal(expected, JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>(), clock));
    }

    [Theory]
    [InlineData("{{ x.y }}")]
    [InlineData("{{ 1 + 'a' }}")]
    [InlineData("{{ 'a' | no_such_filter }}")]
    [InlineData("{{ none.attr }}")]
    [InlineData("{% set a, b = [1] %}")]
    [InlineData("{% for a, b in [[1]] %}{% endfor %}")]
    public void ErrorsAreTemplateRenderExceptions(string template) =>
        Assert.ThrowsAny<TemplateRenderException>(() => JinjaTemplate.Parse(template).Render(new Dictionary<string, object?>()));

    [Theory]
    [InlineData("{% if x %}")]
    [InlineData("{{ 1 + }}")]
    [InlineData("{% for %}{% endfor %}")]
    [InlineData("{{ 'unclosed }}")]
    [InlineData("{% call foo() %}{% endcall %}")]
    public void SyntaxErrorsSayWhere(string template) =>
        Assert.Throws<TemplateSyntaxException>(() => JinjaTemplate.Parse(template));

    [Fact]
    public void RaiseExceptionCarriesTheTemplatesMessage()
    {
        var e = Assert.Throws<TemplateRaisedException>(() => JinjaTemplate.Parse("{{ raise_exception('Roles must alternate') }}").Render(new Dictionary<string, object?>()));
        Assert.Equal("Roles must alternate", e.Message);
    }

    [Fact]
    public void ATemplateThatRefusesSystemGetsItInTheFirstUserTurn()
    {
        var gemma = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Text", "Templates", "Fixtures", "google-gemma-2-2b-it.jinja"));
        var template = ChatTemplate.Create(gemma, null, "<bos>", "<eos>", tokenizerAddsBos: true);
        Assert.False(template.SupportsSystemRole);
        var prompt = template.Render([new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi")], [], ToolChoice.Auto, true);
        Assert.Equal("<start_of_turn>user\nBe brief.\nHi<end_of_turn>\n<start_of_turn>model\n", prompt); // the template's own <bos> is dropped: the tokenizer adds it
    }

    [Fact]
    public void AModelWithoutTemplateGetsChatMlAndToolsInTheSystemPrompt()
    {
        var template = ChatTemplate.Create(null, null, "<s>", "</s>", tokenizerAddsBos: true);
        Assert.Equal(ToolCallSyntax.Generic, template.Syntax);
        var prompt = template.Render([new ChatMessage("user", "Lights on")], [new ToolDefinition("set_light", "Switch a light", """{"type":"object"}""")], new ToolChoice(ToolChoiceMode.Required), false);
        Assert.StartsWith("<|im_start|>system\nYou can call these tools:\n[{\"name\": \"set_light\", \"description\": \"Switch a light\", \"parameters\": {\"type\":\"object\"}}]\nYou must call at least one tool.", prompt, StringComparison.Ordinal);
        Assert.EndsWith("<|im_start|>user\nLights on<|im_end|>\n<|im_start|>assistant\n", prompt, StringComparison.Ordinal);
    }

    [Fact]
    public void ToolChoiceNoneHidesTheTools()
    {
        var qwen = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Text", "Templates", "Fixtures", "Qwen-Qwen2.5-7B-Instruct.jinja"));
        var template = ChatTemplate.Create(qwen, null, "<|endoftext|>", "<|im_end|>", tokenizerAddsBos: false);
        Assert.Equal(ToolCallSyntax.Hermes, template.Syntax);
        ToolDefinition[] tools = [new("set_light", null, """{"type":"object"}""")];
        Assert.Contains("set_light", template.Render([new ChatMessage("user", "x")], tools, ToolChoice.Auto, true), StringComparison.Ordinal);
        Assert.DoesNotContain("set_light", template.Render([new ChatMessage("user", "x")], tools, new ToolChoice(ToolChoiceMode.None), true), StringComparison.Ordinal);
    }
}
