using System.Globalization;
using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.Inference.Diagnostics;
using EdgeServer.OpenAi;

namespace EdgeServer.Ollama;

/// <summary>
/// Ollama's replies: streamed as one NDJSON object per piece of text (<c>done: false</c>), then a last object with
/// <c>done: true</c>, <c>done_reason</c>, token counts and durations in nanoseconds; whole, that last object with all
/// the text. Ollama's requests have one choice.
/// </summary>
internal abstract class OllamaShape(string model, TimeProvider clock, long started) : IResponseShape<NdJsonStream>
{
    protected string Model => model;

    protected string Now() => clock.GetUtcNow().UtcDateTime.ToString("o", CultureInfo.InvariantCulture);

    public Task WriteStartAsync(NdJsonStream stream, int choices, CancellationToken cancellationToken) => Task.CompletedTask;

    public abstract Task WriteChunkAsync(NdJsonStream stream, GenerationChunk chunk, CancellationToken cancellationToken);

    public Task WriteEndAsync(NdJsonStream stream, GenerationUsage usage, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task WriteErrorAsync(NdJsonStream stream, OpenAiException error, CancellationToken cancellationToken) =>
        stream.WriteAsync(new OllamaError(error.Message), OllamaJsonContext.Web.OllamaError, cancellationToken);

    public abstract IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage);

    /// <summary>
    /// The last object's statistics. load_duration is the time before the request entered its model's queue
    /// (loading the model, rendering and tokenizing the prompt); the queue wait counts in total_duration only.
    /// </summary>
    protected T WithStatistics<T>(T response, FinishReason reason, GenerationUsage? usage, GenerationTimings? timings)
        where T : OllamaStatistics
    {
        var total = clock.GetElapsedTime(started);
        var load = timings is null ? TimeSpan.Zero : total - timings.Total;
        return response with
        {
            DoneReason = reason == FinishReason.Length ? "length" : "stop",
            TotalDuration = Nanoseconds(total),
            LoadDuration = Nanoseconds(load < TimeSpan.Zero ? TimeSpan.Zero : load),
            PromptEvalCount = usage?.PromptTokens,
            PromptEvalDuration = timings is null ? null : Nanoseconds(timings.PromptEvaluation),
            EvalCount = usage?.CompletionTokens,
            EvalDuration = timings is null ? null : Nanoseconds(timings.Generation),
        };
    }

    protected static List<OllamaToolCall?>? ToolCalls(IReadOnlyList<ToolCall>? calls) => calls is not { Count: > 0 }
        ? null
        : calls.Select((c, i) => (OllamaToolCall?)new OllamaToolCall
        {
            Id = c.Id,
            Function = new OllamaToolCallFunction { Index = i, Name = c.Name, Arguments = Arguments(c.Arguments) },
        }).ToList();

    private static long Nanoseconds(TimeSpan span) => span.Ticks * 100;

    /// <summary>Arguments as an object, as Ollama sends them (the engine's are a JSON object's text).</summary>
    private static JsonElement Arguments(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object ? document.RootElement.Clone() : Empty;
        }
        catch (JsonException)
        {
            return Empty;
        }
    }

    private static readonly JsonElement Empty = JsonDocument.Parse("{}").RootElement.Clone();
}

/// <summary>/api/chat: objects with an assistant <c>message</c>.</summary>
internal sealed class OllamaChatShape(string model, TimeProvider clock, long started) : OllamaShape(model, clock, started)
{
    public override async Task WriteChunkAsync(NdJsonStream stream, GenerationChunk chunk, CancellationToken ct)
    {
        // Thinking and answer in objects of their own, as Ollama streams them (clients check thinking first).
        if (chunk.Reasoning is { Length: > 0 } thought)
        {
            await Write(stream, new OllamaChatResponse(Model, Now(), new OllamaMessage { Role = "assistant", Content = string.Empty, Thinking = thought }, false), ct);
        }

        if (chunk.Text.Length > 0)
        {
            await Write(stream, new OllamaChatResponse(Model, Now(), new OllamaMessage { Role = "assistant", Content = chunk.Text }, false), ct);
        }

        if (ToolCalls(chunk.ToolCalls) is { } calls)
        {
            await Write(stream, new OllamaChatResponse(Model, Now(), new OllamaMessage { Role = "assistant", Content = string.Empty, ToolCalls = calls }, false), ct);
        }

        if (chunk.FinishReason is { } reason)
        {
            await Write(stream, WithStatistics(new OllamaChatResponse(Model, Now(), new OllamaMessage { Role = "assistant", Content = string.Empty }, true), reason, chunk.Usage, chunk.Timings), ct);
        }
    }

    public override IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage)
    {
        var c = choices[0];
        var message = new OllamaMessage { Role = "assistant", Content = c.Text, Thinking = c.Reasoning.Length > 0 ? c.Reasoning : null, ToolCalls = ToolCalls(c.ToolCalls) };
        return OllamaResults.Json(WithStatistics(new OllamaChatResponse(Model, Now(), message, true), c.Reason, usage, c.Timings), OllamaJsonContext.Web.OllamaChatResponse);
    }

    private static Task Write(NdJsonStream stream, OllamaChatResponse value, CancellationToken ct) => stream.WriteAsync(value, OllamaJsonContext.Web.OllamaChatResponse, ct);
}

/// <summary>/api/generate: objects with the text as <c>response</c>.</summary>
internal sealed class OllamaGenerateShape(string model, TimeProvider clock, long started) : OllamaShape(model, clock, started)
{
    public override async Task WriteChunkAsync(NdJsonStream stream, GenerationChunk chunk, CancellationToken ct)
    {
        if (chunk.Reasoning is { Length: > 0 } thought)
        {
            await Write(stream, new OllamaGenerateResponse(Model, Now(), string.Empty, false) { Thinking = thought }, ct);
        }

        if (chunk.Text.Length > 0)
        {
            await Write(stream, new OllamaGenerateResponse(Model, Now(), chunk.Text, false), ct);
        }

        if (chunk.FinishReason is { } reason)
        {
            await Write(stream, WithStatistics(new OllamaGenerateResponse(Model, Now(), string.Empty, true), reason, chunk.Usage, chunk.Timings), ct);
        }
    }

    public override IResult Complete(IReadOnlyList<ChoiceResult> choices, GenerationUsage usage)
    {
        var c = choices[0];
        return OllamaResults.Json(WithStatistics(new OllamaGenerateResponse(Model, Now(), c.Text, true) { Thinking = c.Reasoning.Length > 0 ? c.Reasoning : null }, c.Reason, usage, c.Timings), OllamaJsonContext.Web.OllamaGenerateResponse);
    }

    private static Task Write(NdJsonStream stream, OllamaGenerateResponse value, CancellationToken ct) => stream.WriteAsync(value, OllamaJsonContext.Web.OllamaGenerateResponse, ct);
}
