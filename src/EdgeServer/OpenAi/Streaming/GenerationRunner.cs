using System.Text;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Telemetry;

namespace EdgeServer.OpenAi;

/// <summary>One finished choice of a whole (non-streamed) response.</summary>
internal sealed record ChoiceResult(string Text, FinishReason Reason, IReadOnlyList<TokenLogprob>? Logprobs, IReadOnlyList<ToolCall>? ToolCalls)
{
    /// <summary>The choice's timings (APIs that report durations, such as Ollama's, show them).</summary>
    public EdgeServer.Inference.Diagnostics.GenerationTimings? Timings { get; init; }

    /// <summary>The stop sequence that ended the text, if one did.</summary>
    public string? StopSequence { get; init; }

    /// <summary>The model's thinking, split from <see cref="Text"/>; empty when it did not think.</summary>
    public string Reasoning { get; init; } = string.Empty;

    /// <summary>Calls max_tokens cut off, with the whole text before them (<see cref="Text"/> holds the raw output).</summary>
    public CutOffToolCalls? CutOffToolCalls { get; init; }
}

/// <summary>
/// Runs one generation for any API, the same way: the model check, the deadline, the engine (which validates and
/// admits the request, all its choices or none), then the chunks collected into one response or streamed as the
/// API's events, and the outcome recorded for the request log. Errors name fields as the API does.
/// </summary>
internal sealed partial class GenerationRunner(IInferenceEngine engine, RequestDeadline deadline, Device.EnergyMonitor energy, ILogger<GenerationRunner> logger)
{
    public async Task<IResult> RunAsync<TStream>(HttpContext context, GenerationOutcome outcome, GenerationRequest request, IFieldNames names, IResponseShape<TStream> shape, bool stream)
        where TStream : class, IEventStream<TStream>
    {
        SelectModel(request.Model, outcome);
        var sse = stream ? TStream.Open(context.Response) : null;
        try
        {
            return await deadline.RunAsync(async ct =>
            {
                var session = await engine.StartAsync(request, ct);
                return sse is null ? await CollectAsync(session, request.Choices, shape, outcome, energy, ct) : await StreamAsync(sse, session, request.Choices, shape, outcome, energy, ct);
            }, context.RequestAborted);
        }
        catch (Exception e) when (sse is { Started: true } && e is not OperationCanceledException && !context.RequestAborted.IsCancellationRequested)
        {
            // Headers are gone; the error travels as a last event, as llama-server does. A deadline is no failure.
            if (e is not Polly.Timeout.TimeoutRejectedException)
            {
                LogStreamFailed(logger, e, request.Model);
            }

            await shape.WriteErrorAsync(sse, OpenAiException.From(e, names), CancellationToken.None);
            return Results.Empty;
        }
        catch (Exception e) when (e is InvalidGenerationParameterException or ContextLengthExceededException)
        {
            throw OpenAiException.From(e, names);
        }
        catch (Microsoft.AspNetCore.Connections.ConnectionAbortedException)
        {
            // Seen by a write before the request's abort token says so.
            outcome.ClientLeft = true;
            throw;
        }
    }

    /// <summary>
    /// Records the request's model for the request log when it exists. An unknown one is the engine's 404, after the
    /// request's fields are checked and before it takes a place in any queue.
    /// </summary>
    public void SelectModel(string model, GenerationOutcome outcome)
    {
        if (engine.FindModel(model) is { } known)
        {
            outcome.Model = known.Id;
        }
    }

    /// <summary>The sampling a request gets for the fields it leaves out: its model's settings, else the engine's defaults.</summary>
    public SamplingParameters DefaultSampling(string? model) =>
        model is { Length: > 0 } && engine.FindModel(model) is { } known ? known.Sampling : SamplingParameters.Default;

    private static async Task<IResult> CollectAsync<TStream>(IGenerationSession session, int choices, IResponseShape<TStream> shape, GenerationOutcome outcome, Device.EnergyMonitor energy, CancellationToken ct)
        where TStream : class, IEventStream<TStream>
    {
        // Its energy counts from its slot on, not while it waits in the queue.
        await session.Started.WaitAsync(ct);
        using var share = energy.Begin(outcome.Model ?? session.Model);
        var texts = Enumerable.Range(0, choices).Select(_ => new StringBuilder()).ToArray();
        var thoughts = Enumerable.Range(0, choices).Select(_ => new StringBuilder()).ToArray();
        var logprobs = new List<TokenLogprob>?[choices];
        var results = new ChoiceResult[choices];
        var finals = new GenerationChunk[choices];
        await foreach (var chunk in session.ReadAllAsync(ct))
        {
            share?.AddTokens(chunk.Tokens);
            var i = chunk.Choice;
            var before = chunk.CutOffToolCalls is null ? null : texts[i].ToString();
            texts[i].Append(chunk.Text);
            thoughts[i].Append(chunk.Reasoning);
            if (chunk.Logprobs is { } lp)
            {
                (logprobs[i] ??= []).AddRange(lp);
            }

            if (chunk.IsFinal)
            {
                finals[i] = chunk;
                results[i] = new ChoiceResult(texts[i].ToString(), chunk.FinishReason!.Value, logprobs[i], chunk.ToolCalls)
                {
                    Timings = chunk.Timings,
                    StopSequence = chunk.StopSequence,
                    Reasoning = thoughts[i].ToString(),
                    CutOffToolCalls = chunk.CutOffToolCalls is { } cut ? cut with { Content = before + cut.Content } : null,
                };
            }
        }

        var usage = Finish(finals, outcome, share);
        return shape.Complete(results, usage);
    }

    private static async Task<IResult> StreamAsync<TStream>(TStream sse, IGenerationSession session, int choices, IResponseShape<TStream> shape, GenerationOutcome outcome, Device.EnergyMonitor energy, CancellationToken ct)
        where TStream : class, IEventStream<TStream>
    {
        // Headers wait for a slot: a request that times out or is refused while queued still gets a plain error.
        await session.Started.WaitAsync(ct);
        using var share = energy.Begin(outcome.Model ?? session.Model);
        await sse.StartAsync(ct);
        await shape.WriteStartAsync(sse, choices, session.PromptTokens, ct);
        var finals = new GenerationChunk[choices];
        await foreach (var chunk in session.ReadAllAsync(ct))
        {
            share?.AddTokens(chunk.Tokens);
            await shape.WriteChunkAsync(sse, chunk, ct);
            if (chunk.IsFinal)
            {
                finals[chunk.Choice] = chunk;
            }
        }

        await shape.WriteEndAsync(sse, Finish(finals, outcome, share), ct);
        return Results.Empty;
    }

    /// <summary>
    /// Usage of the whole request (one prompt, several completions: the prompt counts once, generated tokens add up),
    /// recorded with the first choice's timings and finish, and the energy given to it when the box measures it.
    /// </summary>
    private static GenerationUsage Finish(GenerationChunk[] finals, GenerationOutcome outcome, Device.EnergyShare? share)
    {
        if (finals.Any(f => f.Usage is null))
        {
            throw new OperationCanceledException("The generation ended without a result.");
        }

        var usage = new GenerationUsage(finals[0].Usage!.PromptTokens, finals.Sum(f => f.Usage!.CompletionTokens), finals[0].Usage!.CachedPromptTokens)
        {
            ReasoningTokens = finals.Sum(f => f.Usage!.ReasoningTokens),
        };
        if (share?.End(usage.CompletionTokens) is { } joules)
        {
            usage = usage with { EnergyJoules = Math.Round(joules, 4) };
        }

        outcome.Record(usage, finals[0].Timings, finals[0].FinishReason);
        return usage;
    }

    [LoggerMessage(EventId = EventIds.StreamFailed, Level = LogLevel.Error, Message = "Streaming generation for {Model} failed after the response started")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, string model);
}
