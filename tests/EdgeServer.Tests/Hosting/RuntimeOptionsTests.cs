using EdgeServer.Hosting;
using EdgeServer.Inference;
using Microsoft.Extensions.Configuration;

namespace EdgeServer.Tests.Hosting;

/// <summary>EdgeServer:Runtime:UseMmap was a boolean; true and false still mean what they meant, beside Auto.</summary>
public class RuntimeOptionsTests
{
    private static EdgeServerOptions Bind(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>("EdgeServer:" + s.Key, s.Value)))
            .Build().GetSection(EdgeServerOptions.Section).Get<EdgeServerOptions>() ?? new EdgeServerOptions();

    [Theory]
    [InlineData("true", MmapMode.On)]
    [InlineData("false", MmapMode.Off)]
    [InlineData("auto", MmapMode.Auto)]
    [InlineData("Off", MmapMode.Off)]
    public void UseMmapTakesBooleansAndAuto(string value, MmapMode expected)
    {
        Assert.Equal(expected, Bind(("Runtime:UseMmap", value)).Runtime.UseMmap);
    }

    [Fact]
    public void ByDefaultMappingIsDecidedPerModelAndRepackingIsOn()
    {
        var runtime = Bind(("Runtime:Threads", "2")).Runtime;
        Assert.Equal(MmapMode.Auto, runtime.UseMmap);
        Assert.True(runtime.Repack);
        Assert.False(Bind(("Runtime:Repack", "false")).Runtime.Repack);
    }

    [Fact]
    public void AnUndefinedModeIsRefusedNamingTheSetting()
    {
        var options = Bind(("Runtime:UseMmap", "7"));
        var result = new EdgeServerOptionsValidator().Validate(null, options);
        Assert.True(result.Failed);
        Assert.Contains("UseMmap", result.FailureMessage, StringComparison.Ordinal);
    }
}
