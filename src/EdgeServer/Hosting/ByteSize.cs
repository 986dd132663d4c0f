using System.Globalization;
using System.Text.RegularExpressions;

namespace EdgeServer.Hosting;

/// <summary>Human sizes for settings: "1048576", "512kb", "1mb", "2g" (binary units).</summary>
public static partial class ByteSize
{
    public const string Pattern = @"^\s*\d+\s*([kKmMgG][bB]?|[bB])?\s*$";

    public static long Parse(string text)
    {
        var match = SizeRegex().Match(text);
        if (!match.Success)
        {
            throw new FormatException($"'{text}' is not a size such as 1048576, 512kb or 1mb.");
        }

        var number = long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        var shift = char.ToLowerInvariant(match.Groups[2].Value.FirstOrDefault()) switch
        {
            'k' => 10,
            'm' => 20,
            'g' => 30,
            _ => 0,
        };
        return checked(number * (1L << shift));
    }

    [GeneratedRegex(@"^\s*(\d+)\s*([kKmMgG][bB]?|[bB])?\s*$")]
    private static partial Regex SizeRegex();
}
