using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace EdgeServer.Security;

/// <summary>Once listening, warns loudly when the API is reachable from other machines without any API key.</summary>
internal sealed partial class NetworkExposureCheck(IServer server, IHostApplicationLifetime lifetime, ApiKeyStore keys, ILogger<NetworkExposureCheck> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(Check);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

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
