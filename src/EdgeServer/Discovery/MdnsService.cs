using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Security;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;

namespace EdgeServer.Discovery;

/// <summary>
/// mDNS on the local network (RFC 6762, port 5353, group 224.0.0.251): announces this server when it listens
/// beyond loopback (through the Avahi daemon where one runs, else answering queries itself), and, on a gateway with
/// discovery on, asks for <c>_edgeserver._tcp</c> boxes and keeps what they answer in <see cref="AnnouncedBoxes"/>.
/// The socket shares the port with any other responder (SO_REUSEADDR). Answers are rate-limited to one per second,
/// so a flood of queries cannot make this server flood the network.
/// </summary>
public sealed partial class MdnsService(IOptions<EdgeServerOptions> options, IServer server, IHostApplicationLifetime lifetime, IInferenceEngine engine,
    ApiKeyStore keys, AnnouncedBoxes boxes, TimeProvider clock, ILogger<MdnsService> logger) : BackgroundService
{
    public const int MdnsPort = 5353;
    private static readonly IPAddress Group = IPAddress.Parse("224.0.0.251");
    private static readonly IPEndPoint GroupEndPoint = new(Group, MdnsPort);
    private readonly List<Process> _avahi = [];
    private Announcement? _announced;
    private Socket? _socket;
    private long _lastAnswer;
    private long _malformed;

    /// <summary>The announcement made now, if any (tests and the log read it).</summary>
    public Announcement? Announced => _announced;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var browse = settings.Gateway.Enabled && settings.Gateway.Discovery.Enabled;
        if (!settings.Discovery.Announce && !browse)
        {
            return;
        }

        // The addresses are known once Kestrel listens.
        var started = new TaskCompletionSource();
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        using (stoppingToken.Register(() => started.TrySetCanceled(stoppingToken)))
        {
            try
            {
                await started.Task;
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }

        Announcement? announcement;
        try
        {
            announcement = settings.Discovery.Announce ? Describe() : null;
        }
        catch (NetworkInformationException e)
        {
            LogNoSocket(logger, e.Message);
            return;
        }

        if (announcement is null && settings.Discovery.Announce)
        {
            LogLoopbackOnly(logger);
        }

        var useAvahi = announcement is not null && AvahiRuns();
        if (announcement is null && !browse)
        {
            return;
        }

        try
        {
            _socket = Open();
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException or NetworkInformationException)
        {
            LogNoSocket(logger, e.Message);
            return;
        }

        if (useAvahi)
        {
            Publish(announcement!);
            _announced = announcement;
            announcement = null; // Avahi answers for this server; the socket only browses
        }

        var receive = ReceiveAsync(announcement is not null, browse, stoppingToken);
        try
        {
            await AnnounceAndAskAsync(announcement, browse, settings.Gateway.RefreshSeconds, stoppingToken);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            if (_announced is not null && !useAvahi)
            {
                Send(_announced.Response(ttl: 0)); // goodbye
            }

            StopAvahi();
            _socket.Dispose();
            try
            {
                await receive;
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>Announces at start-up (three times, 1 and 2 s apart, as RFC 6762 asks) and again whenever the model list changes; asks for boxes every period.</summary>
    private async Task AnnounceAndAskAsync(Announcement? announcement, bool browse, int refreshSeconds, CancellationToken stoppingToken)
    {
        var query = new DnsMessage(0, false, [new DnsQuestion(Announcement.ServiceType, DnsType.Ptr)], []).ToBytes();
        var tick = 0;
        var nextAsk = 0;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), clock);
        do
        {
            if (announcement is not null)
            {
                var now = announcement with { Txt = Txt() };
                if (_announced is null || !now.Txt.SequenceEqual(_announced.Txt) || tick is 1 or 3)
                {
                    if (_announced is null)
                    {
                        LogAnnouncing(logger, now.Instance, now.Port, now.Addresses);
                    }

                    _announced = now;
                    Send(now.Response());
                }
            }

            if (browse && tick >= nextAsk)
            {
                Send(query);
                nextAsk = tick + Math.Max(1, refreshSeconds);
            }

            tick++;
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    private async Task ReceiveAsync(bool answer, bool browse, CancellationToken stoppingToken)
    {
        var buffer = new byte[DnsMessage.MaxSize];
        while (!stoppingToken.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await _socket!.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), stoppingToken);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.MessageSize)
            {
                continue; // larger than any mDNS message: dropped
            }

            DnsMessage message;
            try
            {
                message = DnsMessage.Parse(buffer.AsSpan(0, received.ReceivedBytes));
            }
            catch (DnsFormatException e)
            {
                if (Interlocked.Increment(ref _malformed) is 1 or 100 or 10_000)
                {
                    LogMalformed(logger, received.RemoteEndPoint, e.Message, _malformed);
                }

                continue;
            }

            if (message.IsResponse)
            {
                if (browse)
                {
                    boxes.Observe(message);
                }
            }
            else if (answer && _announced is { } announced && announced.IsAskedBy(message))
            {
                // One answer a second at most, whoever asks and however often (RFC 6762 section 6: at most once a second per record).
                var now = clock.GetTimestamp();
                if (clock.GetElapsedTime(Interlocked.Read(ref _lastAnswer), now) < TimeSpan.FromSeconds(1) && Interlocked.Read(ref _lastAnswer) != 0)
                {
                    continue;
                }

                Interlocked.Exchange(ref _lastAnswer, now);
                // A query from a port other than 5353 is a one-shot resolver (RFC 6762 section 6.7): answered to it directly.
                var to = received.RemoteEndPoint is IPEndPoint { Port: not MdnsPort } asker ? asker : GroupEndPoint;
                Send(announced.Response() with { Id = message.Id }, to);
            }
        }
    }

    private void Send(DnsMessage message, EndPoint? to = null) => Send(message.ToBytes(), to);

    private void Send(byte[] bytes, EndPoint? to = null)
    {
        try
        {
            _socket?.SendTo(bytes, to ?? GroupEndPoint);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            LogSendFailed(logger, e.Message);
        }
    }

    private static Socket Open()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(new IPEndPoint(IPAddress.Any, MdnsPort));
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, 255);
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastLoopback, true);
            var joined = 0;
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces().Where(n => n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown && n.SupportsMulticast))
            {
                if (nic.GetIPProperties().GetIPv4Properties() is not { } ipv4)
                {
                    continue;
                }

                try
                {
                    socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.AddMembership, new MulticastOption(Group, ipv4.Index));
                    joined++;
                }
                catch (SocketException)
                {
                    // An interface that takes no multicast after all.
                }
            }

            return joined > 0 ? socket : throw new InvalidOperationException("no network interface takes multicast");
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// What to announce, from the addresses Kestrel listens on: null when they are all loopback (such a server
    /// serves this machine only). Any-address listeners announce every up interface's IPv4 addresses (loopback only
    /// when there is nothing else, as in a network namespace of its own).
    /// </summary>
    private Announcement? Describe()
    {
        var bound = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        ushort port = 0;
        var addresses = new List<IPAddress>();
        foreach (var address in bound)
        {
            if (!TryParseListening(address, out var listening, out var p))
            {
                continue;
            }

            if (listening is "0.0.0.0" or "*" or "+" or "[::]" or "::")
            {
                port = p;
                addresses.AddRange(InterfaceAddresses());
            }
            else if (IPAddress.TryParse(listening.Trim('[', ']'), out var ip) && !IPAddress.IsLoopback(ip) && ip.AddressFamily == AddressFamily.InterNetwork)
            {
                port = p;
                addresses.Add(ip);
            }
        }

        addresses = addresses.Distinct().ToList();
        if (port == 0 || addresses.Count == 0)
        {
            return null;
        }

        var host = System.Net.Dns.GetHostName().Split('.')[0];
        return new Announcement(options.Value.Discovery.Name(), $"{host}.local", port, addresses, Txt());
    }

    /// <summary>"http://0.0.0.0:8080", "http://[::]:8080", "http://*:8080" into the host and port.</summary>
    internal static bool TryParseListening(string address, out string host, out ushort port)
    {
        host = string.Empty;
        port = 0;
        var rest = address.Split("://", 2) is [_, var after] ? after : address;
        rest = rest.Split('/', 2)[0];
        var colon = rest.LastIndexOf(':');
        if (colon <= 0 || !ushort.TryParse(rest[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port) || port == 0)
        {
            return false;
        }

        host = rest[..colon];
        return true;
    }

    private static List<IPAddress> InterfaceAddresses()
    {
        var all = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses.Select(a => a.Address))
            .Where(a => a.AddressFamily == AddressFamily.InterNetwork)
            .ToList();
        var outside = all.Where(a => !IPAddress.IsLoopback(a)).ToList();
        return outside.Count > 0 ? outside : all;
    }

    private IReadOnlyList<string> Txt() => Announcement.TxtFor(
        typeof(MdnsService).Assembly.GetName().Version?.ToString(3) ?? "0.0.0",
        keys.Enabled,
        engine.ListModels().Where(m => m.Status != ModelStatus.Unavailable).Select(m => m.Id));

    /// <summary>The Avahi daemon answers for this machine where it runs: its socket is there and avahi-publish is installed.</summary>
    private static bool AvahiRuns() =>
        File.Exists("/run/avahi-daemon/socket")
        && (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "avahi-publish")));

    /// <summary>One avahi-publish per service type, with the TXT record as at start-up; Avahi withdraws it when the process ends.</summary>
    private void Publish(Announcement announcement)
    {
        foreach (var type in new[] { "_edgeserver._tcp", "_http._tcp" })
        {
            var info = new ProcessStartInfo("avahi-publish") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in new[] { "-s", announcement.Instance, type, announcement.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) }.Concat(announcement.Txt))
            {
                info.ArgumentList.Add(arg);
            }

            try
            {
                var process = Process.Start(info);
                if (process is not null)
                {
                    _avahi.Add(process);
                }
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                LogAvahiFailed(logger, e.Message);
            }
        }

        LogAnnouncingAvahi(logger, announcement.Instance, announcement.Port);
    }

    private void StopAvahi()
    {
        foreach (var process in _avahi)
        {
            try
            {
                process.Kill();
                process.Dispose();
            }
            catch (InvalidOperationException)
            {
            }
        }

        _avahi.Clear();
    }

    [LoggerMessage(EventId = EventIds.Announcing, Level = LogLevel.Information, Message = "Discovery: announced as '{Instance}' (_edgeserver._tcp, _http._tcp) on port {Port} at {Addresses}")]
    private static partial void LogAnnouncing(ILogger logger, string instance, int port, IReadOnlyList<IPAddress> addresses);

    [LoggerMessage(EventId = EventIds.Announcing, Level = LogLevel.Information, Message = "Discovery: announced as '{Instance}' on port {Port} through the Avahi daemon")]
    private static partial void LogAnnouncingAvahi(ILogger logger, string instance, int port);

    [LoggerMessage(EventId = EventIds.NotAnnounced, Level = LogLevel.Information, Message = "Discovery: not announced on the network: this server listens on loopback addresses only")]
    private static partial void LogLoopbackOnly(ILogger logger);

    [LoggerMessage(EventId = EventIds.NotAnnounced, Level = LogLevel.Warning, Message = "Discovery: no mDNS on this machine ({Reason}); set EdgeServer:Discovery:Announce false to stop trying")]
    private static partial void LogNoSocket(ILogger logger, string reason);

    [LoggerMessage(EventId = EventIds.MdnsFailed, Level = LogLevel.Debug, Message = "Discovery: could not send: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = EventIds.MdnsFailed, Level = LogLevel.Warning, Message = "Discovery: avahi-publish could not be started ({Reason}); not announced")]
    private static partial void LogAvahiFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = EventIds.MdnsMalformed, Level = LogLevel.Debug, Message = "Discovery: a malformed mDNS packet from {Sender}: {Reason} ({Count} so far)")]
    private static partial void LogMalformed(ILogger logger, EndPoint sender, string reason, long count);
}
