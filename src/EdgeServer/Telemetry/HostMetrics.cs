using System.Diagnostics.Metrics;

namespace EdgeServer.Telemetry;

/// <summary>The host's own instruments: API requests by endpoint, model and status.</summary>
public sealed class HostMetrics
{
    public const string MeterName = "EdgeServer";
    private readonly Counter<long> _requests;

    public HostMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(MeterName);
        _requests = meter.CreateCounter<long>("edgeserver.requests", "{request}", "API requests by endpoint, model and HTTP status.");
    }

    public void Request(string endpoint, string model, int status) => _requests.Add(1,
        new KeyValuePair<string, object?>("endpoint", endpoint),
        new KeyValuePair<string, object?>("model", model),
        new KeyValuePair<string, object?>("status", status));
}
