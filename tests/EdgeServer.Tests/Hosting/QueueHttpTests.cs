using System.Net;
using System.Text;
using System.Text.Json;
using EdgeServer.Inference;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeServer.Tests.Hosting;

/// <summary>One slot and one place in the wait queue.</summary>
public sealed class OneQueuedServerFixture() : OneSlotServerFixture(queue: 1);

/// <summary>The wait queue: a request that leaves it gives its place back at once, and one that times out in it gets a 504.</summary>
public class QueueHttpTests(OneQueuedServerFixture server) : IClassFixture<OneQueuedServerFixture>, IDisposable
{
    private const string Endless = """{"model":"successor","prompt":"1","ignore_eos":true,"max_tokens":4000,"temperature":0,"stream":true}""";
    private const string Short = """{"model":"successor","prompt":"a","max_tokens":3,"temperature":0}""";

    private int InFlight() => ((InferenceEngine)server.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler(ServerFixture.Model)?.InFlight ?? 0;

    private async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 400 && !condition(); i++)
        {
            await Task.Delay(25);
        }

        Assert.True(condition());
    }

    private async Task<(HttpResponseMessage Response, StreamReader Reader)> OpenStream()
    {
        var response = await server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Endless, Encoding.UTF8, "application/json") }, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync(), StringComparison.Ordinal);
        Slow();
        return (response, reader);
    }

    /// <summary>
    /// Each decode step of the loaded model takes 10 ms more from now until the test ends, so a stream that must
    /// still run while the test queues and cancels others cannot finish first on a fast box.
    /// </summary>
    private void Slow() =>
        ((InferenceEngine)server.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler(ServerFixture.Model)!.LoopHook = () => Thread.Sleep(10);

    public void Dispose()
    {
        if (((InferenceEngine)server.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler(ServerFixture.Model) is { } scheduler)
        {
            scheduler.LoopHook = null;
        }
    }

    [Fact]
    public async Task AQueuedRequestWhoseClientLeftGivesItsPlaceBackAtOnce()
    {
        await Until(() => InFlight() == 0);
        var (running, _) = await OpenStream();
        using (running)
        {
            // A second request waits in the queue; its client gives up while the slot is still busy.
            using var leave = new CancellationTokenSource();
            var waiting = server.Http.PostAsync("/v1/completions", new StringContent(Short, Encoding.UTF8, "application/json"), leave.Token);
            await Until(() => InFlight() == 2);
            await leave.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
            await Until(() => InFlight() == 1);

            // So the place can be taken again, not refused with 429 while the stream runs on.
            using var again = new CancellationTokenSource();
            var next = server.Http.PostAsync("/v1/completions", new StringContent(Short, Encoding.UTF8, "application/json"), again.Token);
            await Until(() => InFlight() == 2);
            Assert.False(next.IsCompleted);
            await again.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => next);
        }

        await Until(() => InFlight() == 0);
    }

    [Fact]
    public async Task AStreamThatTimesOutWhileWaitingForASlotGetsA504()
    {
        await Until(() => InFlight() == 0);
        var (running, _) = await OpenStream();
        using (running)
        {
            var waiting = server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Endless, Encoding.UTF8, "application/json") }, HttpCompletionOption.ResponseHeadersRead);
            await Until(() => InFlight() == 2);
            Assert.False(waiting.IsCompleted); // no headers before it has a slot
            server.Clock.Advance(TimeSpan.FromSeconds(2));
            using var response = await waiting;
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.GatewayTimeout, $"{(int)response.StatusCode} {body}");
            server.AssertMatchesSchema("ErrorResponse", body);
            Assert.Equal("timeout", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        await Until(() => InFlight() == 0);
    }
}

/// <summary>The choices of an n &gt; 1 request give every place back when their client leaves, streamed or not.</summary>
[Collection(ServerGroup.Name)]
public class ChoicesHttpTests(ServerFixture server)
{
    private int InFlight() => ((InferenceEngine)server.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler(ServerFixture.Model)?.InFlight ?? 0;

    private async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 400 && !condition(); i++)
        {
            await Task.Delay(25);
        }

        Assert.True(condition());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TwoChoicesWhoseClientLeavesGiveBackBothPlaces(bool stream)
    {
        await server.PostOkAsync("/v1/completions", """{"model":"successor","prompt":"a","max_tokens":1}""");
        await Until(() => InFlight() == 0);

        // Each decode step takes 10 ms more, so the 1500 tokens cannot all be written before the client leaves.
        var scheduler = ((InferenceEngine)server.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler(ServerFixture.Model)!;
        scheduler.LoopHook = () => Thread.Sleep(10);
        try
        {
            var body = "{\"model\":\"successor\",\"prompt\":\"1\",\"ignore_eos\":true,\"max_tokens\":1500,\"temperature\":0,\"n\":2,\"stream\":" + (stream ? "true" : "false") + "}";
            using var leave = new CancellationTokenSource();
            var call = server.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") }, HttpCompletionOption.ResponseHeadersRead, leave.Token);
            if (stream)
            {
                using var response = await call;
                var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                Assert.StartsWith("data: ", await reader.ReadLineAsync(), StringComparison.Ordinal);
                Assert.Equal(2, InFlight());
                await leave.CancelAsync();
            }
            else
            {
                await Until(() => InFlight() == 2);
                await leave.CancelAsync();
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
            }

            await Until(() => InFlight() == 0);
        }
        finally
        {
            scheduler.LoopHook = null;
        }
    }
}
