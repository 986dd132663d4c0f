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

    [Theory]
    [InlineData("Runtime:ThreadPoll", "101", "Runtime.ThreadPoll must be between 0 and 100")]
    [InlineData("Runtime:ThreadPoll", "-1", "Runtime.ThreadPoll must be between 0 and 100")]
    [InlineData("Runtime:Threads", "-2", "Runtime.Threads must be between 0 and 512")]
    [InlineData("Runtime:Threads", "600", "Runtime.Threads must be between 0 and 512")]
    public void ThreadSettingsOutsideTheirRangeAreRefusedNamingTheSetting(string key, string value, string setting)
    {
        var result = new EdgeServerOptionsValidator().Validate(null, Bind((key, value)));
        Assert.True(result.Failed);
        Assert.Contains(setting, result.FailureMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void ThreadsAreAdaptiveAndPollLikeLlamaCppUnlessSet()
    {
        var runtime = Bind().Runtime;
        Assert.Equal(0, runtime.Threads);
        Assert.Equal(new EdgeServer.Inference.Scheduling.SchedulerOptions().ThreadPoll, runtime.ThreadPoll);
        Assert.Equal(0, Bind(("Runtime:ThreadPoll", "0")).Runtime.ThreadPoll);
    }

    [Fact]
    public async Task BadThreadSettingsStopStartUpNamingBoth()
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0", "--threads", "-1", "--EdgeServer:Runtime:ThreadPoll=150", "--Logging:LogLevel:Default=None",
        ]);
        var e = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(async () =>
        {
            await using var app = builder.Build();
            app.MapEdgeServer();
            await app.StartAsync();
        });
        var message = string.Join("\n", e.Failures);
        Assert.Contains("Runtime.Threads must be between 0 and 512", message, StringComparison.Ordinal);
        Assert.Contains("Runtime.ThreadPoll must be between 0 and 100", message, StringComparison.Ordinal);
    }
}
