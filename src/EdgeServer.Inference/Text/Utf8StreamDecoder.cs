using System.Text;

namespace EdgeServer.Inference.Text;

/// <summary>
/// Turns a stream of token byte pieces into text without ever splitting a UTF-8 character: bytes of an
/// unfinished character are held until the rest arrives. Invalid sequences become U+FFFD.
/// </summary>
public sealed class Utf8StreamDecoder
{
    private readonly Decoder _decoder = new UTF8Encoding(false, false).GetDecoder();
    private char[] _chars = new char[64];

    /// <summary>Decodes <paramref name="bytes"/>; returns the text completed so far (may be empty).</summary>
    public string Append(ReadOnlySpan<byte> bytes) => Decode(bytes, flush: false);

    /// <summary>Ends the stream: held bytes of an unfinished character come out as U+FFFD.</summary>
    public string Flush() => Decode([], flush: true);

    private string Decode(ReadOnlySpan<byte> bytes, bool flush)
    {
        var needed = _decoder.GetCharCount(bytes, flush);
        if (needed > _chars.Length)
        {
            _chars = new char[Math.Max(needed, _chars.Length * 2)];
        }

        var count = _decoder.GetChars(bytes, _chars, flush);
        return count == 0 ? string.Empty : new string(_chars, 0, count);
    }
}
