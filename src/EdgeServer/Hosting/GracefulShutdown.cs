using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.Hosting;

/// <summary>
/// On shutdown: new generations are refused (503 shutting_down) at once; running ones may finish within
/// EdgeServer:ShutdownGraceSeconds, and those still running then end with a shutting-down error event, so
/// every client sees its stream end properly rather than a dropped connection. The drain runs in
/// <see cref="StoppingAsync"/>, before any hosted service stops, so Kestrel keeps accepting meanwhile and a
/// new client is told why it is refused instead of finding the port closed.
/// </summary>
internal sealed partial class GracefulShutdown(IInferenceEngine engine, InFlightRequests inFlight, IOptions<EdgeServerOptions> options,
    TimeProvider clock, ILogger<GracefulShutdown> logger) : IHostedLifecycleService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Runs before the server stops; <paramref name="cancellationToken"/> is the host's shutdown timeout (grace + 5 s).</summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        var grace = TimeSpan.FromSeconds(options.Value.ShutdownGraceSeconds);
        LogDraining(logger, grace.TotalSeconds, inFlight.Count);
        engine.BeginShutdown();
        var drained = inFlight.WhenNoneAsync();
        try
        {
            using var stopTimer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var over = Task.Delay(grace, clock, stopTimer.Token);
            if (await Task.WhenAny(drained, over) == drained)
            {
                await stopTimer.CancelAsync();
            }
            else
            {
                LogGraceOver(logger, inFlight.Count);
                engine.EndGenerations();
            }

            // Ended generations write their last error event; a client that reads nothing holds its request
            // until the host's timeout, and then the server closes the connection.
            await drained.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            LogAbandoned(logger, inFlight.Count);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = EventIds.ShutdownDraining, Level = LogLevel.Information, Message = "Shutting down: no new generations ({Running} requests running); they have {GraceSeconds} s to finish")]
    private static partial void LogDraining(ILogger logger, double graceSeconds, int running);

    [LoggerMessage(EventId = EventIds.ShutdownGraceOver, Level = LogLevel.Warning, Message = "Shutdown grace period over: ending the generations still running ({Running} requests)")]
    private static partial void LogGraceOver(ILogger logger, int running);

    [LoggerMessage(EventId = EventIds.ShutdownAbandoned, Level = LogLevel.Warning, Message = "Shutdown timeout: {Running} requests still running; their connections are closed")]
    private static partial void LogAbandoned(ILogger logger, int running);
}

/// <summary>Counts the HTTP requests being served, so shutdown can wait until the last one has finished.</summary>
internal sealed class InFlightRequests
{
    private int _count;
    private TaskCompletionSource? _none;

    public int Count => Volatile.Read(ref _count);

    /// <summary>The first middleware: every request is counted from start to finish.</summary>
    public async Task TrackAsync(HttpContext context, RequestDelegate next)
    {
        Interlocked.Increment(ref _count);
        try
        {
            await next(context);
        }
        finally
        {
            if (Interlocked.Decrement(ref _count) == 0)
            {
                Volatile.Read(ref _none)?.TrySetResult();
            }
        }
    }

    /// <summary>Completes the next time no request is running (at once if none is).</summary>
    public Task WhenNoneAsync()
    {
        var none = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _none, none);
        if (Count == 0)
        {
            none.TrySetResult();
        }

        return none.Task;
    }
}
