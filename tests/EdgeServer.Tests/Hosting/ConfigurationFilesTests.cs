using EdgeServer.Hosting;
using Microsoft.Extensions.Configuration.Json;

namespace EdgeServer.Tests.Hosting;

/// <summary>
/// The settings files are read once at start-up: every setting is taken when the server starts, so watching the
/// files would only cost a recursive watch of the content root (the working directory, a repository with its
/// node_modules when run from one), at start-up and in memory, for nothing.
/// </summary>
public class ConfigurationFilesTests
{
    [Fact]
    public void SettingsFilesAreNotWatched()
    {
        var builder = EdgeServerHosting.CreateBuilder(["--urls", "http://127.0.0.1:0"]);
        var files = builder.Configuration.Sources.OfType<JsonConfigurationSource>().ToList();
        Assert.NotEmpty(files);
        Assert.All(files, f => Assert.False(f.ReloadOnChange, $"{f.Path} is watched for changes"));
    }
}
