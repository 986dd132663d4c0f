using System.Text;
using EdgeServer.Inference.Text;

namespace EdgeServer.Inference.Tests.Text;

public class Utf8StreamDecoderTests
{
    [Fact]
    public void HoldsBytesOfAnUnfinishedCharacterUntilItCompletes()
    {
        var d = new Utf8StreamDecoder();
        var euro = Encoding.UTF8.GetBytes("€"); // E2 82 AC
        Assert.Equal("a", d.Append("a"u8));
        Assert.Equal(string.Empty, d.Append(euro.AsSpan(0, 1)));
        Assert.Equal(string.Empty, d.Append(euro.AsSpan(1, 1)));
        Assert.Equal("€b", d.Append([euro[2], (byte)'b']));
    }

    [Fact]
    public void EveryByteSplitOfMixedTextDecodesToTheSameString()
    {
        const string text = "añ€😀z";
        var bytes = Encoding.UTF8.GetBytes(text);
        for (var split = 0; split <= bytes.Length; split++)
        {
            var d = new Utf8StreamDecoder();
            var a = d.Append(bytes.AsSpan(0, split));
            var b = d.Append(bytes.AsSpan(split));
            Assert.DoesNotContain('\uFFFD', a + b);
            Assert.Equal(text, a + b + d.Flush());
        }
    }

    [Fact]
    public void AnUnfinishedCharacterAtTheEndBecomesAReplacementCharacter()
    {
        var d = new Utf8StreamDecoder();
        Assert.Equal("x", d.Append([(byte)'x', 0xE2, 0x82]));
        Assert.Equal("\uFFFD", d.Flush());
    }
}

public class StopSequenceMatcherTests
{
    [Fact]
    public void FindsAStopSequenceSpanningPiecesAndHoldsBackItsStart()
    {
        var m = new StopSequenceMatcher(["fgh"]);
        Assert.Equal("abcde", m.Append("abcdef"[..5]) + m.Append("f"));
        Assert.False(m.Stopped);
        Assert.Equal(string.Empty, m.Append("g"));
        Assert.Equal(string.Empty, m.Append("hij"));
        Assert.True(m.Stopped);
        Assert.Equal("fgh", m.Matched);
    }

    [Fact]
    public void ReleasesHeldTextWhenItTurnsOutNotToBeAStop()
    {
        var m = new StopSequenceMatcher(["END"]);
        Assert.Equal("a", m.Append("aE"));     // "E" might start "END"
        Assert.Equal(string.Empty, m.Append("N")); // "EN" still might
        Assert.Equal("ENx", m.Append("x"));     // it was not a stop after all
        Assert.False(m.Stopped);
    }

    [Fact]
    public void FlushReturnsWhatWasHeldBack()
    {
        var m = new StopSequenceMatcher(["END"]);
        Assert.Equal("abc", m.Append("abcEN"));
        Assert.Equal("EN", m.Flush());
    }

    [Fact]
    public void TheEarliestOfSeveralStopsWins()
    {
        var m = new StopSequenceMatcher(["zz", "b"]);
        Assert.Null(m.Matched);
        Assert.Equal("a", m.Append("abzz"));
        Assert.True(m.Stopped);
        Assert.Equal("b", m.Matched);
        Assert.Equal(string.Empty, m.Append("more"));
    }

    [Fact]
    public void WithoutStopsTextPassesThrough()
    {
        var m = new StopSequenceMatcher([]);
        Assert.Equal("anything", m.Append("anything"));
        Assert.Equal(string.Empty, m.Flush());
    }
}
