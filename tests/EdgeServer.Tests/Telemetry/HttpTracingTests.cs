using System.Diagnostics;
using System.Net;

namespace EdgeServer.Tests.Telemetry;

/// <summary>Which HTTP requests become recorded server spans (exported over OTLP when configured): every API route, Ollama's and Anthropic's too, and not the scrapes and probes.</summary>
public class HttpTracingTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    [Theory]
    [InlineData("/v1/models", true)]
    [InlineData("/api/tags", true)]
    [InlineData("/api/version", true)]
    [InlineData("/health", false)]
    [InlineData("/metrics", false)]
    public async Task ApiRoutesAreTracedAndProbesAreNot(string path, bool traced)
    {
        // The request's own trace id: other tests' requests run in this process at the same time.
        var traceId = ActivityTraceId.CreateRandom();
        var stopped = new TaskCompletionSource<Activity>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == "Microsoft.AspNetCore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.Kind == ActivityKind.Server && a.TraceId == traceId)
                {
                    stopped.TrySetResult(a);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        using var response = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var activity = await stopped.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // OpenTelemetry's filter marks a request it leaves out as not recorded.
        Assert.Equal(traced, activity.Recorded);
    }
}
