using System.Net;
using System.Text.Json;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Pull;

/// <summary>A server with an empty models folder whose hub is <see cref="HubFixture"/>.</summary>
public class PullServerFixture : InProcessServer
{
    public HubFixture Hub { get; private set; } = null!;

    public string ModelsDirectory { get; private set; } = null!;

    public byte[] Model { get; } = File.ReadAllBytes(SuccessorModel.SharedPath);

    public override async Task InitializeAsync()
    {
        Hub = await HubFixture.StartAsync();
        Hub.AddRepository("test-org/tiny-GGUF", new Dictionary<string, byte[]> { ["tiny-Q4_K_M.gguf"] = Model, ["other-Q8_0.gguf"] = Model });
        Scratch = Directory.CreateTempSubdirectory("edgeserver-pull-api-").FullName;
        ModelsDirectory = Path.Combine(Scratch, "models");
        Directory.CreateDirectory(ModelsDirectory);
        await StartAsync(
        [
            "--models-dir", ModelsDirectory,
            "--threads", "2",
            "--Logging:LogLevel:Default=Warning",
            "--EdgeServer:Thermal:Enabled=false",
            $"--EdgeServer:Pull:HubUrl={Hub.Address}",
            "--EdgeServer:Pull:Retries=0",
            .. ExtraArguments,
        ]);
    }

    /// <summary>Starts a pull whose download the hub holds halfway; returns the response (headers read) and the hub side's abort token.</summary>
    public async Task<(Task<HttpResponseMessage> Response, CancellationToken HubSide)> StartStalledPullAsync(string source, CancellationToken leaving)
    {
        Hub.StallNextBodyAfter = Model.Length / 2;
        var response = Http.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "/v1/models/pull") { Content = new StringContent($$"""{"model":"{{source}}"}""", System.Text.Encoding.UTF8, "application/json") },
            HttpCompletionOption.ResponseHeadersRead, leaving);
        return (response, await Hub.Stalled.Task.WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None));
    }

    /// <summary>Settings a derived fixture adds.</summary>
    protected virtual string[] ExtraArguments => [];

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Hub.DisposeAsync();
    }
}

public sealed class PullApiTests(PullServerFixture server) : IClassFixture<PullServerFixture>
{
    [Fact]
    public async Task APullStreamsItsProgressAndTheModelIsListedWhenDone()
    {
        using var response = await server.PostAsync("/v1/models/pull", """{"model":"test-org/tiny-GGUF:Q4_K_M"}""");
        var body = await response.Content.ReadAsStringAsync();

        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = InProcessServer.SseData(body).Select(d => JsonDocument.Parse(d).RootElement).ToList();
        Assert.Equal("checking", events[0].GetProperty("status").GetString());
        Assert.Contains("fits", events[0].GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Contains(events, e => e.GetProperty("status").GetString() == "downloading" && e.GetProperty("completed").GetInt64() == server.Model.Length);
        Assert.Equal("done", events[^1].GetProperty("status").GetString());
        Assert.Equal("tiny-Q4_K_M", events[^1].GetProperty("model").GetString());
        Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);

        var models = await server.Http.GetStringAsync("/v1/models");
        Assert.Contains("\"tiny-Q4_K_M\"", models, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"model":"test-org/absent"}""", HttpStatusCode.NotFound, "model_source_not_found")]
    [InlineData("""{"model":"test-org/tiny-GGUF:Q2_K"}""", HttpStatusCode.NotFound, "model_source_not_found")]
    [InlineData("""{"model":"ftp://x/y.gguf"}""", HttpStatusCode.BadRequest, "invalid_model_source")]
    [InlineData("""{}""", HttpStatusCode.BadRequest, "missing_required_parameter")]
    public async Task WhatFailsBeforeTheFirstByteIsAPlainOpenAiError(string json, HttpStatusCode status, string code)
    {
        using var response = await server.PostAsync("/v1/models/pull", json);
        var body = await response.Content.ReadAsStringAsync();

        Assert.True(response.StatusCode == status, body);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task AUrlIntoTheLocalNetworkIsRefusedWithoutConnecting()
    {
        // A service on this machine that a key holder must not reach through the server.
        using var inner = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        inner.Start();
        var port = ((IPEndPoint)inner.LocalEndpoint).Port;
        foreach (var source in new[] { $"http://127.0.0.1:{port}/secret.gguf", $"http://localhost:{port}/secret.gguf", $"http://[::ffff:127.0.0.1]:{port}/secret.gguf" })
        {
            using var response = await server.PostAsync("/v1/models/pull", $$"""{"model":"{{source}}"}""");
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{source}: {body}");
            var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
            Assert.Equal("invalid_model_source", error.GetProperty("code").GetString());
            Assert.Contains("EdgeServer:Pull:AllowPrivateAddresses", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        Assert.False(inner.Pending(), "the server connected to the local service");
    }

    [Theory]
    [InlineData("169.254.169.254")]
    [InlineData("10.0.0.1:8080")]
    [InlineData("192.168.1.1")]
    public async Task TheHubRedirectingIntoTheLocalNetworkIsRefused(string target)
    {
        using var response = await server.PostAsync("/v1/models/pull", $$"""{"model":"{{server.Hub.Address}}inward/{{target}}/x.gguf"}""");
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, body);
        Assert.Contains("local network", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASecondPullOfTheFileIsAConflictAndALeavingClientKeepsOnlyThePartialFile()
    {
        var partial = Path.Combine(server.ModelsDirectory, "other-Q8_0.gguf.partial");
        using var leaving = new CancellationTokenSource();
        var (first, hubSide) = await server.StartStalledPullAsync("test-org/tiny-GGUF:Q8_0", leaving.Token);

        using (var second = await server.PostAsync("/v1/models/pull", """{"model":"test-org/tiny-GGUF:Q8_0"}"""))
        {
            var body = await second.Content.ReadAsStringAsync();
            Assert.True(second.StatusCode == HttpStatusCode.Conflict, body);
            Assert.Equal("pull_in_progress", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        // The client goes away mid-download, once the bytes sent have reached the disk.
        for (var i = 0; i < 200 && (!File.Exists(partial) || new FileInfo(partial).Length < server.Model.Length / 2); i++)
        {
            await Task.Delay(50);
        }

        (await first).Dispose();
        await leaving.CancelAsync();
        await Task.Delay(Timeout.Infinite, hubSide).ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(30));
        server.Hub.ReleaseStall();
        for (var i = 0; i < 200 && !CanOpenAlone(partial); i++)
        {
            await Task.Delay(50);
        }

        Assert.Equal(["other-Q8_0.gguf.partial"], Directory.GetFiles(server.ModelsDirectory).Where(f => f.Contains("other", StringComparison.Ordinal)).Select(Path.GetFileName));
        Assert.Equal(server.Model.Length / 2, new FileInfo(partial).Length);

        // Pulled again, it resumes where it stopped.
        var again = await server.PostOkAsync("/v1/models/pull", """{"model":"test-org/tiny-GGUF:Q8_0"}""");
        Assert.Contains("\"status\":\"done\"", again, StringComparison.Ordinal);
        Assert.Contains(server.Hub.Requests, r => r.Range == $"bytes={server.Model.Length / 2}-");
        Assert.Equal(server.Model, await File.ReadAllBytesAsync(Path.Combine(server.ModelsDirectory, "other-Q8_0.gguf")));
        Assert.False(File.Exists(partial));
    }

    /// <summary>Whether the pull has let go of the partial file (its lock).</summary>
    private static bool CanOpenAlone(string path)
    {
        try
        {
            using var _ = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }
}

/// <summary>A server that runs one pull at a time.</summary>
public sealed class OnePullServerFixture : PullServerFixture
{
    protected override string[] ExtraArguments => ["--EdgeServer:Pull:MaxConcurrent=1"];
}

/// <summary>Pulls beyond EdgeServer:Pull:MaxConcurrent wait their turn outside: each holds a download and reads up to 64 MiB of header.</summary>
public sealed class PullLimitTests(OnePullServerFixture server) : IClassFixture<OnePullServerFixture>
{
    [Fact]
    public async Task APullBeyondTheLimitIsA429WithRetryAfterAndRunsOnceTheOtherEnds()
    {
        using var leaving = new CancellationTokenSource();
        var (first, hubSide) = await server.StartStalledPullAsync("test-org/tiny-GGUF:Q8_0", leaving.Token);

        using (var second = await server.PostAsync("/v1/models/pull", """{"model":"test-org/tiny-GGUF:Q4_K_M"}"""))
        {
            var body = await second.Content.ReadAsStringAsync();
            Assert.True(second.StatusCode == HttpStatusCode.TooManyRequests, body);
            Assert.Equal("too_many_pulls", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.NotNull(second.Headers.RetryAfter);
        }

        (await first).Dispose();
        await leaving.CancelAsync();
        await Task.Delay(Timeout.Infinite, hubSide).ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(30));
        server.Hub.ReleaseStall();

        // The first pull's place is given back when it ends.
        HttpStatusCode status = 0;
        for (var i = 0; i < 100 && status != HttpStatusCode.OK; i++)
        {
            using var again = await server.PostAsync("/v1/models/pull", """{"model":"test-org/tiny-GGUF:Q4_K_M"}""");
            status = again.StatusCode;
            if (status == HttpStatusCode.TooManyRequests)
            {
                await Task.Delay(100);
            }
        }

        Assert.Equal(HttpStatusCode.OK, status);
    }
}
