using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.OpenAi;
using EdgeServer.Telemetry;

namespace EdgeServer.Anthropic;

/// <summary>
/// Anthropic's Messages API under /v1/messages, for the Anthropic SDKs and the coding agents built on them: thin
/// mappings onto the same engine, runner, admission, keys and request log as the OpenAI routes.
/// </summary>
public static class AnthropicEndpoints
{
    public static RouteGroupBuilder MapAnthropicApi(this IEndpointRouteBuilder app)
    {
        var messages = app.MapGroup("/v1/messages").WithTags("Anthropic");
        messages.MapPost("", MessagesAsync).Produces<AnthropicMessageResponse>();
        messages.MapPost("/count_tokens", CountTokensAsync).Produces<AnthropicCountTokensResponse>();
        return messages;
    }

    internal static async Task<IResult> MessagesAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, AnthropicJsonContext.Web.AnthropicMessagesRequest, context.RequestAborted);
        var (request, names) = AnthropicMapper.FromMessages(body, runner.DefaultSampling(body.Model));
        return await runner.RunAsync(context, outcome, request, names, new AnthropicShape(body.Model!), body.Stream == true);
    }

    /// <summary>The prompt's tokens as the model's chat template renders the request (system, messages, tools).</summary>
    internal static async Task<IResult> CountTokensAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, IInferenceEngine engine, RequestDeadline deadline)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, AnthropicJsonContext.Web.AnthropicMessagesRequest, context.RequestAborted);
        var (request, names) = AnthropicMapper.FromMessages(body, runner.DefaultSampling(body.Model), countOnly: true);
        runner.SelectModel(request.Model, outcome);
        try
        {
            var count = await deadline.RunAsync(ct => new ValueTask<int>(engine.CountPromptTokensAsync(request, ct)), context.RequestAborted);
            return AnthropicResults.Json(new AnthropicCountTokensResponse(count), AnthropicJsonContext.Web.AnthropicCountTokensResponse);
        }
        catch (Exception e) when (e is InvalidGenerationParameterException or ContextLengthExceededException)
        {
            throw OpenAiException.From(e, names);
        }
    }
}
