using System.Text;
using EdgeServer.Inference.Chat;
using EdgeServer.Inference.Sampling;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>Where a lazy grammar starts: the marker in the answer, however the tokens cut it.</summary>
public sealed class GrammarTriggerTests
{
    private static readonly GrammarTrigger Hermes = new("root ::= \"<tool_call>\" x\nx ::= \"!\"\n", "<tool_call>", AtStart: false);

    [Fact]
    public void AMarkerCutAcrossTokensFiresWhereItEndsAndStartsAtTheTokenThatHoldsItsStart()
    {
        var (fired, watch) = Push(Hermes, "Sure", ". <tool", "_call>\n{\"na");

        Assert.Equal(2, fired);
        var (prefix, tokens) = watch.Start()!.Value;
        Assert.Equal(". ", prefix);
        Assert.Equal([1, 2], tokens);
    }

    [Fact]
    public void TheStartMovesBackToAWholeCharacter()
    {
        // "é" is C3 A9: the token with the marker begins with the character's second byte.
        var watch = new GrammarTriggerWatch(Hermes);
        watch.Push(0, "x"u8);
        watch.Push(1, [0xC3]);
        Assert.True(watch.Push(2, [0xA9, .. "<tool_call>"u8]));

        var (prefix, tokens) = watch.Start()!.Value;
        Assert.Equal("é", prefix);
        Assert.Equal([1, 2], tokens);
    }

    [Fact]
    public void TheMarkerInsideThinkingDoesNotFire()
    {
        var thinking = Hermes with { Reasoning = ReasoningFormat.Think };
        var (fired, _) = Push(thinking, " <th", "ink>plan <tool_call> maybe", "</th", "ink>\n\nOK ", "<tool_call>");
        Assert.Equal(4, fired);

        // The prompt opened the thinking: the marker counts only after it closes.
        var (openFired, _) = Push(thinking with { ReasoningOpen = true }, "plan <tool_call>", "</think>", "<tool_call>");
        Assert.Equal(2, openFired);

        // A reply that does not open thinking is all answer.
        var (plainFired, _) = Push(thinking, "Hi <tool_call>");
        Assert.Equal(0, plainFired);
    }

    [Fact]
    public void AMarkerThatMustStartTheReplyEndsTheWatchOnOtherText()
    {
        var generic = new GrammarTrigger("root ::= \"x\"\n", ToolCallFormat.GenericKey, AtStart: true);
        var (fired, watch) = Push(generic, "  {\"tool", "_calls\": [");
        Assert.Equal(1, fired);
        Assert.Equal("  ", watch.Start()!.Value.Prefix);

        var (never, text) = Push(generic, "{\"an", "swer\": 1}");
        Assert.Equal(-1, never);
        Assert.True(text.Ended);
    }

    [Fact]
    public void APrefixIsPutBeforeTheRootRule() =>
        Assert.Equal("root ::= \". \\\"\" (\"<tool_call>\" x)\nx ::= \"!\"\n", Hermes.WithPrefix(". \""));

    /// <summary>Pushes each piece as one token; returns the index of the one that fired (-1: none).</summary>
    private static (int Fired, GrammarTriggerWatch Watch) Push(GrammarTrigger trigger, params string[] pieces)
    {
        var watch = new GrammarTriggerWatch(trigger);
        for (var i = 0; i < pieces.Length; i++)
        {
            if (watch.Push(i, Encoding.UTF8.GetBytes(pieces[i])))
            {
                return (i, watch);
            }
        }

        return (-1, watch);
    }
}
