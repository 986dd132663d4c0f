using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http.Features;

namespace EdgeServer.OpenAi;

/// <summary>
/// Writes Server-Sent Events as OpenAI does: each event is <c>data: {json}\n\n</c>, flushed at once. JSON never
/// contains a raw newline (strings are escaped), so an event can never be split by the text it carries.
/// </summary>
internal sealed class ServerSentEvents(HttpResponse response) : IEventStream<ServerSentEvents>
{
    private static readonly byte[] Prefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public static ServerSentEvents Open(HttpResponse response) => new(response);

    public bool Started { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        response.HttpContext.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(cancellationToken);
        Started = true;
    }

    public async Task WriteAsync<T>(T value, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken)
    {
        var writer = response.BodyWriter;
        writer.Write(Prefix);
        // The writer's own options decide escaping; take the context's, so streamed text is written as whole bodies are.
        using (var json = new Utf8JsonWriter(writer, new JsonWriterOptions { Encoder = typeInfo.Options.Encoder }))
        {
            JsonSerializer.Serialize(json, value, typeInfo);
        }

        writer.Write(EventEnd);
        await writer.FlushAsync(cancellationToken);
    }

    /// <summary>An event with a name line first (<c>event: name</c>), as the Responses API sends them.</summary>
    public Task WriteAsync<T>(string eventName, T value, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken)
    {
        response.BodyWriter.Write(System.Text.Encoding.UTF8.GetBytes($"event: {eventName}\n"));
        return WriteAsync(value, typeInfo, cancellationToken);
    }

    public async Task WriteDoneAsync(CancellationToken cancellationToken)
    {
        await response.BodyWriter.WriteAsync(Done, cancellationToken);
        await response.BodyWriter.FlushAsync(cancellationToken);
    }
}
