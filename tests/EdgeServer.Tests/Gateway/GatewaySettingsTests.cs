using EdgeServer.Hosting;
using Microsoft.Extensions.Configuration;

namespace EdgeServer.Tests.Gateway;

/// <summary>A gateway set up wrong is refused at start-up with a line per problem, naming the setting.</summary>
public class GatewaySettingsTests
{
    private static EdgeServerOptions Bind(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>("EdgeServer:Gateway:" + s.Key, s.Value)))
            .Build().GetSection(EdgeServerOptions.Section).Get<EdgeServerOptions>() ?? new EdgeServerOptions();

    private static string Problems(EdgeServerOptions options) => string.Join('\n',
        new[] { new EdgeServerOptionsValidator().Validate(null, options), new EdgeServerOptionsFileValidator().Validate(null, options) }
            .Where(r => r.Failed).Select(r => r.FailureMessage));

    [Fact]
    public void GatewayModeWithoutBoxesIsRefused() =>
        Assert.Contains("EdgeServer:Gateway:Boxes: gateway mode is on, but no box is listed", Problems(Bind(("Enabled", "true"))), StringComparison.Ordinal);

    [Theory]
    [InlineData("kitchen-pi.local:8080", "is not a box address")]
    [InlineData("ftp://kitchen-pi.local", "is not a box address")]
    [InlineData("", "a box without a Url is found by its announcement, and EdgeServer:Gateway:Discovery:Enabled is off")]
    public void ABoxWithoutAnHttpAddressIsRefused(string url, string problem) =>
        Assert.Contains(problem, Problems(Bind(("Enabled", "true"), ("Boxes:0:Name", "kitchen"), ("Boxes:0:Url", url))), StringComparison.Ordinal);

    [Fact]
    public void TwoBoxesOfOneNameAreRefused() =>
        Assert.Contains("the name 'pi' is used more than once", Problems(Bind(
            ("Enabled", "true"), ("Boxes:0:Name", "pi"), ("Boxes:0:Url", "http://a:8080"), ("Boxes:1:Name", "pi"), ("Boxes:1:Url", "http://b:8080"))), StringComparison.Ordinal);

    [Fact]
    public void TheDefaultsFitSlowBoards()
    {
        var gateway = new EdgeServerOptions().Gateway;
        Assert.False(gateway.Enabled);
        Assert.True(gateway.ActivityTimeoutSeconds >= 600);
        Assert.Empty(Problems(Bind(("Enabled", "true"), ("Boxes:0:Name", "pi"), ("Boxes:0:Url", "http://pi.local:8080"))));
    }
}
