namespace EdgeServer.Bench;

/// <summary>The sections of docs/benchmarks.md that one command writes, each under its own "## " heading.</summary>
internal static class Markdown
{
    /// <summary>
    /// The document with the section under <paramref name="heading"/> replaced (up to the next section of the same
    /// level), or with the section appended when the document has none.
    /// </summary>
    public static string ReplaceSection(string document, string heading, string section)
    {
        var at = document.IndexOf("\n" + heading + "\n", StringComparison.Ordinal);
        if (at < 0)
        {
            return document.Length == 0 ? section : document.TrimEnd('\n') + "\n\n" + section;
        }

        var next = document.IndexOf("\n## ", at + heading.Length + 2, StringComparison.Ordinal);
        return document[..(at + 1)] + section.TrimEnd('\n') + "\n" + (next < 0 ? "" : "\n" + document[(next + 1)..]);
    }
}
