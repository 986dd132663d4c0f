using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace EdgeServer.Gateway;

/// <summary>
/// Gateway mode: this server also forwards requests for models it does not serve itself to other EdgeServer boxes
/// (see docs/gateway.md). Its own models are still served here first.
/// </summary>
public sealed class GatewaySettings
{
    /// <summary>Forward requests for models this server does not have to <see cref="Boxes"/>.</summary>
    public bool Enabled { get; set; }

    /// <summary>The other EdgeServer boxes.</summary>
    [ValidateEnumeratedItems]
    public List<GatewayBox> Boxes { get; set; } = [];

    /// <summary>Seconds between reads of each box's GET /v1/models (which models it has, loaded or not, and its queue).</summary>
    [Range(1, 3600)]
    public int RefreshSeconds { get; set; } = 10;

    /// <summary>Seconds between GET /health probes of each box; a box failing two in a row is taken out until one passes.</summary>
    [Range(1, 3600)]
    public int HealthCheckSeconds { get; set; } = 10;

    /// <summary>A box that failed a forwarded request (refused the connection, broke a stream) is left out this many seconds.</summary>
    [Range(1, 3600)]
    public int ReactivationSeconds { get; set; } = 30;

    /// <summary>Longest silence of a box while it answers (a small board's first token on a long prompt takes minutes).</summary>
    [Range(1, 86_400)]
    public int ActivityTimeoutSeconds { get; set; } = 600;

    /// <summary>Finding boxes by their announcements on the local network (mDNS/DNS-SD).</summary>
    [ValidateObjectMembers]
    public Discovery.GatewayDiscoverySettings Discovery { get; set; } = new();
}

/// <summary>One box the gateway forwards to.</summary>
public sealed class GatewayBox
{
    /// <summary>A name for logs, metrics and /v1/models ("kitchen-pi").</summary>
    [Required]
    public string Name { get; set; } = string.Empty;

    /// <summary>
    /// Its base address, e.g. http://kitchen-pi.local:8080 (without /v1). Left out, with discovery on, the box is
    /// found by its announcement under <see cref="Name"/>.
    /// </summary>
    public string Url { get; set; } = string.Empty;

    /// <summary>The key the box asks for, sent as Authorization: Bearer; the client's own key never goes to a box.</summary>
    public string? ApiKey { get; set; }
}
