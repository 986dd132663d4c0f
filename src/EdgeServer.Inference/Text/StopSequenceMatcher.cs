namespace EdgeServer.Inference.Text;

/// <summary>
/// Finds stop sequences in generated text that arrives in pieces, including sequences that span pieces.
/// Text that could be the start of a stop sequence is held back until it is known not to be one, so a
/// client never sees any part of a stop sequence.
/// </summary>
public sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private string _pending = string.Empty;

    public StopSequenceMatcher(IEnumerable<string> stops)
    {
        _stops = stops.Where(s => s.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
    }

    /// <summary>True once a stop sequence was found; later input is ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The stop sequence that was found (the earliest in the text), once <see cref="Stopped"/>.</summary>
    public string? Matched { get; private set; }

    /// <summary>Adds generated text; returns the text that is safe to emit now.</summary>
    public string Append(string text)
    {
        if (Stopped)
        {
            return string.Empty;
        }

        if (_stops.Length == 0)
        {
            return text;
        }

        var combined = _pending + text;
        var first = -1;
        string? matched = null;
        foreach (var stop in _stops)
        {
            var at = combined.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
                matched = stop;
            }
        }

        if (first >= 0)
        {
            Stopped = true;
            Matched = matched;
            _pending = string.Empty;
            return combined[..first];
        }

        var hold = LongestStopPrefixSuffix(combined);
        _pending = combined[^hold..];
        return combined[..^hold];
    }

    /// <summary>Ends the text: what was held back is released.</summary>
    public string Flush()
    {
        var rest = _pending;
        _pending = string.Empty;
        return rest;
    }

    /// <summary>Length of the longest suffix of <paramref name="text"/> that is a proper prefix of a stop sequence.</summary>
    private int LongestStopPrefixSuffix(string text)
    {
        var best = 0;
        foreach (var stop in _stops)
        {
            for (var n = Math.Min(stop.Length - 1, text.Length); n > best; n--)
            {
                if (string.CompareOrdinal(text, text.Length - n, stop, 0, n) == 0)
                {
                    best = n;
                    break;
                }
            }
        }

        return best;
    }
}
