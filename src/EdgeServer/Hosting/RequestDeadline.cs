using Microsoft.Extensions.Options;
using Polly;
using Polly.Timeout;

namespace EdgeServer.Hosting;

/// <summary>
/// The deadline of one request, queue wait included (EdgeServer:Scheduler:RequestTimeoutSeconds), with Polly: at
/// the deadline the token the work runs with is cancelled, which frees its slot within one decode step, and the
/// request ends with a 504 or a last timeout event. Admission itself (slots, wait queue, 429) is the engine's: it
/// counts every session it admits, each choice of an n > 1 request included.
/// </summary>
public sealed class RequestDeadline(IOptions<EdgeServerOptions> options, TimeProvider clock)
{
    private readonly ResiliencePipeline _pipeline = Build(options.Value.Scheduler.RequestTimeoutSeconds, clock);

    public ValueTask<T> RunAsync<T>(Func<CancellationToken, ValueTask<T>> work, CancellationToken cancellationToken) =>
        _pipeline.ExecuteAsync(static (w, ct) => w(ct), work, cancellationToken);

    private static ResiliencePipeline Build(int timeoutSeconds, TimeProvider clock)
    {
        var builder = new ResiliencePipelineBuilder { TimeProvider = clock };
        if (timeoutSeconds > 0)
        {
            builder.AddTimeout(new TimeoutStrategyOptions { Timeout = TimeSpan.FromSeconds(timeoutSeconds) });
        }

        return builder.Build();
    }
}
