using EdgeServer.Hosting;
using EdgeServer.Inference.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace EdgeServer.Telemetry;

/// <summary>Metrics (Prometheus at /metrics, OTLP when configured) and traces through OpenTelemetry.</summary>
public static class TelemetryExtensions
{
    public static WebApplicationBuilder AddEdgeServerTelemetry(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection($"{EdgeServerOptions.Section}:Telemetry").Get<TelemetryOptions>() ?? new();
        builder.Services.AddSingleton<HostMetrics>();
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("edgeserver", serviceVersion: typeof(TelemetryExtensions).Assembly.GetName().Version?.ToString()))
            .WithMetrics(m => m
                .AddMeter(InferenceDiagnostics.MeterName, HostMetrics.MeterName)
                .AddAspNetCoreInstrumentation()
                .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0))
            .WithTracing(t => t
                .AddSource(InferenceDiagnostics.ActivitySourceName)
                .AddAspNetCoreInstrumentation(o => o.Filter = c => EdgeServerHosting.IsApiPath(c.Request.Path)));
        if (!string.IsNullOrWhiteSpace(options.OtlpEndpoint))
        {
            otel.UseOtlpExporter(OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf, new Uri(options.OtlpEndpoint));
        }

        return builder;
    }

    public static WebApplication MapEdgeServerTelemetry(this WebApplication app)
    {
        var metrics = app.MapPrometheusScrapingEndpoint("/metrics");
        if (app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EdgeServerOptions>>().Value.Security.MetricsWithoutKey)
        {
            metrics.AllowAnonymous();
        }

        return app;
    }
}
