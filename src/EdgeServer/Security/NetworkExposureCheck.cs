using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace EdgeServer.Security;

/// <summary>
/// Chooses where the server listens when no address is configured: this machine only without API keys, the
/// network with them. Once listening, warns loudly when the API is reachable from other machines without any key.
/// </summary>
internal sealed partial class NetworkExposureCheck(IServer server, IConfiguration configuration, IHostApplicationLifetime lifetime, ApiKeyStore keys,
    ILogger<NetworkExposureCheck> logger) : IHostedLifecycleService
{
    private const string LoopbackDefault = "http://127.0.0.1:8080";
    private const string NetworkDefault = "http://0.0.0.0:8080";

    /// <summary>
    /// Runs before any hosted service starts, so the web host finds the address as if it had been configured
    /// (urls, ASPNETCORE_URLS, --urls, and code that adds to the server's addresses all win over it).
    /// </summary>
    public Task StartingAsync(CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(configuration[WebHostDefaults.ServerUrlsKey])
            && server.Features.Get<IServerAddressesFeature>()?.Addresses is { IsReadOnly: false, Count: 0 } addresses)
        {
            addresses.Add(keys.Enabled ? NetworkDefault : LoopbackDefault);
        }

        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(Check);
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    internal static bool IsLoopback(string address)
    {
        if (!Uri.TryCreate(address.Replace("://+", "://0.0.0.0", StringComparison.Ordinal).Replace("://*", "://0.0.0.0", StringComparison.Ordinal), UriKind.Absolute, out var uri))
        {
            return false;
        }

        return uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));
    }

    private void Check()
    {
        if (keys.Enabled)
        {
            LogKeysRequired(logger, keys.Count);
            return;
        }

        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses.Where(a => !IsLoopback(a)))
        {
            LogExposed(logger, address);
        }
    }

    [LoggerMessage(EventId = EventIds.ExposedWithoutKey, Level = LogLevel.Warning, Message = "SECURITY: EdgeServer listens on {Address} with NO API KEY. Every device on the network can use it. Set EdgeServer:Security:ApiKeys or ApiKeyFile, or listen on 127.0.0.1 only.")]
    private static partial void LogExposed(ILogger logger, string address);

    [LoggerMessage(EventId = EventIds.KeysRequired, Level = LogLevel.Information, Message = "API keys required on every route but /health ({Count} configured)")]
    private static partial void LogKeysRequired(ILogger logger, int count);
}
