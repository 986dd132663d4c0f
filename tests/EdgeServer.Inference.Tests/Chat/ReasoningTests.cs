using EdgeServer.Inference.Chat;
using EdgeServer.Inference.Text.Templates;

namespace EdgeServer.Inference.Tests.Chat;

/// <summary>Splitting a reasoning model's thinking from its answer, whole and streamed at every cut.</summary>
public sealed class ReasoningTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Text", "Templates", "Fixtures");

    [Theory]
    [InlineData("Qwen-Qwen3-0.6B", "<think>")]
    [InlineData("Qwen-QwQ-32B", "<think>")]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<think>")]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "<think>")]
    [InlineData("HuggingFaceTB-SmolLM3-3B", "<think>")]
    [InlineData("LFM2.5-8B-A1B", "<think>")]
    [InlineData("mistralai-Ministral-3-14B-Reasoning-2512", "[THINK]")]
    [InlineData("Qwen-Qwen2.5-7B-Instruct", null)]
    [InlineData("meta-llama-Llama-3.2-3B-Instruct", null)]
    [InlineData("openai-gpt-oss-120b", null)]
    public void TheSyntaxIsDetectedFromTheTemplate(string template, string? open) =>
        Assert.Equal(open, ReasoningFormat.Detect(File.ReadAllText(Path.Combine(Fixtures, template + ".jinja")))?.Open);

    [Theory]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", true, true)] // its generation prompt opens <think>
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", false, false)] // ... and closes it when thinking is off
    [InlineData("Qwen-Qwen3-0.6B", true, false)] // the model opens <think> itself
    [InlineData("Qwen-Qwen3-0.6B", false, false)] // an empty <think></think> block
    public void APromptThatOpensThinkingIsRecognised(string template, bool enableThinking, bool opens)
    {
        var jinja = JinjaTemplate.Parse(File.ReadAllText(Path.Combine(Fixtures, template + ".jinja")));
        var prompt = jinja.Render(new Dictionary<string, object?>
        {
            ["messages"] = new List<object?> { new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Say <think> once" } },
            ["add_generation_prompt"] = true,
            ["enable_thinking"] = enableThinking,
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
        }, TimeProvider.System);
        Assert.Equal(opens, ReasoningFormat.OpensThinking(ReasoningFormat.Think, prompt));
    }

    [Theory]
    [InlineData("<think>\nI plan\n</think>\n\nThe answer", false, "I plan", "The answer")]
    [InlineData("  <think>plan</think>answer", false, "plan", "answer")]
    [InlineData("I plan\n</think>\n\nThe answer", true, "I plan", "The answer")] // the prompt opened it
    [InlineData("<think>\nI plan</think>The answer", true, "I plan", "The answer")] // opened twice, as some distills do
    [InlineData("<think>\nstill thinking when max_tokens ran out", false, "still thinking when max_tokens ran out", "")]
    [InlineData("still thinking", true, "still thinking", "")]
    [InlineData("The answer</think> stays answer", false, "", "The answer</think> stays answer")] // no opener
    [InlineData("\n\nHello <think>", false, "", "\n\nHello <think>")] // not at the start: answer, verbatim
    [InlineData("<think>a</think>Use <think>x</think> here", false, "a", "Use <think>x</think> here")] // tags after thinking are answer
    [InlineData("<think></think>\n\nJust the answer", false, "", "Just the answer")]
    [InlineData("<thi", false, "", "<thi")] // a reply that ends as a marker's start is answer
    [InlineData("   ", false, "", "   ")]
    [InlineData("", false, "", "")]
    public void OutputIsSplitTheSameWholeAndAtEveryCut(string output, bool startsInside, string reasoning, string answer)
    {
        for (var cut = 0; cut <= output.Length; cut++)
        {
            for (var cut2 = cut; cut2 <= output.Length; cut2++)
            {
                var splitter = new ReasoningSplitter(ReasoningFormat.Think, startsInside);
                var thought = new System.Text.StringBuilder();
                var text = new System.Text.StringBuilder();
                foreach (var piece in new[] { output[..cut], output[cut..cut2], output[cut2..] })
                {
                    var (r, a) = splitter.Push(piece, 1);
                    thought.Append(r);
                    text.Append(a);
                }

                var (lastR, lastA) = splitter.Flush();
                Assert.Equal(reasoning, thought.Append(lastR).ToString());
                Assert.Equal(answer, text.Append(lastA).ToString());
            }
        }
    }

    [Fact]
    public void AnswerTextIsHeldOnlyWhileItMayOpenThinking()
    {
        var splitter = new ReasoningSplitter(ReasoningFormat.Think, startsInside: false);
        Assert.Equal((string.Empty, string.Empty), splitter.Push("<th", 1));
        Assert.Equal((string.Empty, "<thx"), splitter.Push("x", 1)); // no longer a marker: out at once
        Assert.Equal((string.Empty, " <think>"), splitter.Push(" <think>", 1));

        var thinking = new ReasoningSplitter(ReasoningFormat.Think, startsInside: false);
        Assert.Equal((string.Empty, string.Empty), thinking.Push("<think>", 1));
        Assert.Equal(("plan", string.Empty), thinking.Push("plan </", 1)); // the closing marker's start and the space wait
        Assert.Equal((string.Empty, string.Empty), thinking.Push("think>", 1));
        Assert.Equal((string.Empty, "A"), thinking.Push("A", 1)); // the answer streams from its first character
        Assert.Equal((string.Empty, "<"), thinking.Push("<", 1));
    }

    [Fact]
    public void TokensOfThinkingAndItsMarkersAreCounted()
    {
        var splitter = new ReasoningSplitter(ReasoningFormat.Think, startsInside: false);
        foreach (var piece in new[] { "<th", "ink>", "\nI", " plan", "\n</th", "ink>", "\n\nThe", " answer" })
        {
            splitter.Push(piece, 1);
        }

        splitter.Flush();
        Assert.Equal(6, splitter.ReasoningTokens);

        var plain = new ReasoningSplitter(ReasoningFormat.Think, startsInside: false);
        plain.Push("<", 1);
        plain.Push("b>bold", 2);
        plain.Flush();
        Assert.Equal(0, plain.ReasoningTokens);
    }
}
