using EdgeServer.Inference;
using EdgeServer.TestSupport;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeServer.Tests.Hosting;

/// <summary>EdgeServer:Preload: unset preloads a single model, so a one-model box answers its first request without a load.</summary>
public class PreloadTests
{
    private sealed class Server(int models, string? preload) : InProcessServer
    {
        public IInferenceEngine Engine => App.Services.GetRequiredService<IInferenceEngine>();

        public override Task InitializeAsync()
        {
            Scratch = Directory.CreateTempSubdirectory("edgeserver-preload-").FullName;
            var folder = Directory.CreateDirectory(Path.Combine(Scratch, "models")).FullName;
            for (var i = 0; i < models; i++)
            {
                File.Copy(SuccessorModel.SharedPath, Path.Combine(folder, $"model{i}.gguf"));
            }

            return StartAsync(
            [
                "--models-dir", folder, "--EdgeServer:Thermal:Enabled=false", "--EdgeServer:Runtime:ProbeCache=none",
                .. preload is null ? Array.Empty<string>() : [$"--EdgeServer:Preload={preload}"],
            ]);
        }
    }

    [Fact]
    public async Task UnsetItLoadsTheOnlyModelBeforeAnyRequest()
    {
        var server = await StartAsync(models: 1, preload: null);
        try
        {
            Assert.Equal(ModelStatus.Loaded, await SettledStatusAsync(server, "model0"));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(2, null)]
    [InlineData(1, "false")]
    public async Task OtherwiseModelsWaitForTheirFirstRequest(int models, string? preload)
    {
        var server = await StartAsync(models, preload);
        try
        {
            // A preload would have begun by now (it starts with the host).
            await Task.Delay(500);
            Assert.All(server.Engine.ListModels(), m => Assert.Equal(ModelStatus.Available, m.Status));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task TrueLoadsEveryModel()
    {
        var server = await StartAsync(models: 2, preload: "true");
        try
        {
            Assert.Equal(ModelStatus.Loaded, await SettledStatusAsync(server, "model0"));
            Assert.Equal(ModelStatus.Loaded, await SettledStatusAsync(server, "model1"));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static async Task<Server> StartAsync(int models, string? preload)
    {
        var server = new Server(models, preload);
        await server.InitializeAsync();
        return server;
    }

    /// <summary>The model's status once it has left Loading (at most 60 s).</summary>
    private static async Task<ModelStatus> SettledStatusAsync(Server server, string id)
    {
        for (var i = 0; i < 600; i++)
        {
            var status = server.Engine.ListModels().Single(m => m.Id == id).Status;
            if (status != ModelStatus.Loading)
            {
                return status;
            }

            await Task.Delay(100);
        }

        return ModelStatus.Loading;
    }
}
