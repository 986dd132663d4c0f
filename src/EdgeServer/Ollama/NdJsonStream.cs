using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using EdgeServer.OpenAi;
using Microsoft.AspNetCore.Http.Features;

namespace EdgeServer.Ollama;

/// <summary>
/// Writes newline-delimited JSON as Ollama streams: one object per line, flushed at once. JSON never contains a raw
/// newline (strings are escaped), so a line is always one whole object.
/// </summary>
internal sealed class NdJsonStream(HttpResponse response) : IEventStream<NdJsonStream>
{
    public static NdJsonStream Open(HttpResponse response) => new(response);

    public bool Started { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/x-ndjson";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        response.HttpContext.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(cancellationToken);
        Started = true;
    }

    public async Task WriteAsync<T>(T value, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken)
    {
        var writer = response.BodyWriter;
        using (var json = new Utf8JsonWriter(writer, new JsonWriterOptions { Encoder = typeInfo.Options.Encoder }))
        {
            JsonSerializer.Serialize(json, value, typeInfo);
        }

        writer.Write("\n"u8);
        await writer.FlushAsync(cancellationToken);
    }
}
