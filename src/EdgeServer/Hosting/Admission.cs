using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Polly;
using Polly.RateLimiting;
using Polly.Timeout;

namespace EdgeServer.Hosting;

/// <summary>
/// Admission and deadlines, per model, with Polly: a timeout (EdgeServer:Scheduler:RequestTimeoutSeconds) around a
/// concurrency limiter whose permits are the model's slots and whose FIFO queue holds QueueCapacity requests. A
/// request holds its permit while it generates; beyond the queue it is rejected (429 + Retry-After), and at its
/// deadline the token it runs with is cancelled, which frees its slot within one decode step.
/// </summary>
public sealed class Admission(IOptions<EdgeServerOptions> options, TimeProvider clock)
{
    private readonly ConcurrentDictionary<string, ResiliencePipeline> _pipelines = new(StringComparer.Ordinal);

    public ValueTask<T> RunAsync<T>(string model, Func<CancellationToken, ValueTask<T>> work, CancellationToken cancellationToken) =>
        _pipelines.GetOrAdd(model, _ => Build()).ExecuteAsync(static (w, ct) => w(ct), work, cancellationToken);

    private ResiliencePipeline Build()
    {
        var scheduler = options.Value.Scheduler;
        var builder = new ResiliencePipelineBuilder { TimeProvider = clock };
        if (scheduler.RequestTimeoutSeconds > 0)
        {
            builder.AddTimeout(new TimeoutStrategyOptions { Timeout = TimeSpan.FromSeconds(scheduler.RequestTimeoutSeconds) });
        }

        return builder.AddConcurrencyLimiter(scheduler.Slots, scheduler.QueueCapacity).Build();
    }
}
