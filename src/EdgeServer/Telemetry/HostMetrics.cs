using System.Diagnostics.Metrics;

namespace EdgeServer.Telemetry;

/// <summary>The host's own instruments: API requests by endpoint, model and status.</summary>
public sealed class HostMetrics
{
    public const string MeterName = "EdgeServer";
    private readonly Counter<long> _requests;
    private readonly Counter<long> _forwarded;
    private readonly Counter<long> _forwardFailures;

    public HostMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(MeterName);
        _requests = meter.CreateCounter<long>("edgeserver.requests", "{request}", "API requests by endpoint, model and HTTP status.");
        _forwarded = meter.CreateCounter<long>("edgeserver.gateway.requests", "{request}", "Requests a gateway forwarded, by box and HTTP status.");
        _forwardFailures = meter.CreateCounter<long>("edgeserver.gateway.failures", "{request}", "Forwards that failed at the box (refused, reset, timed out), by box and error.");
    }

    public void Request(string endpoint, string model, int status) => _requests.Add(1,
        new KeyValuePair<string, object?>("endpoint", endpoint),
        new KeyValuePair<string, object?>("model", model),
        new KeyValuePair<string, object?>("status", status));

    /// <summary>A request a gateway sent to a box; <paramref name="error"/> names YARP's failure, if any.</summary>
    public void Forwarded(string box, int status, string? error)
    {
        _forwarded.Add(1, new KeyValuePair<string, object?>("box", box), new KeyValuePair<string, object?>("status", status));
        if (error is not null)
        {
            _forwardFailures.Add(1, new KeyValuePair<string, object?>("box", box), new KeyValuePair<string, object?>("error", error));
        }
    }
}
