using System.ComponentModel.DataAnnotations;

namespace EdgeServer.Discovery;

/// <summary>
/// How this server announces itself on the local network (mDNS/DNS-SD, docs/gateway.md "Finding the boxes"):
/// as <c>_edgeserver._tcp</c> and <c>_http._tcp</c>, through the Avahi daemon where it runs and by its own responder
/// otherwise. A server that listens on loopback addresses only announces nothing.
/// </summary>
public sealed class DiscoverySettings
{
    /// <summary>Announce this server on the local network when it listens beyond loopback.</summary>
    public bool Announce { get; set; } = true;

    /// <summary>The name it is announced under (a gateway's <c>Boxes</c> entry finds it by this name); default "EdgeServer on HOSTNAME".</summary>
    [StringLength(63)]
    public string? InstanceName { get; set; }

    /// <summary>The name announced: <see cref="InstanceName"/>, or "EdgeServer on" and the host name, cut to a DNS label's 63 bytes.</summary>
    public string Name()
    {
        var name = string.IsNullOrWhiteSpace(InstanceName) ? $"EdgeServer on {System.Net.Dns.GetHostName()}" : InstanceName.Trim();
        name = name.Replace('.', '-');
        while (System.Text.Encoding.UTF8.GetByteCount(name) > 63)
        {
            name = name[..^1];
        }

        return name;
    }
}

/// <summary>A gateway finding boxes on the local network by their announcements.</summary>
public sealed class GatewayDiscoverySettings
{
    /// <summary>Look for boxes announced as _edgeserver._tcp on the local network.</summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// Use announced boxes that require no key even when no Boxes entry names them. Off by default: any device on
    /// the network can announce itself, and would then be sent the prompts for the models it claims to have.
    /// </summary>
    public bool AcceptKeyless { get; set; }

    /// <summary>At most this many announced boxes are kept (an attacker announcing thousands is cut off here).</summary>
    [Range(1, 1024)]
    public int MaxBoxes { get; set; } = 32;
}
