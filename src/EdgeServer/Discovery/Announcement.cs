using System.Net;
using System.Net.Sockets;

namespace EdgeServer.Discovery;

/// <summary>
/// What this server announces (RFC 6763): the instance <c>NAME._edgeserver._tcp.local</c> and
/// <c>NAME._http._tcp.local</c>, each a PTR from its service type, an SRV naming the host and port and a TXT record,
/// and the host's addresses.
/// </summary>
/// <param name="Txt">version=, path=/v1, key=required|none, models= (a short hash of the model list).</param>
public sealed record Announcement(string Instance, string Host, ushort Port, IReadOnlyList<IPAddress> Addresses, IReadOnlyList<string> Txt)
{
    public const string ServiceType = "_edgeserver._tcp.local";
    public const string HttpServiceType = "_http._tcp.local";
    public const string Services = "_services._dns-sd._udp.local";

    /// <summary>RFC 6762's recommended TTL for records naming a host (120 s); the others use the same, as Avahi does.</summary>
    public const uint Ttl = 120;

    public string Fqdn(string type) => $"{Instance}.{type}";

    /// <summary>All the records, as an unsolicited announcement or an answer; with ttl 0, the goodbye.</summary>
    public DnsMessage Response(uint ttl = Ttl)
    {
        var records = new List<DnsRecord>();
        foreach (var type in new[] { ServiceType, HttpServiceType })
        {
            records.Add(new DnsRecord(Services, DnsType.Ptr, ttl, type));
            records.Add(new DnsRecord(type, DnsType.Ptr, ttl, Fqdn(type)));
            records.Add(new DnsRecord(Fqdn(type), DnsType.Srv, ttl, new SrvData(0, 0, Port, Host), CacheFlush: true));
            records.Add(new DnsRecord(Fqdn(type), DnsType.Txt, ttl, Txt, CacheFlush: true));
        }

        foreach (var address in Addresses)
        {
            records.Add(new DnsRecord(Host, address.AddressFamily == AddressFamily.InterNetworkV6 ? DnsType.Aaaa : DnsType.A, ttl, address, CacheFlush: true));
        }

        return new DnsMessage(0, true, [], records);
    }

    /// <summary>Whether a query asks for anything announced here (by service type, instance or host name).</summary>
    public bool IsAskedBy(DnsMessage query) =>
        !query.IsResponse && query.Questions.Any(q =>
            q.Name.Equals(ServiceType, StringComparison.OrdinalIgnoreCase)
            || q.Name.Equals(HttpServiceType, StringComparison.OrdinalIgnoreCase)
            || q.Name.Equals(Services, StringComparison.OrdinalIgnoreCase)
            || q.Name.Equals(Fqdn(ServiceType), StringComparison.OrdinalIgnoreCase)
            || q.Name.Equals(Fqdn(HttpServiceType), StringComparison.OrdinalIgnoreCase)
            || q.Name.Equals(Host, StringComparison.OrdinalIgnoreCase));

    /// <summary>The TXT strings: what a gateway needs to know before it asks the box anything.</summary>
    public static IReadOnlyList<string> TxtFor(string version, bool keyRequired, IEnumerable<string> modelIds)
    {
        var list = string.Join('\n', modelIds.Order(StringComparer.Ordinal));
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(list)))[..12];
        return [$"version={version}", "path=/v1", $"key={(keyRequired ? "required" : "none")}", $"models={hash}"];
    }
}

/// <summary>A box as its announcement describes it.</summary>
/// <param name="Name">The instance name (a Boxes entry without Url is matched by it).</param>
/// <param name="Url">http://ADDRESS:PORT from its SRV and address records.</param>
/// <param name="Conflicted">Announced at two different addresses at once (one of them may be an impostor): not used.</param>
public sealed record AnnouncedBox(string Name, Uri Url, bool KeyRequired, string? Version, string? Models, bool Conflicted);

/// <summary>
/// The boxes announced on the network, from the mDNS answers heard: kept until their TTL runs out or a goodbye (TTL
/// 0) removes them, at most <c>max</c> of them (more are ignored, so a flood of announcements cannot grow the table).
/// </summary>
public sealed class AnnouncedBoxes(TimeProvider clock, int max)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Instance> _instances = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, (IPAddress Address, DateTimeOffset Expires)> _hosts = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Hosts and ports kept per instance (two already mark it conflicted).</summary>
    private const int MaxTargets = 4;

    /// <summary>The longest a record is kept, whatever TTL it came with.</summary>
    private static readonly TimeSpan MaxTtl = TimeSpan.FromMinutes(10);

    /// <summary>Instance names ignored because the table was full (for a log line).</summary>
    public int Ignored { get; private set; }

    private sealed class Instance
    {
        public DateTimeOffset Expires;
        public Dictionary<(string Host, ushort Port), DateTimeOffset> Targets { get; } = [];
        public IReadOnlyList<string> Txt = [];
    }

    /// <summary>Takes in an mDNS response's records.</summary>
    public void Observe(DnsMessage message)
    {
        if (!message.IsResponse)
        {
            return;
        }

        var now = clock.GetUtcNow();
        DateTimeOffset Until(uint ttl) => now + TimeSpan.FromSeconds(Math.Min(ttl, MaxTtl.TotalSeconds));
        lock (_lock)
        {
            foreach (var r in message.Records.Where(r => r.Type == DnsType.Ptr && r.Name.Equals(Announcement.ServiceType, StringComparison.OrdinalIgnoreCase)))
            {
                var fqdn = (string)r.Data;
                if (!fqdn.EndsWith("." + Announcement.ServiceType, StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                if (r.Ttl == 0)
                {
                    _instances.Remove(fqdn);
                    continue;
                }

                if (!_instances.TryGetValue(fqdn, out var instance))
                {
                    Expire(now);
                    if (_instances.Count >= max)
                    {
                        Ignored++;
                        continue;
                    }

                    _instances[fqdn] = instance = new Instance();
                }

                instance.Expires = Until(r.Ttl);
            }

            foreach (var r in message.Records)
            {
                if (r.Type == DnsType.Srv && _instances.TryGetValue(r.Name, out var withSrv) && r.Data is SrvData srv)
                {
                    if (r.Ttl == 0)
                    {
                        withSrv.Targets.Remove((srv.Target, srv.Port));
                    }
                    else if (withSrv.Targets.Count < MaxTargets || withSrv.Targets.ContainsKey((srv.Target, srv.Port)))
                    {
                        withSrv.Targets[(srv.Target, srv.Port)] = Until(r.Ttl);
                    }
                }
                else if (r.Type == DnsType.Txt && _instances.TryGetValue(r.Name, out var withTxt) && r.Data is IReadOnlyList<string> txt)
                {
                    withTxt.Txt = txt;
                }
            }

            // Addresses after the SRV records that name their hosts, whatever the order in the packet.
            foreach (var r in message.Records)
            {
                if (r.Type == DnsType.A && r.Data is IPAddress address && (_hosts.ContainsKey(r.Name) || _instances.Values.Any(i => i.Targets.Keys.Any(t => t.Host.Equals(r.Name, StringComparison.OrdinalIgnoreCase)))))
                {
                    if (r.Ttl == 0)
                    {
                        _hosts.Remove(r.Name);
                    }
                    else
                    {
                        _hosts[r.Name] = (address, Until(r.Ttl));
                    }
                }
            }
        }
    }

    /// <summary>The boxes fully described now (instance, host, port and address known, none expired).</summary>
    public IReadOnlyList<AnnouncedBox> Current()
    {
        var now = clock.GetUtcNow();
        var boxes = new List<AnnouncedBox>();
        lock (_lock)
        {
            Expire(now);
            foreach (var (fqdn, instance) in _instances)
            {
                var targets = instance.Targets.Keys
                    .Select(t => (t.Port, Address: _hosts.TryGetValue(t.Host, out var h) ? h.Address : null))
                    .Where(t => t.Address is not null)
                    .Distinct()
                    .ToList();
                if (targets.Count == 0)
                {
                    continue;
                }

                string? Txt(string key) => instance.Txt.FirstOrDefault(s => s.StartsWith(key + "=", StringComparison.Ordinal))?[(key.Length + 1)..];
                var (port, address) = targets[0];
                var host = address!.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
                boxes.Add(new AnnouncedBox(fqdn[..^(Announcement.ServiceType.Length + 1)], new Uri($"http://{host}:{port}"),
                    Txt("key") != "none", Txt("version"), Txt("models"), Conflicted: targets.Count > 1));
            }
        }

        return boxes;
    }

    private void Expire(DateTimeOffset now)
    {
        foreach (var (fqdn, instance) in _instances.Where(i => i.Value.Expires <= now).ToList())
        {
            _instances.Remove(fqdn);
        }

        foreach (var instance in _instances.Values)
        {
            foreach (var target in instance.Targets.Where(t => t.Value <= now).Select(t => t.Key).ToList())
            {
                instance.Targets.Remove(target);
            }
        }

        foreach (var host in _hosts.Where(h => h.Value.Expires <= now).Select(h => h.Key).ToList())
        {
            _hosts.Remove(host);
        }
    }
}
