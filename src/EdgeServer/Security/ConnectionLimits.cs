using System.Net;
using EdgeServer.Hosting;
using EdgeServer.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Options;

namespace EdgeServer.Security;

/// <summary>
/// Caps open connections in all and per client address (EdgeServer:Connections) as Kestrel connection
/// middleware: a connection over a cap is closed before a byte of it is read, and the ones already open go on.
/// The total is lowered at start-up to stay well under the open-file limit, so the process keeps descriptors
/// to accept (and refuse) connections and for the runtime itself. Kestrel's MaxConcurrentConnections is not
/// used: it logs a warning per refused connection, which a client reconnecting in a loop turns into a flood;
/// here refusals are logged once per interval with a count.
/// </summary>
public sealed partial class ConnectionLimits
{
    private static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);
    private readonly Lock _lock = new();
    private readonly Dictionary<IPAddress, int> _perAddress = [];
    private readonly int _maxPerAddress;
    private readonly LogThrottle _perAddressLog;
    private readonly LogThrottle _totalLog;
    private readonly ILogger<ConnectionLimits> _logger;
    private int _open;

    public ConnectionLimits(IOptions<EdgeServerOptions> options, TimeProvider clock, ILogger<ConnectionLimits> logger)
    {
        var settings = options.Value.Connections;
        _logger = logger;
        _maxPerAddress = settings.MaxPerClientAddress;
        _perAddressLog = new LogThrottle(clock, LogInterval);
        _totalLog = new LogThrottle(clock, LogInterval);
        MaxConnections = settings.MaxConnections;
        OpenFileLimit = OpenFiles.Limit();
        if (OpenFileLimit is { } limit && OpenFiles.Count() is { } open && OpenFiles.ConnectionBudget(limit, open) is var budget && budget < MaxConnections)
        {
            LogLowered(logger, MaxConnections, limit, open, budget);
            MaxConnections = budget;
        }
    }

    /// <summary>The cap in force: the setting, or less when the open-file limit does not allow it.</summary>
    public int MaxConnections { get; }

    /// <summary>The process's open-file limit at start-up (null: unknown), for messages written when no file can be opened.</summary>
    public long? OpenFileLimit { get; }

    /// <summary>The middleware, for <c>ListenOptions.Use</c>.</summary>
    public ConnectionDelegate Apply(ConnectionDelegate next) => async connection =>
    {
        var address = connection.RemoteEndPoint is IPEndPoint ip ? (ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address) : null;
        if (!TryOpen(address))
        {
            connection.Abort(new ConnectionAbortedException("Over the connection limit."));
            return;
        }

        try
        {
            await next(connection);
        }
        finally
        {
            Close(address);
        }
    };

    private bool TryOpen(IPAddress? address)
    {
        int held;
        bool overTotal;
        lock (_lock)
        {
            held = address is null ? 0 : _perAddress.GetValueOrDefault(address);
            overTotal = _open >= MaxConnections;
            if (!overTotal && (_maxPerAddress == 0 || held < _maxPerAddress))
            {
                _open++;
                if (address is not null)
                {
                    _perAddress[address] = held + 1;
                }

                return true;
            }
        }

        var shown = address?.ToString() ?? "a local socket";
        if (overTotal)
        {
            if (_totalLog.Due(out var refused))
            {
                LogTotalRefused(_logger, shown, MaxConnections, refused);
            }
        }
        else if (_perAddressLog.Due(out var refused))
        {
            LogPerAddressRefused(_logger, shown, held, refused);
        }

        return false;
    }

    private void Close(IPAddress? address)
    {
        lock (_lock)
        {
            _open--;
            if (address is not null && _perAddress.TryGetValue(address, out var count))
            {
                if (count <= 1)
                {
                    _perAddress.Remove(address);
                }
                else
                {
                    _perAddress[address] = count - 1;
                }
            }
        }
    }

    [LoggerMessage(EventId = EventIds.PerAddressRefused, Level = LogLevel.Warning,
        Message = "Refused a connection from {Address}: it holds {Held} already (setting EdgeServer:Connections:MaxPerClientAddress). Refusals for this reason since the last such line: {Refused}")]
    private static partial void LogPerAddressRefused(ILogger logger, string address, int held, int refused);

    [LoggerMessage(EventId = EventIds.TotalRefused, Level = LogLevel.Warning,
        Message = "Refused a connection from {Address}: {Max} connections are open (setting EdgeServer:Connections:MaxConnections). Refusals for this reason since the last such line: {Refused}")]
    private static partial void LogTotalRefused(ILogger logger, string address, int max, int refused);

    [LoggerMessage(EventId = EventIds.ConnectionsLowered, Level = LogLevel.Warning,
        Message = "EdgeServer:Connections:MaxConnections is {Configured}, but the process may open only {Limit} files ({Open} open now); serving at most {Max} connections. To allow more, raise the open-file limit (LimitNOFILE= in the systemd unit, ulimit -n, docker --ulimit nofile=).")]
    private static partial void LogLowered(ILogger logger, int configured, long limit, int open, int max);
}
