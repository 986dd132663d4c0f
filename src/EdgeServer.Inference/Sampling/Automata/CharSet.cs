namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>
/// A set of Unicode scalar values (code points without the surrogates, which UTF-8 and so a grammar cannot hold),
/// as sorted, disjoint, non-touching ranges. Regular expressions name whole classes (<c>\w</c>, <c>[^"]</c>), so
/// automata read ranges rather than single characters.
/// </summary>
internal sealed class CharSet : IEquatable<CharSet>
{
    public const int MaxCodePoint = 0x10FFFF;

    private readonly (int Lo, int Hi)[] _ranges;

    private CharSet((int Lo, int Hi)[] ranges) => _ranges = ranges;

    public static CharSet Empty { get; } = new([]);

    public static CharSet All { get; } = new([(0, 0xD7FF), (0xE000, MaxCodePoint)]);

    public IReadOnlyList<(int Lo, int Hi)> Ranges => _ranges;

    public bool IsEmpty => _ranges.Length == 0;

    public static CharSet Of(int c) => Range(c, c);

    public static CharSet Of(string chars) => From(chars.EnumerateRunes().Select(r => (r.Value, r.Value)));

    public static CharSet Range(int lo, int hi) => From([(lo, hi)]);

    /// <summary>Normalises any ranges: sorted, merged, surrogates removed.</summary>
    public static CharSet From(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var sorted = ranges.Where(r => r.Lo <= r.Hi).OrderBy(r => r.Lo).ToList();
        var merged = new List<(int Lo, int Hi)>();
        foreach (var (lo, hi) in sorted)
        {
            if (merged.Count > 0 && lo <= merged[^1].Hi + 1)
            {
                merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, hi));
            }
            else
            {
                merged.Add((lo, hi));
            }
        }

        return new CharSet([.. merged]).Intersect(All, clip: true);
    }

    public bool Contains(int c)
    {
        int lo = 0, hi = _ranges.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            if (c < _ranges[mid].Lo)
            {
                hi = mid - 1;
            }
            else if (c > _ranges[mid].Hi)
            {
                lo = mid + 1;
            }
            else
            {
                return true;
            }
        }

        return false;
    }

    public CharSet Union(CharSet other) => other.IsEmpty ? this : IsEmpty ? other : From(_ranges.Concat(other._ranges));

    public CharSet Intersect(CharSet other) =>
        IsEmpty || other.IsEmpty || _ranges[^1].Hi < other._ranges[0].Lo || other._ranges[^1].Hi < _ranges[0].Lo ? Empty : Intersect(other, clip: false);

    private CharSet Intersect(CharSet other, bool clip)
    {
        if (_ranges.Length == 1 && other._ranges.Length == 1)
        {
            var (lo, hi) = (Math.Max(_ranges[0].Lo, other._ranges[0].Lo), Math.Min(_ranges[0].Hi, other._ranges[0].Hi));
            return lo > hi ? Empty : (lo, hi) == _ranges[0] ? this : (lo, hi) == other._ranges[0] ? other : new CharSet([(lo, hi)]);
        }

        var result = new List<(int Lo, int Hi)>();
        int i = 0, j = 0;
        while (i < _ranges.Length && j < other._ranges.Length)
        {
            var lo = Math.Max(_ranges[i].Lo, other._ranges[j].Lo);
            var hi = Math.Min(_ranges[i].Hi, other._ranges[j].Hi);
            if (lo <= hi)
            {
                result.Add((lo, hi));
            }

            if (_ranges[i].Hi < other._ranges[j].Hi)
            {
                i++;
            }
            else
            {
                j++;
            }
        }

        return clip && result.Count == _ranges.Length && result.SequenceEqual(_ranges) ? this : new CharSet([.. result]);
    }

    /// <summary>Every scalar value not in this set.</summary>
    public CharSet Complement()
    {
        var result = new List<(int Lo, int Hi)>();
        var next = 0;
        foreach (var (lo, hi) in _ranges)
        {
            if (lo > next)
            {
                result.Add((next, lo - 1));
            }

            next = hi + 1;
        }

        if (next <= MaxCodePoint)
        {
            result.Add((next, MaxCodePoint));
        }

        return From(result);
    }

    public CharSet Subtract(CharSet other) => Intersect(other.Complement());

    public bool Equals(CharSet? other) => other is not null && _ranges.AsSpan().SequenceEqual(other._ranges);

    public override bool Equals(object? obj) => Equals(obj as CharSet);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var range in _ranges)
        {
            hash.Add(range);
        }

        return hash.ToHashCode();
    }
}
