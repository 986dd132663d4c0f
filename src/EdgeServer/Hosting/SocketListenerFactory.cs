using System.Net;
using System.Net.Sockets;
using EdgeServer.Security;
using EdgeServer.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;

namespace EdgeServer.Hosting;

/// <summary>
/// Kestrel's socket transport for TCP endpoints, with its own accept loop. Kestrel's loop retries a failed
/// accept at once and logs it only at Debug: out of file descriptors, the process accepts nothing, spins a core
/// and says nothing (until the runtime, unable to start a thread, ends it with "Out of memory."). Here that
/// failure is logged as an error (once per interval, with a count) and accept is retried after a pause.
/// <see cref="ConnectionLimits"/> keeps connections from getting there. Connections are still made by
/// Kestrel's <see cref="SocketConnectionContextFactory"/> with the configured <see cref="SocketTransportOptions"/>.
/// </summary>
internal sealed partial class SocketListenerFactory(IOptions<SocketTransportOptions> options, ConnectionLimits limits, ILoggerFactory loggers, TimeProvider clock)
    : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private static readonly TimeSpan RetryAfter = TimeSpan.FromMilliseconds(200);
    private readonly TimeProvider _clock = clock;
    private readonly ILogger _logger = loggers.CreateLogger<SocketListenerFactory>();
    private readonly LogThrottle _log = new(clock, TimeSpan.FromSeconds(10));

    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var transport = options.Value;
        Socket socket;
        try
        {
            socket = transport.CreateBoundListenSocket(endpoint);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new AddressInUseException(e.Message, e);
        }

        try
        {
            socket.Listen(transport.Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var connections = new SocketConnectionContextFactory(
            new SocketConnectionFactoryOptions
            {
                IOQueueCount = transport.IOQueueCount,
                WaitForDataBeforeAllocatingBuffer = transport.WaitForDataBeforeAllocatingBuffer,
                MaxReadBufferSize = transport.MaxReadBufferSize,
                MaxWriteBufferSize = transport.MaxWriteBufferSize,
                UnsafePreferInlineScheduling = transport.UnsafePreferInlineScheduling,
            },
            loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets"));
        return ValueTask.FromResult<IConnectionListener>(new Listener(this, socket, connections, transport.NoDelay));
    }

    private void AcceptFailed(EndPoint endpoint, SocketException error)
    {
        if (_log.Due(out var failures))
        {
            LogAcceptFailed(_logger, endpoint.ToString() ?? "?", error.Message, failures, limits.OpenFileLimit);
        }
    }

    [LoggerMessage(EventId = EventIds.AcceptFailed, Level = LogLevel.Error,
        Message = "Cannot accept connections on {EndPoint}: {Error}. The process or the system is out of file descriptors (the process's open-file limit was {Limit} at start-up); waiting connections are accepted once some close, but the runtime itself may fail for want of them. Raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower EdgeServer:Connections:MaxConnections. Failures since the last such line: {Failures}")]
    private static partial void LogAcceptFailed(ILogger logger, string endPoint, string error, int failures, long? limit);

    private sealed class Listener(SocketListenerFactory owner, Socket socket, SocketConnectionContextFactory connections, bool noDelay) : IConnectionListener
    {
        public EndPoint EndPoint { get; } = socket.LocalEndPoint!;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (true)
            {
                try
                {
                    var accepted = await socket.AcceptAsync(cancellationToken);
                    try
                    {
                        accepted.NoDelay = noDelay;
                    }
                    catch (SocketException)
                    {
                        accepted.Dispose();
                        continue;
                    }

                    return connections.Create(accepted);
                }
                catch (ObjectDisposedException)
                {
                    // Unbound or disposed: no more connections.
                    return null;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
                {
                    return null;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
                {
                    owner.AcceptFailed(EndPoint, e);
                    await Task.Delay(RetryAfter, owner._clock, cancellationToken);
                }
                catch (SocketException)
                {
                    // The connection was reset while it waited in the backlog; take the next one, as Kestrel does.
                }
            }
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            socket.Dispose();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            socket.Dispose();
            connections.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
