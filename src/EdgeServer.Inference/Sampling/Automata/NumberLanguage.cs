using System.Globalization;
using System.Numerics;

namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>A bound of a number range: the value times 10^<see cref="NumberLanguage.Scale"/>, and whether it is excluded.</summary>
internal readonly record struct NumberBound(BigInteger Scaled, bool Strict);

/// <summary>
/// Numbers as text, for grammars: which digit strings lie in a range (<c>minimum</c>, <c>maximum</c> and their
/// exclusive forms), and which are multiples of a decimal (<c>multipleOf</c>). A range is exact: a value is
/// compared digit by digit with the bounds, as a person compares decimals. Numbers are written without an exponent,
/// with at most <see cref="MaxDigits"/> digits before the point (the limit of every number in these grammars).
/// </summary>
internal static class NumberLanguage
{
    public const int MaxDigits = 16;

    /// <summary>Fraction digits allowed past the last one a bound decides.</summary>
    public const int FractionTail = 16;

    /// <summary>Bounds are kept exact to this many fraction digits; finer ones are rounded inwards.</summary>
    public const int Scale = 40;

    /// <summary>The longest number text read as a bound.</summary>
    public const int MaxBoundText = 100;

    private static readonly BigInteger One = BigInteger.Pow(10, Scale);

    /// <summary>The largest magnitude of an integer part: 16 nines.</summary>
    public static BigInteger IntegerCap { get; } = BigInteger.Pow(10, MaxDigits) - 1;

    private static readonly RegexNode Digit = RegexNode.Chars('0', '9');

    /// <summary>
    /// The value of JSON number text times 10^<see cref="Scale"/>, rounded up (<paramref name="roundUp"/>) or
    /// down where finer, and clamped to ±10^16 (beyond every number these grammars write). Null when
    /// <paramref name="raw"/> is longer than <see cref="MaxBoundText"/>.
    /// </summary>
    public static BigInteger? Read(string raw, bool roundUp)
    {
        if (raw.Length > MaxBoundText)
        {
            return null;
        }

        var (negative, m, significant, exponent) = Parse(raw);
        var limit = (IntegerCap + 1) * One;
        if (m.IsZero)
        {
            return BigInteger.Zero;
        }

        // Digits before the point: past 17, beyond the clamp.
        if (significant + (long)exponent > MaxDigits + 1)
        {
            return negative ? -limit : limit;
        }

        BigInteger scaled;
        var shift = exponent + Scale;
        if (shift >= 0)
        {
            scaled = m * BigInteger.Pow(10, shift);
        }
        else if (-(long)shift > significant + 1)
        {
            // Below one unit of the scale: rounds to 0 or to the smallest step away from it.
            scaled = roundUp != negative ? BigInteger.One : BigInteger.Zero;
        }
        else
        {
            var quotient = BigInteger.DivRem(m, BigInteger.Pow(10, -shift), out var remainder);
            scaled = quotient + (!remainder.IsZero && roundUp != negative ? 1 : 0);
        }

        scaled = negative ? -scaled : scaled;
        return BigInteger.Clamp(scaled, -limit, limit);
    }

    /// <summary>
    /// <c>multipleOf</c> as factor × 10^-decimals, the factor not ending in 0 while there are decimals; null with
    /// <paramref name="why"/> when it is not above zero, too long, or beyond every number these grammars write.
    /// </summary>
    public static (BigInteger Factor, int Decimals)? ReadFactor(string raw, out string? why)
    {
        why = null;
        if (raw.Length > MaxBoundText)
        {
            why = $"'multipleOf' may be written with at most {MaxBoundText} characters";
            return null;
        }

        var (negative, m, significant, exponent) = Parse(raw);
        if (negative || m.IsZero)
        {
            why = "'multipleOf' must be greater than 0";
            return null;
        }

        if (significant + (long)exponent > MaxDigits)
        {
            why = $"'multipleOf' {raw} is larger than any number here (at most {MaxDigits} digits before the point)";
            return null;
        }

        if (exponent >= 0)
        {
            return (m * BigInteger.Pow(10, exponent), 0);
        }

        var decimals = -(long)exponent;
        while (decimals > 0 && (m % 10).IsZero)
        {
            m /= 10;
            decimals--;
        }

        if (decimals > Scale)
        {
            why = $"'multipleOf' may have at most {Scale} decimal places";
            return null;
        }

        return (m, (int)decimals);
    }

    /// <summary>JSON number text as sign, digits (as an integer), their count without leading zeros, and the power of ten to scale them by.</summary>
    private static (bool Negative, BigInteger Mantissa, int Significant, int Exponent) Parse(string raw)
    {
        var negative = raw.StartsWith('-');
        var text = negative ? raw[1..] : raw;
        var e = text.IndexOfAny(['e', 'E']);
        var exponent = 0;
        if (e >= 0 && !int.TryParse(text[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out exponent))
        {
            exponent = text[e + 1] == '-' ? -1_000_000_000 : 1_000_000_000; // beyond any bound, either way
        }

        exponent = Math.Clamp(exponent, -1_000_000_000, 1_000_000_000);
        var mantissa = e < 0 ? text : text[..e];
        var point = mantissa.IndexOf('.', StringComparison.Ordinal);
        if (point >= 0)
        {
            exponent -= mantissa.Length - point - 1;
            mantissa = mantissa.Remove(point, 1);
        }

        return (negative, BigInteger.Parse(mantissa, NumberStyles.None, CultureInfo.InvariantCulture), mantissa.TrimStart('0').Length, exponent);
    }

    /// <summary>The smallest integer a lower bound admits.</summary>
    public static BigInteger LowestInteger(NumberBound bound) =>
        BigInteger.Clamp(bound.Strict ? FloorDiv(bound.Scaled, One) + 1 : CeilDiv(bound.Scaled, One), -IntegerCap - 1, IntegerCap + 1);

    /// <summary>The largest integer an upper bound admits.</summary>
    public static BigInteger HighestInteger(NumberBound bound) =>
        BigInteger.Clamp(bound.Strict ? CeilDiv(bound.Scaled, One) - 1 : FloorDiv(bound.Scaled, One), -IntegerCap - 1, IntegerCap + 1);

    /// <summary>Integers from <paramref name="lo"/> to <paramref name="hi"/>, without "-0" or leading zeros; null when none.</summary>
    public static RegexNode? Integers(BigInteger lo, BigInteger hi)
    {
        lo = BigInteger.Max(lo, -IntegerCap);
        hi = BigInteger.Min(hi, IntegerCap);
        if (lo > hi)
        {
            return null;
        }

        var options = new List<RegexNode>();
        if (hi >= 0)
        {
            options.Add(Naturals(BigInteger.Max(lo, 0), hi));
        }

        if (lo < 0)
        {
            options.Add(RegexNode.Sequence(RegexNode.Literal("-"), Naturals(BigInteger.Max(1, -hi), -lo)));
        }

        return RegexNode.Choice([.. options]);
    }

    /// <summary>Decimals between the bounds (null: no bound), without an exponent; null when none.</summary>
    public static RegexNode? Decimals(NumberBound? lo, NumberBound? hi)
    {
        if (lo is { } l && hi is { } h && (l.Scaled > h.Scaled || l.Scaled == h.Scaled && (l.Strict || h.Strict)))
        {
            return null;
        }

        var options = new List<RegexNode>();
        if (hi is not { } top || top.Scaled > 0 || top.Scaled.IsZero && !top.Strict)
        {
            var (a, aStrict) = lo is { } bottom && bottom.Scaled >= 0 ? (bottom.Scaled, bottom.Strict) : (BigInteger.Zero, false);
            if (Magnitudes(a, aStrict, hi?.Scaled, hi?.Strict ?? false) is { } positive)
            {
                options.Add(positive);
            }
        }

        if (lo is not { } floor || floor.Scaled < 0)
        {
            // Below zero: a minus and a magnitude above zero ("-0" is left to the side of zero).
            var (a, aStrict) = hi is { } ceiling && ceiling.Scaled < 0 ? (-ceiling.Scaled, ceiling.Strict) : (BigInteger.Zero, true);
            if (Magnitudes(a, aStrict, lo is { } b ? -b.Scaled : null, lo?.Strict ?? false) is { } negative)
            {
                options.Add(RegexNode.Sequence(RegexNode.Literal("-"), negative));
            }
        }

        return options.Count == 0 ? null : RegexNode.Choice([.. options]);
    }

    /// <summary>
    /// A deterministic automaton over number text whose accepted values are multiples of
    /// <paramref name="factor"/> × 10^-<paramref name="decimals"/>. It reads digits only for their value (the
    /// shape of the number comes from the range it is intersected with), and allows no more fraction digits than
    /// <paramref name="decimals"/>: every multiple can be written so.
    /// </summary>
    public static Dfa MultiplesOf(BigInteger factor, int decimals, bool integer)
    {
        if (integer)
        {
            // An integer v is a multiple of P/10^s when P/gcd(P, 10^s) divides it.
            factor /= BigInteger.GreatestCommonDivisor(factor, BigInteger.Pow(10, decimals));
            decimals = 0;
        }

        if (factor > Dfa.MaxStates || factor * (decimals + 2) > Dfa.MaxStates)
        {
            throw new AutomatonLimitException($"it needs more than {Dfa.MaxStates} states");
        }

        var p = (int)factor;
        var sign = CharSet.Of('-');
        var point = CharSet.Of('.');

        // States: r (the integer part read so far, mod p), then p + f*p + r after f fraction digits.
        int Fraction(int f, int r) => p + f * p + r;
        IEnumerable<(CharSet, int)> Next(int state)
        {
            var inFraction = state >= p;
            var f = inFraction ? (state - p) / p : -1;
            var r = state % p;
            if (!inFraction)
            {
                yield return (sign, state);
                if (decimals > 0)
                {
                    yield return (point, Fraction(0, r));
                }
            }

            if (inFraction && f >= decimals)
            {
                yield break;
            }

            for (var d = 0; d <= 9; d++)
            {
                var next = (r * 10 + d) % p;
                yield return (CharSet.Of('0' + d), inFraction ? Fraction(f + 1, next) : next);
            }
        }

        bool Accepting(int state)
        {
            var f = state >= p ? (state - p) / p : 0;
            var r = state % p;
            return r * (long)BigInteger.ModPow(10, decimals - f, p) % p == 0;
        }

        return Dfa.Build(p * (decimals + 2), Next, Accepting);
    }

    /// <summary>Canonical natural numbers from <paramref name="a"/> to <paramref name="b"/> (0 ≤ a ≤ b).</summary>
    private static RegexNode Naturals(BigInteger a, BigInteger b)
    {
        var from = a.ToString(CultureInfo.InvariantCulture);
        var to = b.ToString(CultureInfo.InvariantCulture);
        var options = new List<RegexNode>();
        for (var length = from.Length; length <= to.Length; length++)
        {
            var lo = length == from.Length ? from : "1" + new string('0', length - 1);
            var hi = length == to.Length ? to : new string('9', length);
            options.Add(SameLength(lo, hi));
        }

        return RegexNode.Choice([.. options]);
    }

    /// <summary>Digit strings of one length from <paramref name="from"/> to <paramref name="to"/>, compared digit by digit.</summary>
    private static RegexNode SameLength(string from, string to)
    {
        var i = 0;
        while (i < from.Length && from[i] == to[i])
        {
            i++;
        }

        if (i == from.Length)
        {
            return RegexNode.Literal(from);
        }

        var rest = from.Length - i - 1;
        RegexNode tail;
        if (rest == 0)
        {
            tail = RegexNode.Chars(from[i], to[i]);
        }
        else
        {
            var (fromRest, toRest) = (from[(i + 1)..], to[(i + 1)..]);
            var lowFull = fromRest.All(c => c == '0');
            var highFull = toRest.All(c => c == '9');
            var options = new List<RegexNode>();
            var (low, high) = (from[i], to[i]);
            if (!lowFull)
            {
                options.Add(RegexNode.Sequence(RegexNode.Chars(low, low), SameLength(fromRest, new string('9', rest))));
                low++;
            }

            if (!highFull)
            {
                high--;
            }

            if (low <= high)
            {
                options.Add(RegexNode.Sequence(RegexNode.Chars(low, high), RegexNode.Repeat(Digit, rest, rest)));
            }

            if (!highFull)
            {
                options.Add(RegexNode.Sequence(RegexNode.Chars(to[i], to[i]), SameLength(new string('0', rest), toRest)));
            }

            tail = RegexNode.Choice([.. options]);
        }

        return i == 0 ? tail : RegexNode.Sequence(RegexNode.Literal(from[..i]), tail);
    }

    /// <summary>Non-negative decimals from a (scaled) to b (scaled; null: up to the cap); null when none.</summary>
    private static RegexNode? Magnitudes(BigInteger a, bool aStrict, BigInteger? b, bool bStrict)
    {
        if (b >= (IntegerCap + 1) * One)
        {
            b = null;
        }

        var low = BigInteger.DivRem(a, One, out var lowFraction);
        if (low > IntegerCap)
        {
            return null;
        }

        var lowDigits = FractionDigits(lowFraction);
        var options = new List<RegexNode>();
        void Add(BigInteger integerPart, RegexNode? fraction)
        {
            if (fraction is not null)
            {
                options.Add(RegexNode.Sequence(RegexNode.Literal(integerPart.ToString(CultureInfo.InvariantCulture)), fraction));
            }
        }

        if (b is { } top)
        {
            var high = BigInteger.DivRem(top, One, out var highFraction);
            var highDigits = FractionDigits(highFraction);
            if (low == high)
            {
                Add(low, Fraction(lowDigits, aStrict, highDigits, bStrict));
            }
            else
            {
                Add(low, Fraction(lowDigits, aStrict, null, false));
                if (low + 1 <= high - 1)
                {
                    options.Add(RegexNode.Sequence(Naturals(low + 1, high - 1), AnyFraction()));
                }

                Add(high, Fraction(null, false, highDigits, bStrict));
            }
        }
        else
        {
            Add(low, Fraction(lowDigits, aStrict, null, false));
            if (low + 1 <= IntegerCap)
            {
                options.Add(RegexNode.Sequence(Naturals(low + 1, IntegerCap), AnyFraction()));
            }
        }

        return options.Count == 0 ? null : RegexNode.Choice([.. options]);
    }

    private static RegexNode AnyFraction() => RegexNode.Optional(RegexNode.Sequence(RegexNode.Literal("."), RegexNode.Repeat(Digit, 1, FractionTail)));

    private static string FractionDigits(BigInteger fraction) =>
        fraction.ToString(CultureInfo.InvariantCulture).PadLeft(Scale, '0').TrimEnd('0');

    /// <summary>
    /// The optional "." and fraction digits F (absent: F is 0) with lo ≤ F ≤ hi (or strictly), comparing digit
    /// strings as decimals; null bounds do not bind. Null when no fraction fits.
    /// </summary>
    private static RegexNode? Fraction(string? lo, bool loStrict, string? hi, bool hiStrict)
    {
        var (empty, digits) = Rest(lo ?? string.Empty, loStrict, hi ?? string.Empty, hiStrict, 0, lo is not null, hi is not null);
        var options = new List<RegexNode>();
        if (empty)
        {
            options.Add(RegexNode.Epsilon);
        }

        if (digits is not null)
        {
            options.Add(RegexNode.Sequence(RegexNode.Literal("."), digits));
        }

        return options.Count == 0 ? null : RegexNode.Choice([.. options]);
    }

    /// <summary>
    /// The digits from position <paramref name="i"/> on, when those before equal <paramref name="lo"/>'s (while
    /// <paramref name="loActive"/>) and <paramref name="hi"/>'s (while <paramref name="hiActive"/>): whether they
    /// may end here, and the non-empty continuations.
    /// </summary>
    private static (bool Empty, RegexNode? Digits) Rest(string lo, bool loStrict, string hi, bool hiStrict, int i, bool loActive, bool hiActive)
    {
        if (loActive && !loStrict && i >= lo.Length)
        {
            loActive = false; // equal to lo so far and lo has only zeros left: whatever follows is at least lo
        }

        if (!loActive && !hiActive)
        {
            return (true, RegexNode.Repeat(Digit, 1, FractionTail));
        }

        if (hiActive && i >= hi.Length)
        {
            // Equal to hi so far, and hi has only zeros left: only zeros may follow, and only if hi is included.
            return hiStrict || loActive ? (false, null) : (true, RegexNode.Repeat(RegexNode.Literal("0"), 1, FractionTail));
        }

        if (loActive && i >= lo.Length && !hiActive)
        {
            // Equal to an excluded lo, which has only zeros left: a digit above zero must come.
            return (false, RegexNode.Sequence(RegexNode.Repeat(RegexNode.Literal("0"), 0, FractionTail - 1), RegexNode.Chars('1', '9'), RegexNode.Repeat(Digit, 0, FractionTail - 1)));
        }

        var options = new List<RegexNode>();
        void Add(char first, char last, (bool Empty, RegexNode? Digits) rest)
        {
            var head = RegexNode.Chars(first, last);
            if (rest.Digits is { } more)
            {
                options.Add(RegexNode.Sequence(head, rest.Empty ? RegexNode.Optional(more) : more));
            }
            else if (rest.Empty)
            {
                options.Add(head);
            }
        }

        var l = loActive ? (i < lo.Length ? lo[i] : '0') : '0';
        var u = hiActive ? hi[i] : '9';
        if (loActive && hiActive && l == u)
        {
            Add(l, l, Rest(lo, loStrict, hi, hiStrict, i + 1, true, true));
        }
        else
        {
            var (low, high) = (l, u);
            if (loActive)
            {
                Add(l, l, Rest(lo, loStrict, hi, hiStrict, i + 1, true, false));
                low++;
            }

            if (hiActive)
            {
                high--;
            }

            if (low <= high)
            {
                Add(low, high, (true, RegexNode.Repeat(Digit, 1, FractionTail)));
            }

            if (hiActive)
            {
                Add(u, u, Rest(lo, loStrict, hi, hiStrict, i + 1, false, true));
            }
        }

        // Ending here: below an active lo (it has a digit above zero left); below an active hi, which is fine.
        return (!loActive, options.Count == 0 ? null : RegexNode.Choice([.. options]));
    }

    private static BigInteger FloorDiv(BigInteger a, BigInteger b)
    {
        var q = BigInteger.DivRem(a, b, out var r);
        return r.Sign < 0 ? q - 1 : q;
    }

    private static BigInteger CeilDiv(BigInteger a, BigInteger b)
    {
        var q = BigInteger.DivRem(a, b, out var r);
        return r.Sign > 0 ? q + 1 : q;
    }
}
