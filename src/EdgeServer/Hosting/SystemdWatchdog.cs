using System.Globalization;
using System.Net.Sockets;
using System.Text;
using EdgeServer.Inference;

namespace EdgeServer.Hosting;

/// <summary>
/// systemd's watchdog (<c>WatchdogSec=</c> in the unit): sends <c>WATCHDOG=1</c> to <c>$NOTIFY_SOCKET</c> every half
/// interval while the engine is healthy, and stops sending while it is not (a decode loop that stopped and was not
/// reloaded), so systemd restarts a process that cannot recover. Does nothing outside a unit with a watchdog.
/// </summary>
internal sealed partial class SystemdWatchdog(IInferenceEngine engine, ILogger<SystemdWatchdog> logger) : BackgroundService
{
    private bool _reported;

    /// <summary>The notify socket and interval systemd gives this process, or null when it gives none.</summary>
    public static (string Socket, TimeSpan Interval)? FromEnvironment()
    {
        var socket = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        var usec = Environment.GetEnvironmentVariable("WATCHDOG_USEC");
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (string.IsNullOrEmpty(socket) || !long.TryParse(usec, NumberStyles.None, CultureInfo.InvariantCulture, out var micros) || micros <= 0)
        {
            return null;
        }

        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
        {
            return null;
        }

        return (socket, TimeSpan.FromMicroseconds(micros));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (FromEnvironment() is not var (socket, interval))
        {
            return;
        }

        LogEnabled(logger, interval.TotalSeconds);
        using var timer = new PeriodicTimer(interval / 2);
        do
        {
            Beat(socket);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    /// <summary>Sends one keep-alive when the engine is healthy; returns whether it did.</summary>
    public bool Beat(string socket)
    {
        var health = engine.CheckHealth();
        if (!health.Healthy)
        {
            if (!_reported)
            {
                LogWithheld(logger, health.Problems);
                _reported = true;
            }

            return false;
        }

        _reported = false;
        try
        {
            using var client = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            // A leading '@' names a socket in the abstract namespace.
            var path = socket.StartsWith('@') ? "\0" + socket[1..] : socket;
            client.SendTo("WATCHDOG=1"u8, new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException e)
        {
            LogSendFailed(logger, e, socket);
            return false;
        }
    }

    [LoggerMessage(EventId = EventIds.WatchdogEnabled, Level = LogLevel.Information, Message = "systemd watchdog: a keep-alive every {Seconds:0.#} s / 2 while every model's decode loop runs")]
    private static partial void LogEnabled(ILogger logger, double seconds);

    [LoggerMessage(EventId = EventIds.WatchdogWithheld, Level = LogLevel.Critical, Message = "systemd watchdog: keep-alives withheld, so systemd restarts the service unless this clears: {Problems}")]
    private static partial void LogWithheld(ILogger logger, IReadOnlyList<string> problems);

    [LoggerMessage(EventId = EventIds.WatchdogSendFailed, Level = LogLevel.Warning, Message = "systemd watchdog: could not write to {Socket}")]
    private static partial void LogSendFailed(ILogger logger, Exception exception, string socket);
}
