using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace EdgeServer.Hosting;

/// <summary>
/// Keep-alive durations as Ollama takes them: a number of seconds, or text such as "5m", "1h30m", "90s", "250ms";
/// 0 unloads at once, a negative value ("-1", "-1m") keeps the model loaded until it must make room.
/// </summary>
public static partial class KeepAliveDuration
{
    /// <summary>
    /// Regular expression of the text form, for option validation: a bare number of seconds, or parts that each carry
    /// their unit. (Optional units between repeated parts made the old form backtrack exponentially on a digit string.)
    /// </summary>
    public const string Pattern = @"^\s*-?(?:(?:\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h))+|\d{1,9}(?:\.\d{1,9})?)\s*$";

    /// <summary>Longer text is no duration anyone writes; refused before any matching.</summary>
    private const int MaxLength = 64;

    /// <summary>A negative value: keep loaded until evicted.</summary>
    public static readonly TimeSpan Forever = Timeout.InfiniteTimeSpan;

    /// <summary>Most a keep-alive may be; longer is "forever" in effect and would overflow clocks.</summary>
    private static readonly TimeSpan Longest = TimeSpan.FromDays(3650);

    public static bool TryParse(string? text, out TimeSpan value)
    {
        value = default;
        if (text is null || text.Length > MaxLength)
        {
            return false;
        }

        var match = TextRegex().Match(text);
        if (!match.Success)
        {
            return false;
        }

        double seconds = 0;
        foreach (Capture part in match.Groups["part"].Captures)
        {
            var unit = PartRegex().Match(part.Value);
            if (!double.TryParse(unit.Groups[1].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                return false;
            }

            seconds += number * unit.Groups[2].Value switch
            {
                "ms" => 0.001,
                "m" => 60,
                "h" => 3600,
                _ => 1,
            };
        }

        value = match.Groups["minus"].Success && seconds > 0 ? Forever : FromSeconds(seconds);
        return true;
    }

    /// <summary>A JSON keep_alive: a number of seconds or a duration string; null when absent.</summary>
    public static TimeSpan? Read(JsonElement? element, string param)
    {
        if (element is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var seconds) && double.IsFinite(seconds))
        {
            return seconds < 0 ? Forever : FromSeconds(seconds);
        }

        if (value.ValueKind == JsonValueKind.String && TryParse(OpenAi.WireReader.Text(value, param), out var parsed))
        {
            return parsed;
        }

        throw OpenAi.OpenAiException.InvalidRequest(
            $"Invalid '{param}': expected a number of seconds or a duration such as \"5m\", \"1h\" or \"30s\" (0 unloads the model right after the request, a negative value keeps it loaded).",
            param, "invalid_value");
    }

    /// <summary>"5m", "90s", "-1" as settings show them.</summary>
    public static string Format(TimeSpan value) => value < TimeSpan.Zero ? "-1"
        : value.TotalMinutes >= 1 && value.Seconds == 0 && value.Milliseconds == 0 ? string.Create(CultureInfo.InvariantCulture, $"{(long)value.TotalMinutes}m")
        : string.Create(CultureInfo.InvariantCulture, $"{value.TotalSeconds:0.###}s");

    private static TimeSpan FromSeconds(double seconds) => seconds >= Longest.TotalSeconds ? Longest : TimeSpan.FromSeconds(seconds);

    [GeneratedRegex(@"^\s*(?<minus>-)?(?:(?<part>\d{1,9}(?:\.\d{1,9})?(?:ms|s|m|h))+|(?<part>\d{1,9}(?:\.\d{1,9})?))\s*$")]
    private static partial Regex TextRegex();

    [GeneratedRegex(@"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")]
    private static partial Regex PartRegex();
}
