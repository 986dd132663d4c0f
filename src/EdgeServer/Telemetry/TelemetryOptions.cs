namespace EdgeServer.Telemetry;

/// <summary>EdgeServer:Telemetry.</summary>
public sealed class TelemetryOptions
{
    /// <summary>An OTLP/HTTP collector (e.g. http://collector:4318); metrics and traces are sent there too. None by default.</summary>
    public string? OtlpEndpoint { get; set; }
}
