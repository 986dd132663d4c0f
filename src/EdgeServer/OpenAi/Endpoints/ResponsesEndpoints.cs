using System.Text;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.OpenAi;

/// <summary>
/// POST /v1/responses for text input and output, whole or streamed as OpenAI's typed events. The request is
/// translated into a chat request, so the same validation, limits, templates and admission apply. EdgeServer
/// keeps no state: previous_response_id, conversations, background runs and tools are refused.
/// </summary>
public static partial class ResponsesEndpoints
{
    private static readonly JsonElement EmptyObject = JsonDocument.Parse("{}").RootElement.Clone();

    public static void MapResponses(this RouteGroupBuilder v1) =>
        v1.MapPost("/responses", CreateAsync)
            .Accepts<CreateResponseRequest>("application/json")
            .Produces<ResponseObject>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest);

    internal static async Task<IResult> CreateAsync(HttpContext context, IInferenceEngine engine, Admission admission, TimeProvider clock, IOptions<EdgeServerOptions> options, ILoggerFactory loggers)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CreateResponseRequest, context.RequestAborted);
        var request = ToGenerationRequest(body, options.Value.Limits);
        if (engine.FindModel(request.Model) is null)
        {
            throw new ModelNotFoundException(request.Model);
        }

        var outcome = context.Features.Get<EdgeServer.Telemetry.GenerationOutcome>();
        if (outcome is not null)
        {
            outcome.Model = request.Model;
        }

        var run = new ResponseRun(body, request.Model, clock, outcome);
        if (body.Stream != true)
        {
            return await admission.RunAsync(request.Model, async ct =>
            {
                var session = await StartAsync(engine, request, ct);
                var text = new StringBuilder();
                await foreach (var chunk in session.ReadAllAsync(ct))
                {
                    text.Append(chunk.Text);
                    if (chunk.IsFinal)
                    {
                        return OpenAiResults.Json(run.Finish(text.ToString(), chunk), OpenAiJsonContext.Web.ResponseObject);
                    }
                }

                throw new OperationCanceledException("The generation ended without a result.");
            }, context.RequestAborted);
        }

        var sse = new ServerSentEvents(context.Response);
        try
        {
            return await admission.RunAsync(request.Model, async ct =>
            {
                var session = await StartAsync(engine, request, ct);
                await sse.StartAsync(ct);
                await StreamAsync(sse, run, session, ct);
                return Results.Empty;
            }, context.RequestAborted);
        }
        catch (Exception e) when (sse.Started && e is not OperationCanceledException && !context.RequestAborted.IsCancellationRequested)
        {
            var error = OpenAiException.From(e);
            LogStreamFailed(loggers.CreateLogger("EdgeServer.OpenAi"), e, request.Model);
            await sse.WriteAsync("error", new ResponseErrorEvent("error", run.Next(), error.Code, error.Message, error.Param), OpenAiJsonContext.Web.ResponseErrorEvent, CancellationToken.None);
            return Results.Empty;
        }
    }

    private static async Task StreamAsync(ServerSentEvents sse, ResponseRun run, IGenerationSession session, CancellationToken ct)
    {
        var web = OpenAiJsonContext.Web;
        await sse.WriteAsync("response.created", new ResponseLifecycleEvent("response.created", run.Next(), run.InProgress()), web.ResponseLifecycleEvent, ct);
        await sse.WriteAsync("response.in_progress", new ResponseLifecycleEvent("response.in_progress", run.Next(), run.InProgress()), web.ResponseLifecycleEvent, ct);
        var empty = run.Message(string.Empty, "in_progress");
        await sse.WriteAsync("response.output_item.added", new ResponseOutputItemEvent("response.output_item.added", run.Next(), 0, empty with { Content = [] }), web.ResponseOutputItemEvent, ct);
        await sse.WriteAsync("response.content_part.added", new ResponseContentPartEvent("response.content_part.added", run.Next(), run.MessageId, 0, 0, empty.Content[0]), web.ResponseContentPartEvent, ct);
        var text = new StringBuilder();
        await foreach (var chunk in session.ReadAllAsync(ct))
        {
            if (chunk.Text.Length > 0)
            {
                text.Append(chunk.Text);
                await sse.WriteAsync("response.output_text.delta", new ResponseTextDeltaEvent("response.output_text.delta", run.Next(), run.MessageId, 0, 0, chunk.Text, []), web.ResponseTextDeltaEvent, ct);
            }

            if (chunk.IsFinal)
            {
                var final = run.Finish(text.ToString(), chunk);
                var message = final.Output[0];
                await sse.WriteAsync("response.output_text.done", new ResponseTextDoneEvent("response.output_text.done", run.Next(), run.MessageId, 0, 0, text.ToString(), []), web.ResponseTextDoneEvent, ct);
                await sse.WriteAsync("response.content_part.done", new ResponseContentPartEvent("response.content_part.done", run.Next(), run.MessageId, 0, 0, message.Content[0]), web.ResponseContentPartEvent, ct);
                await sse.WriteAsync("response.output_item.done", new ResponseOutputItemEvent("response.output_item.done", run.Next(), 0, message), web.ResponseOutputItemEvent, ct);
                var type = final.Status == "completed" ? "response.completed" : "response.incomplete";
                await sse.WriteAsync(type, new ResponseLifecycleEvent(type, run.Next(), final), web.ResponseLifecycleEvent, ct);
                return;
            }
        }
    }

    /// <summary>The Responses request as a chat request, so RequestMapper applies every check and limit.</summary>
    private static GenerationRequest ToGenerationRequest(CreateResponseRequest body, LimitsOptions limits)
    {
        RequestMapper.RejectUnrecognized(body.Unrecognized, string.Empty);
        RequestMapper.RejectSet(
            ("tools", body.Tools is { ValueKind: JsonValueKind.Array } t && t.GetArrayLength() == 0 ? null : body.Tools, "tools are served by /v1/chat/completions; /v1/responses is text in, text out."),
            ("previous_response_id", body.PreviousResponseId, "EdgeServer stores no responses; send the whole conversation in 'input'."),
            ("conversation", body.Conversation, "EdgeServer stores no conversations; send the whole conversation in 'input'."),
            ("background", body.Background is { ValueKind: JsonValueKind.False } ? null : body.Background, "background runs are not supported."),
            ("reasoning", body.Reasoning, "the models it serves have no reasoning settings."),
            ("include", body.Include is { ValueKind: JsonValueKind.Array } i && i.GetArrayLength() == 0 ? null : body.Include, "no extra output items are available."),
            ("prompt", body.Prompt, "stored prompt templates are not supported."),
            ("max_tool_calls", body.MaxToolCalls, "tools are not supported here."),
            ("top_logprobs", body.TopLogprobs, "log probabilities are served by /v1/chat/completions."),
            ("context_management", body.ContextManagement, "context management is not supported."),
            ("moderation", body.Moderation, "EdgeServer has no moderation model."));

        if (body.ToolChoice is { ValueKind: not JsonValueKind.Null } choice && !(choice.ValueKind == JsonValueKind.String && choice.GetString() is "none" or "auto"))
        {
            throw RequestMapper.Unsupported("tool_choice", "tools are served by /v1/chat/completions; /v1/responses is text in, text out.");
        }

        if (body.Truncation is not (null or "disabled"))
        {
            throw OpenAiException.InvalidRequest($"Invalid value for 'truncation': '{body.Truncation}'. EdgeServer does not drop input; only 'disabled' is supported.", "truncation", "unsupported_value");
        }

        var messages = new List<ChatMessageDto?>();
        if (!string.IsNullOrEmpty(body.Instructions))
        {
            messages.Add(new ChatMessageDto { Role = "system", Content = JsonSerializer.SerializeToElement(body.Instructions, OpenAiJsonContext.Web.String) });
        }

        messages.AddRange(ReadInput(body.Input));
        var chat = new ChatCompletionRequest
        {
            Model = body.Model,
            Messages = messages,
            MaxCompletionTokens = body.MaxOutputTokens,
            Temperature = body.Temperature,
            TopP = body.TopP,
            ResponseFormat = ReadFormat(body.Text),
        };

        try
        {
            return RequestMapper.FromChat(chat, limits);
        }
        catch (OpenAiException e) when (e.Param is not null)
        {
            throw Renamed(e);
        }
    }

    /// <summary>Starts the generation; an error about a chat field names the field as this API calls it.</summary>
    private static async Task<IGenerationSession> StartAsync(IInferenceEngine engine, GenerationRequest request, CancellationToken ct)
    {
        try
        {
            return await engine.StartAsync(request, ct);
        }
        catch (InvalidGenerationParameterException e)
        {
            throw Renamed(OpenAiException.From(e));
        }
    }

    private static OpenAiException Renamed(OpenAiException e)
    {
        var param = e.Param!;
        var renamed = param.Replace("max_completion_tokens", "max_output_tokens", StringComparison.Ordinal)
            .Replace("response_format.json_schema.", "text.format.", StringComparison.Ordinal)
            .Replace("response_format", "text.format", StringComparison.Ordinal)
            .Replace("messages", "input", StringComparison.Ordinal);
        return new OpenAiException(e.Status, e.Message.Replace(param, renamed, StringComparison.Ordinal), e.Type, renamed, e.Code);
    }

    private static List<ChatMessageDto?> ReadInput(JsonElement? input)
    {
        if (input is not { } value || value.ValueKind == JsonValueKind.Null)
        {
            throw OpenAiException.MissingParameter("input");
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return [new ChatMessageDto { Role = "user", Content = value }];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw OpenAiException.InvalidType("input", "a string or an array of messages");
        }

        var messages = new List<ChatMessageDto?>();
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            var at = $"input[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw OpenAiException.InvalidType(at, "a message object");
            }

            var type = item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : "message";
            if (type != "message")
            {
                throw OpenAiException.InvalidRequest($"Invalid item type '{type}' in '{at}': EdgeServer's /v1/responses takes messages only.", at + ".type", "unsupported_value");
            }

            var role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : throw OpenAiException.MissingParameter(at + ".role");
            if (!item.TryGetProperty("content", out var content))
            {
                throw OpenAiException.MissingParameter(at + ".content");
            }

            messages.Add(new ChatMessageDto { Role = role, Content = content.ValueKind == JsonValueKind.Array ? TextParts(content, at + ".content") : content });
        }

        return messages;
    }

    /// <summary>input_text and output_text parts become the chat API's text parts; anything else is refused.</summary>
    private static JsonElement TextParts(JsonElement parts, string at)
    {
        var text = new StringBuilder();
        var i = 0;
        foreach (var part in parts.EnumerateArray())
        {
            var p = $"{at}[{i++}]";
            var type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type is not ("input_text" or "output_text"))
            {
                throw OpenAiException.InvalidRequest($"Invalid content part type '{type}' in '{p}': EdgeServer serves text models, so only 'input_text' and 'output_text' parts are accepted.", p + ".type", "invalid_value");
            }

            if (!part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.MissingParameter(p + ".text");
            }

            text.Append(RequestMapper.Text(value, p + ".text"));
        }

        return JsonSerializer.SerializeToElement(text.ToString(), OpenAiJsonContext.Web.String);
    }

    private static ResponseFormatDto? ReadFormat(ResponseTextParamDto? text)
    {
        if (text?.Format is not { } format)
        {
            return null;
        }

        RequestMapper.RejectUnrecognized(text.Unrecognized, "text.");
        RequestMapper.RejectUnrecognized(format.Unrecognized, "text.format.");
        return new ResponseFormatDto { Type = format.Type, JsonSchema = format.Type == "json_schema" ? format : null };
    }

    /// <summary>One response's identity, settings and event numbering.</summary>
    private sealed class ResponseRun(CreateResponseRequest body, string model, TimeProvider clock, EdgeServer.Telemetry.GenerationOutcome? outcome)
    {
        private readonly long _created = clock.GetUtcNow().ToUnixTimeSeconds();
        private int _sequence;

        public string Id { get; } = "resp_" + Guid.NewGuid().ToString("N");

        public string MessageId { get; } = "msg_" + Guid.NewGuid().ToString("N");

        public int Next() => _sequence++;

        public ResponseOutputMessage Message(string text, string status) =>
            new("message", MessageId, status, "assistant", [new OutputTextPart("output_text", text, [], [])]);

        public ResponseObject InProgress() => Build("in_progress", [], null, null, null);

        public ResponseObject Finish(string text, GenerationChunk final)
        {
            var complete = final.FinishReason != FinishReason.Length;
            var u = final.Usage!;
            if (outcome is not null)
            {
                (outcome.Usage, outcome.Timings, outcome.FinishReason) = (u, final.Timings, final.FinishReason);
            }

            var usage = new ResponseUsageDto(u.PromptTokens, new InputTokensDetailsDto(u.CachedPromptTokens, u.PromptTokens - u.CachedPromptTokens), u.CompletionTokens, new OutputTokensDetailsDto(0), u.TotalTokens);
            return Build(
                complete ? "completed" : "incomplete",
                [Message(text, complete ? "completed" : "incomplete")],
                usage,
                complete ? null : new IncompleteDetailsDto("max_output_tokens"),
                complete ? clock.GetUtcNow().ToUnixTimeSeconds() : null);
        }

        private ResponseObject Build(string status, IReadOnlyList<ResponseOutputMessage> output, ResponseUsageDto? usage, IncompleteDetailsDto? incomplete, long? completedAt) => new(
            Id, "response", _created, status, completedAt, null, incomplete, body.Instructions, body.MaxOutputTokens, model, output,
            body.ParallelToolCalls ?? false, null, false, body.Temperature ?? SamplingParameters.Default.Temperature, body.TopP ?? SamplingParameters.Default.TopP,
            new ResponseTextConfigDto(new ResponseTextFormatOut(body.Text?.Format?.Type ?? "text")), "auto", [], "disabled", usage,
            body.Metadata is { ValueKind: JsonValueKind.Object } metadata ? metadata : EmptyObject);
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Error, Message = "Streaming response for {Model} failed after the response started")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, string model);
}
