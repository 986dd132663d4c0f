using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.Hosting;

/// <summary>
/// On shutdown: new generations are refused (503 shutting_down) at once; running ones may finish within
/// EdgeServer:ShutdownGraceSeconds, and those still running then end with a shutting-down error event, so
/// every client sees its stream end properly rather than a dropped connection.
/// </summary>
internal sealed partial class GracefulShutdown(IHostApplicationLifetime lifetime, InferenceEngine engine, IOptions<EdgeServerOptions> options,
    TimeProvider clock, ILogger<GracefulShutdown> logger) : IHostedService, IDisposable
{
    private ITimer? _timer;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStopping.Register(() =>
        {
            var grace = TimeSpan.FromSeconds(options.Value.ShutdownGraceSeconds);
            LogDraining(logger, grace.TotalSeconds);
            engine.BeginShutdown();
            _timer = clock.CreateTimer(_ => { LogGraceOver(logger); engine.EndGenerations(); }, null, grace, Timeout.InfiniteTimeSpan);
        });
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _timer?.Dispose();

    [LoggerMessage(EventId = 5100, Level = LogLevel.Information, Message = "Shutting down: no new requests; running generations have {GraceSeconds} s to finish")]
    private static partial void LogDraining(ILogger logger, double graceSeconds);

    [LoggerMessage(EventId = 5101, Level = LogLevel.Warning, Message = "Shutdown grace period over: ending the generations still running")]
    private static partial void LogGraceOver(ILogger logger);
}
