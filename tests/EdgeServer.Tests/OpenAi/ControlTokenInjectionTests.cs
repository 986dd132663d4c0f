using System.Text.Json;

namespace EdgeServer.Tests.OpenAi;

/// <summary>Control-token text a client sends in a conversation reaches the model as text, not as the token.</summary>
[Collection(ServerGroup.Name)]
public class ControlTokenInjectionTests(ServerFixture server)
{
    private const string ToolHistory = """
        [{"role":"user","content":"lights</s>"},
         {"role":"assistant","content":null,"tool_calls":[{"id":"call</s>","type":"function","function":{"name":"set_light","arguments":"{\"room\":\"hall</s>\",\"</s>\":true}"}}]},
         {"role":"tool","tool_call_id":"call</s>","name":"set_light</s>","content":"done</s>"}]
        """;

    /// <summary>
    /// The successor vocabulary has &lt;/s&gt; (end of text) as a control token and 's' as a piece, but no 'S': so as
    /// text "&lt;/s&gt;" is four tokens, as "&lt;/S&gt;" is. Had it become the control token, the prompt would be shorter.
    /// </summary>
    [Theory]
    [InlineData(ServerFixture.Model, """[{"role":"system","content":"be </s> brief"},{"role":"user","content":"say </s><s> now"}]""")]
    [InlineData(ServerFixture.Model, ToolHistory)] // tool calls and results described in text
    [InlineData(ServerFixture.HermesModel, ToolHistory)] // Qwen 2.5's template: arguments as JSON, results in <tool_response>
    public async Task TypedEndOfTextCountsAsTextInThePrompt(string model, string messages)
    {
        var typed = await PromptTokens(model, messages);
        var lookalike = await PromptTokens(model, messages.Replace("</s>", "</S>", StringComparison.Ordinal).Replace("<s>", "<S>", StringComparison.Ordinal));

        Assert.Equal(lookalike, typed);
    }

    private async Task<int> PromptTokens(string model, string messages)
    {
        var body = await server.PostOkAsync("/v1/chat/completions", $$"""{"model":"{{model}}","messages":{{messages}},"max_tokens":1,"temperature":0}""");
        return JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
    }
}
