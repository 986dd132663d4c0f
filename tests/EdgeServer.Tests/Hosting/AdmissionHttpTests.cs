using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.Hosting;

/// <summary>One slot, <paramref name="queue"/> places in the wait queue, a 1-second deadline on a clock the tests move.</summary>
public abstract class OneSlotServerFixture(int queue) : ServerFixture
{
    public FakeTimeProvider Clock { get; } = new(DateTimeOffset.UtcNow);

    protected override IEnumerable<string> ExtraArguments(string scratch) =>
    [
        "--slots", "1",
        "--ctx-size", "4096",
        $"--EdgeServer:Scheduler:QueueCapacity={queue}",
        "--EdgeServer:Scheduler:RequestTimeoutSeconds=1",
    ];

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<TimeProvider>(Clock);
}

/// <summary>One slot, no wait queue.</summary>
public sealed class TightServerFixture() : OneSlotServerFixture(queue: 0);

public class AdmissionHttpTests(TightServerFixture server) : IClassFixture<TightServerFixture>
{
    private const string Endless = """{"model":"successor","prompt":"1","ignore_eos":true,"max_tokens":4000,"temperature":0,"stream":true}""";
    private const string Short = """{"model":"successor","prompt":"a","max_tokens":3,"temperature":0}""";

    [Fact]
    public async Task BeyondSlotsAndQueueARequestGets429WithRetryAfterAndTheRunningStreamIsUndisturbed()
    {
        using var running = await OpenStream(Endless);
        var reader = new StreamReader(await running.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync(), StringComparison.Ordinal);

        using var refused = await Post(Short);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.True(refused.Headers.RetryAfter?.Delta > TimeSpan.Zero);
        var body = await refused.Content.ReadAsStringAsync();
        server.AssertMatchesSchema("ErrorResponse", body);
        Assert.Equal("server_busy", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("code").GetString());

        // The running stream is undisturbed: it runs to its full length and ends normally.
        var rest = await reader.ReadToEndAsync();
        Assert.DoesNotContain("\"error\"", rest, StringComparison.Ordinal);
        Assert.Contains("\"finish_reason\":\"length\"", rest, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);

        running.Dispose();
        await AShortRequestIsServedSoon();
    }

    [Fact]
    public async Task AtItsDeadlineAStreamEndsWithATimeoutEventAndItsSlotIsFreed()
    {
        using var running = await OpenStream(Endless);
        var reader = new StreamReader(await running.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync(), StringComparison.Ordinal);

        server.Clock.Advance(TimeSpan.FromSeconds(2));
        string? last = null;
        while (await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)) is { } line)
        {
            if (line.Length > 0)
            {
                last = line;
            }
        }

        Assert.NotNull(last);
        Assert.StartsWith("data: {\"error\":", last, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"timeout\"", last, StringComparison.Ordinal);
        server.AssertMatchesSchema("ErrorResponse", last["data: ".Length..]);
        await AShortRequestIsServedSoon();
    }

    [Fact]
    public async Task ARequestForMoreChoicesThanThereArePlacesIsRefusedWholeAndLeavesNothingRunning()
    {
        // One slot, no queue: n = 2 can never be admitted (a 400, not a 429 a client would retry for ever). It must not
        // start one choice and leave it running.
        using var refused = await Post("""{"model":"successor","prompt":"1","ignore_eos":true,"max_tokens":4000,"temperature":0,"n":2}""");
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var error = await refused.Content.ReadAsStringAsync();
        server.AssertMatchesSchema("ErrorResponse", error);
        Assert.Equal("n", JsonDocument.Parse(error).RootElement.GetProperty("error").GetProperty("param").GetString());

        // Nothing holds the slot, so the next request is served at once.
        using var next = await Post(Short);
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    private async Task AShortRequestIsServedSoon()
    {
        // The slot is released as the ended request's handler returns, which the client may see after its own end.
        for (var attempt = 0; attempt < 100; attempt++)
        {
            using var response = await Post(Short);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                Assert.Equal("bcd", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
                return;
            }

            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            await Task.Delay(50);
        }

        Assert.Fail("The slot was not freed within 5 s.");
    }

    private async Task<HttpResponseMessage> OpenStream(string body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response;
    }

    private Task<HttpResponseMessage> Post(string body) =>
        server.Http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
}
