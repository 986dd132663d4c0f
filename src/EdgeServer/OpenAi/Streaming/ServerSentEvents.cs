using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Connections;
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
    private readonly ArrayBufferWriter<byte> _event = new(1024);

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

    public Task WriteAsync<T>(T value, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken) =>
        WriteAsync(null, value, typeInfo, cancellationToken);

    /// <summary>An event with a name line first (<c>event: name</c>), as the Responses API sends them.</summary>
    public async Task WriteAsync<T>(string? eventName, T value, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken)
    {
        // Composed apart from the response, so a failure to write it can only be the connection's.
        _event.ResetWrittenCount();
        if (eventName is not null)
        {
            _event.Write(System.Text.Encoding.UTF8.GetBytes($"event: {eventName}\n"));
        }

        _event.Write(Prefix);
        // The writer's own options decide escaping; take the context's, so streamed text is written as whole bodies are.
        using (var json = new Utf8JsonWriter(_event, new JsonWriterOptions { Encoder = typeInfo.Options.Encoder }))
        {
            JsonSerializer.Serialize(json, value, typeInfo);
        }

        _event.Write(EventEnd);
        await SendAsync(_event.WrittenMemory, cancellationToken);
    }

    public Task WriteDoneAsync(CancellationToken cancellationToken) => SendAsync(Done, cancellationToken);

    /// <summary>
    /// Writes and flushes. A client that closed the connection (a stop button) ends the stream with
    /// <see cref="ConnectionAbortedException"/>, whichever way the pipe reports it: the request's abort token is
    /// signalled a moment later, on another thread.
    /// </summary>
    private async Task SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        FlushResult result;
        try
        {
            result = await response.BodyWriter.WriteAsync(bytes, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new ConnectionAbortedException("The client closed the connection.", e);
        }

        if (result.IsCompleted)
        {
            throw new ConnectionAbortedException("The client closed the connection.");
        }
    }
}
