using System.Collections.Concurrent;

namespace EdgeServer.Inference.Sampling.Automata;

/// <summary>
/// The string formats a grammar enforces (OpenAI's strict-mode list), each as a regular expression of the
/// supported subset, so a format combines with <c>pattern</c> and length limits like any other language.
/// </summary>
internal static class StringFormats
{
    private const string Hex = "[0-9a-fA-F]";
    private const string Date = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])";
    private const string Time = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
    private const string Label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    private const string Hostname = Label + "(\\." + Label + ")*";
    private const string Octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    private const string Ipv4 = Octet + "(\\." + Octet + "){3}";
    private const string H16 = Hex + "{1,4}";
    private const string Ls32 = "(" + H16 + ":" + H16 + "|" + Ipv4 + ")";

    // RFC 4291 section 2.2, as RFC 3986 writes it: eight groups, or fewer around one "::".
    private const string Ipv6 =
        "(" + H16 + ":){6}" + Ls32
        + "|::(" + H16 + ":){5}" + Ls32
        + "|(" + H16 + ")?::(" + H16 + ":){4}" + Ls32
        + "|((" + H16 + ":){0,1}" + H16 + ")?::(" + H16 + ":){3}" + Ls32
        + "|((" + H16 + ":){0,2}" + H16 + ")?::(" + H16 + ":){2}" + Ls32
        + "|((" + H16 + ":){0,3}" + H16 + ")?::" + H16 + ":" + Ls32
        + "|((" + H16 + ":){0,4}" + H16 + ")?::" + Ls32
        + "|((" + H16 + ":){0,5}" + H16 + ")?::" + H16
        + "|((" + H16 + ":){0,6}" + H16 + ")?::";

    // RFC 3339 appendix A, which JSON Schema's "duration" names.
    private const string DurationTime = "T([0-9]+H([0-9]+M([0-9]+S)?)?|[0-9]+M([0-9]+S)?|[0-9]+S)";
    private const string DurationDate = "([0-9]+D|[0-9]+M([0-9]+D)?|[0-9]+Y([0-9]+M([0-9]+D)?)?)";

    // RFC 5321's dot-atom local part at a host name (no quoted local parts, no address literals).
    private const string Atom = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";

    /// <summary>Each format's pattern, anchored at both ends.</summary>
    public static IReadOnlyDictionary<string, string> Patterns { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["date-time"] = Date + "T" + Time,
        ["time"] = Time,
        ["date"] = Date,
        ["duration"] = "P(" + DurationDate + "(" + DurationTime + ")?|" + DurationTime + "|[0-9]+W)",
        ["email"] = Atom + "(\\." + Atom + ")*@" + Hostname,
        ["hostname"] = Hostname,
        ["ipv4"] = Ipv4,
        ["ipv6"] = Ipv6,
        ["uuid"] = Hex + "{8}-" + Hex + "{4}-" + Hex + "{4}-" + Hex + "{4}-" + Hex + "{12}",
    };

    private static readonly ConcurrentDictionary<string, Dfa> Compiled = new(StringComparer.Ordinal);

    /// <summary>The format's strings as a minimal automaton, built once per process.</summary>
    public static Dfa Automaton(string name) => Compiled.GetOrAdd(name, n =>
    {
        var budget = new AutomatonBudget();
        return Dfa.FromRegex(RegexParser.ParseTrusted("^(" + Patterns[n] + ")$"), budget).Minimize(budget);
    });
}
