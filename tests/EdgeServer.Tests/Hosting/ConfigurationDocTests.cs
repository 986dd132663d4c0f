using System.Collections;
using System.Globalization;
using System.Text.RegularExpressions;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Hosting;

/// <summary>
/// Each default lives once, in code (the options classes, which take the engine's); docs/configuration.md lists them
/// and must say the same, and appsettings.json must not repeat them.
/// </summary>
public partial class ConfigurationDocTests
{
    [Fact]
    public void EveryDocumentedDefaultIsTheOptionsDefault()
    {
        var doc = File.ReadAllText(Path.Combine(SharedPaths.RepositoryRoot, "docs", "configuration.md"));
        var checkedRows = 0;
        foreach (Match row in Row().Matches(doc))
        {
            var path = row.Groups["setting"].Value.Split(':').Skip(1).ToArray();
            var value = Value(new EdgeServerOptions(), path);
            var shown = value switch
            {
                bool b => b ? "true" : "false",
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                ICollection { Count: 0 } => "[]",
                _ => value?.ToString(),
            };
            Assert.True(shown == row.Groups["default"].Value, $"{row.Groups["setting"].Value}: docs say {row.Groups["default"].Value}, the code {shown}");
            checkedRows++;
        }

        Assert.True(checkedRows > 25, $"only {checkedRows} rows were read");
    }

    [Fact]
    public void AppSettingsHoldsNoEdgeServerDefaults()
    {
        using var settings = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(SharedPaths.RepositoryRoot, "appsettings.json")));
        Assert.Empty(settings.RootElement.GetProperty("EdgeServer").EnumerateObject());
    }

    private static object? Value(object options, string[] path)
    {
        object? current = options;
        foreach (var name in path)
        {
            var property = current!.GetType().GetProperty(name) ?? throw new InvalidOperationException($"No setting {string.Join(':', path)} ({name} is not a property of {current.GetType().Name}).");
            current = property.GetValue(current);
        }

        return current;
    }

    [GeneratedRegex(@"^\| `(?<setting>EdgeServer:[A-Za-z:]+)` \| `(?<default>[^`]+)`", RegexOptions.Multiline)]
    private static partial Regex Row();
}
