using System.Runtime.CompilerServices;
using EdgeServer.Inference.Chat;

namespace EdgeServer.Inference.Tests.Chat;

/// <summary>Reading tool calls from model output, whole and streamed.</summary>
public sealed class ToolCallTests
{
    private static readonly ToolDefinition[] Tools =
    [
        new("set_light", null, """{"type":"object"}"""),
        new("get_weather", null, """{"type":"object"}"""),
    ];

    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Text", "Templates", "Fixtures");

    [Theory]
    [InlineData("Qwen-Qwen2.5-7B-Instruct", ToolCallSyntax.Hermes)]
    [InlineData("Qwen-Qwen3-0.6B", ToolCallSyntax.Hermes)]
    [InlineData("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", ToolCallSyntax.Hermes)]
    [InlineData("mistralai-Mistral-Nemo-Instruct-2407", ToolCallSyntax.Mistral)]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct", ToolCallSyntax.Llama3)]
    [InlineData("meta-llama-Llama-3.2-3B-Instruct", ToolCallSyntax.Llama3)]
    [InlineData("google-gemma-2-2b-it", ToolCallSyntax.Generic)]
    [InlineData("microsoft-Phi-3.5-mini-instruct", ToolCallSyntax.Generic)]
    public void TheSyntaxIsDetectedFromTheTemplate(string template, ToolCallSyntax expected) =>
        Assert.Equal(expected, ToolCallFormat.Detect(File.ReadAllText(Path.Combine(Fixtures, template + ".jinja"))));

    [Theory]
    [InlineData(ToolCallSyntax.Hermes, "<tool_call>\n{\"name\": \"set_light\", \"arguments\": {\"on\": true}}\n</tool_call>", "", "set_light", """{"on":true}""")]
    [InlineData(ToolCallSyntax.Hermes, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", "Let me check.", "get_weather", """{"city":"Oslo"}""")]
    [InlineData(ToolCallSyntax.Mistral, "[TOOL_CALLS][{\"name\": \"set_light\", \"arguments\": {\"on\": false}, \"id\": \"abc123def\"}]", "", "set_light", """{"on":false}""")]
    [InlineData(ToolCallSyntax.Llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", "get_weather", """{"city":"Paris"}""")]
    [InlineData(ToolCallSyntax.Llama3, "<|python_tag|>{\"name\": \"set_light\", \"parameters\": {}}", "", "set_light", "{}")]
    [InlineData(ToolCallSyntax.Generic, "{\"tool_calls\": [{\"name\": \"set_light\", \"arguments\": {\"room\": \"hall\"}}]}", "", "set_light", """{"room":"hall"}""")]
    public void CallsAreParsed(ToolCallSyntax syntax, string output, string content, string name, string arguments)
    {
        var parsed = ToolCallFormat.Parse(syntax, output, Tools);
        Assert.NotNull(parsed);
        Assert.Equal(content, parsed.Value.Content);
        var call = Assert.Single(parsed.Value.Calls);
        Assert.Equal(name, call.Name);
        Assert.Equal(arguments, call.Arguments);
        Assert.Equal(syntax == ToolCallSyntax.Mistral ? 9 : 29, call.Id.Length);
    }

    [Fact]
    public void ParallelCallsAreAllRead()
    {
        var parsed = ToolCallFormat.Parse(ToolCallSyntax.Hermes,
            "<tool_call>\n{\"name\": \"set_light\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>", Tools);
        Assert.Equal(["set_light", "get_weather"], parsed!.Value.Calls.Select(c => c.Name));
        Assert.NotEqual(parsed.Value.Calls[0].Id, parsed.Value.Calls[1].Id);
    }

    [Theory]
    [InlineData(ToolCallSyntax.Hermes, "<tool_call>\n{\"name\": \"launch_rocket\", \"arguments\": {}}\n</tool_call>")] // not a known tool
    [InlineData(ToolCallSyntax.Hermes, "<tool_call>\n{\"name\": \"set_light\", \"arguments\": {\n</tool_call>")] // broken JSON
    [InlineData(ToolCallSyntax.Hermes, "no call here")]
    [InlineData(ToolCallSyntax.Llama3, "{\"answer\": 42}")]
    [InlineData(ToolCallSyntax.Generic, "{\"response\": \"hello\"}")]
    [InlineData(ToolCallSyntax.Generic, "{\"tool_calls\": [{\"name\": \"set_light\", \"arguments\": \"on\"}]}")] // arguments not an object
    public void OutputThatIsNotAWellFormedCallIsText(ToolCallSyntax syntax, string output) =>
        Assert.Null(ToolCallFormat.Parse(syntax, output, Tools));

    [Fact]
    public async Task StreamedTextIsHeldOnlyWhileItMayOpenACall()
    {
        var chunks = await Run(ToolCallSyntax.Hermes, "Sure", ", one <", "moment <tool_", "call>\n{\"name\": \"set_light\", ", "\"arguments\": {}}\n</tool_call>");

        Assert.Equal(["Sure", ", one ", "<moment "], chunks.Where(c => !c.IsFinal).Select(c => c.Text));
        var final = chunks[^1];
        Assert.Equal(FinishReason.ToolCalls, final.FinishReason);
        Assert.Equal("set_light", Assert.Single(final.ToolCalls!).Name);
    }

    [Fact]
    public async Task AReplyThatIsNotACallStreamsAsText()
    {
        var chunks = await Run(ToolCallSyntax.Llama3, "Hel", "lo {there}");
        Assert.Equal("Hello {there}", string.Concat(chunks.Select(c => c.Text)));
        Assert.Equal("Hel", chunks[0].Text);
        Assert.Equal(FinishReason.Stop, chunks[^1].FinishReason);
        Assert.Null(chunks[^1].ToolCalls);

        var json = await Run(ToolCallSyntax.Llama3, "{\"a\"", ": 1}");
        Assert.Equal(["", "{\"a\": 1}"], json.Select(c => c.Text).Where(t => t.Length > 0).Prepend(string.Empty));
        Assert.Equal(FinishReason.Stop, json[^1].FinishReason);
    }

    [Theory]
    [InlineData(ToolCallSyntax.Hermes, "Wait.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Os", "Wait.", "get_weather", "{\"city\": \"Os")]
    [InlineData(ToolCallSyntax.Hermes, "<tool_call>\n{\"name\": \"set_light\", \"arg", "", "set_light", "")]
    [InlineData(ToolCallSyntax.Mistral, "[TOOL_CALLS][{\"name\": \"set_light\", \"arguments\": {\"on\": tr", "", "set_light", "{\"on\": tr")]
    [InlineData(ToolCallSyntax.Llama3, "{\"name\": \"get_weather\", \"parameters\": {", "", "get_weather", "{")]
    [InlineData(ToolCallSyntax.Generic, "{\"tool_calls\": [{\"name\": \"set_light\", \"arguments\": {\"room\": [1, 2", "", "set_light", "{\"room\": [1, 2")]
    public void ACallCutOffIsReadWithItsPartialArguments(ToolCallSyntax syntax, string output, string content, string name, string arguments)
    {
        var cut = ToolCallFormat.ParseCutOff(syntax, output, Tools);
        Assert.NotNull(cut);
        Assert.Equal(content, cut.Value.Content);
        var call = Assert.Single(cut.Value.Calls);
        Assert.Equal(name, call.Name);
        Assert.Equal(arguments, call.Arguments);
    }

    [Fact]
    public void WholeCallsBeforeTheCutAreKept()
    {
        var hermes = ToolCallFormat.ParseCutOff(ToolCallSyntax.Hermes,
            "<tool_call>\n{\"name\": \"set_light\", \"arguments\": {\"on\": true}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"ci", Tools);
        Assert.Equal([("set_light", "{\"on\":true}"), ("get_weather", "{\"ci")], hermes!.Value.Calls.Select(c => (c.Name, c.Arguments)));

        var mistral = ToolCallFormat.ParseCutOff(ToolCallSyntax.Mistral,
            "[TOOL_CALLS][{\"name\": \"set_light\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\"", Tools);
        Assert.Equal([("set_light", "{}"), ("get_weather", "{\"city\"")], mistral!.Value.Calls.Select(c => (c.Name, c.Arguments)));
    }

    [Theory]
    [InlineData(ToolCallSyntax.Hermes, "Just text, cut off")]
    [InlineData(ToolCallSyntax.Hermes, "<tool_call>\n{\"name\": \"set_li")] // the name is not whole yet
    [InlineData(ToolCallSyntax.Hermes, "<tool_call>\n{\"name\": \"launch_rocket\", \"arguments\": {")] // not a known tool
    [InlineData(ToolCallSyntax.Llama3, "The answer is")]
    [InlineData(ToolCallSyntax.Generic, "{\"response\": \"hel")]
    public void ACutOffReplyWithoutACallIsText(ToolCallSyntax syntax, string output) =>
        Assert.Null(ToolCallFormat.ParseCutOff(syntax, output, Tools));

    [Fact]
    public async Task ASessionCutOffInsideACallReportsThePartialCallAndKeepsTheRawText()
    {
        var session = new ToolCallSession(new ScriptedSession(["Sure.", "<tool_call>\n{\"name\": \"set_light\",", " \"arguments\": {\"room\": \"ha"], FinishReason.Length), ToolCallSyntax.Hermes, Tools);
        var chunks = new List<GenerationChunk>();
        await foreach (var chunk in session.ReadAllAsync())
        {
            chunks.Add(chunk);
        }

        var final = chunks[^1];
        Assert.Equal(FinishReason.Length, final.FinishReason);
        Assert.Null(final.ToolCalls);
        Assert.Equal("<tool_call>\n{\"name\": \"set_light\", \"arguments\": {\"room\": \"ha", final.Text);
        Assert.Equal("Sure.", string.Concat(chunks.SkipLast(1).Select(c => c.Text)));
        var cut = final.CutOffToolCalls;
        Assert.NotNull(cut);
        var call = Assert.Single(cut.Calls);
        Assert.Equal(("set_light", "{\"room\": \"ha"), (call.Name, call.Arguments));
        Assert.Equal(string.Empty, cut.Content);
    }

    private static async Task<List<GenerationChunk>> Run(ToolCallSyntax syntax, params string[] pieces)
    {
        var session = new ToolCallSession(new ScriptedSession(pieces), syntax, Tools);
        var result = new List<GenerationChunk>();
        await foreach (var chunk in session.ReadAllAsync())
        {
            result.Add(chunk);
        }

        return result;
    }

    private sealed class ScriptedSession(string[] pieces, FinishReason finish = FinishReason.Stop) : IGenerationSession
    {
        public Task Started => Task.CompletedTask;

        public string Model => "m";

        public int PromptTokens => 1;

        public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            foreach (var piece in pieces)
            {
                await Task.Yield();
                yield return new GenerationChunk(piece);
            }

            yield return new GenerationChunk(string.Empty, finish, new GenerationUsage(1, pieces.Length, 0));
        }
    }
}
