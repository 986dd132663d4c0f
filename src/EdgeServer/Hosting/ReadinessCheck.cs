using System.Text.Json;
using EdgeServer.Inference;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace EdgeServer.Hosting;

/// <summary>
/// Ready when a model can serve: the first model that is not unavailable is loaded (if it was not yet) and
/// generates one token. A success is remembered for 30 s so probes stay cheap.
/// </summary>
internal sealed class ReadinessCheck(IInferenceEngine engine, TimeProvider clock, Device.ThermalMonitor? thermal = null) : IHealthCheck
{
    private static readonly TimeSpan Remember = TimeSpan.FromSeconds(30);
    private static readonly System.Text.Encodings.Web.JavaScriptEncoder Relaxed = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping;
    private DateTimeOffset _lastSuccess = DateTimeOffset.MinValue;
    private string _lastDescription = string.Empty;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (clock.GetUtcNow() - _lastSuccess < Remember)
        {
            return HealthCheckResult.Healthy(_lastDescription + Heat());
        }

        var model = engine.ListModels().FirstOrDefault(m => m.Status != ModelStatus.Unavailable);
        if (model is null)
        {
            return HealthCheckResult.Unhealthy("No model can be served: none was found, or every one is unavailable (see /v1/models).");
        }

        try
        {
            var started = clock.GetTimestamp();
            var session = await engine.StartAsync(new GenerationRequest { Model = model.Id, Prompt = "ready?", MaxTokens = 1, Sampling = new SamplingParameters { Temperature = 0 } }, cancellationToken);
            await foreach (var _ in session.ReadAllAsync(cancellationToken))
            {
            }

            _lastDescription = $"Model '{model.Id}' decoded a token in {clock.GetElapsedTime(started).TotalMilliseconds:0} ms.";
            _lastSuccess = clock.GetUtcNow();
            return HealthCheckResult.Healthy(_lastDescription + Heat());
        }
        catch (InferenceException e)
        {
            return HealthCheckResult.Unhealthy($"Model '{model.Id}' could not decode: {e.Message}");
        }
    }

    /// <summary>" Hot: ..." while the heat back-off holds threads back; the server still serves.</summary>
    private string Heat() => thermal?.Status switch
    {
        { ThreadCeiling: { } ceiling, Hottest: { } hottest } => FormattableString.Invariant($" Hot: {hottest.Celsius:0.0} °C in {hottest.Type}; decode threads capped at {ceiling}."),
        { ThreadCeiling: { } ceiling } => FormattableString.Invariant($" Hot before the thermal zones became unreadable; decode threads capped at {ceiling}, given back one per reading."),
        _ => string.Empty,
    };

    public static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var entry = report.Entries.Values.FirstOrDefault();
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = Relaxed }))
        {
            json.WriteStartObject();
            json.WriteString("status", report.Status == HealthStatus.Healthy ? "ready" : "not_ready");
            json.WriteString("description", entry.Description ?? string.Empty);
            json.WriteEndObject();
        }

        return context.Response.Body.WriteAsync(buffer.ToArray()).AsTask();
    }
}
