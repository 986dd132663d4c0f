using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.Security;
using EdgeServer.Telemetry;

namespace EdgeServer.OpenAi;

/// <summary>
/// /v1/responses: POST creates a response (text and function calls, whole or streamed as OpenAI's typed events),
/// GET and DELETE read and remove a stored one. The request maps straight to a generation
/// (<see cref="ResponsesMapper"/>) and runs as every generation does (<see cref="GenerationRunner"/>); a finished
/// response is kept in the bounded <see cref="ResponseStore"/> unless <c>store</c> is false, so a later request can
/// continue it by <c>previous_response_id</c>. Conversations and background runs are refused.
/// </summary>
public static class ResponsesEndpoints
{
    public static void MapResponses(this RouteGroupBuilder v1)
    {
        v1.MapPost("/responses", CreateAsync)
            .Accepts<CreateResponseRequest>("application/json")
            .Produces<ResponseObject>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest)
            .Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        v1.MapGet("/responses/{id}", Get)
            .Produces<ResponseObject>()
            .Produces<ErrorResponse>(StatusCodes.Status404NotFound);
        v1.MapDelete("/responses/{id}", Delete)
            .Produces<DeletedResponseDto>()
            .Produces<ErrorResponse>(StatusCodes.Status404NotFound);
    }

    internal static async Task<IResult> CreateAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, TimeProvider clock, ResponseStore store)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CreateResponseRequest, context.RequestAborted);
        var owner = ApiKeyAuthenticationHandler.KeyOf(context.User);
        var mapped = ResponsesMapper.FromResponses(body, runner.DefaultSampling(body.Model), id => store.Find(id, owner)?.Conversation);
        Action<ResponseObject, ChatMessage>? keep = null;
        if (body.Store != false)
        {
            keep = (response, turn) => store.Add(new StoredResponse(
                response.Id, owner, [.. mapped.Conversation, turn], JsonSerializer.SerializeToUtf8Bytes(response, OpenAiJsonContext.Web.ResponseObject), clock.GetUtcNow()));
        }

        var shape = new ResponsesShape(body, mapped, mapped.Request.Sampling, clock, keep);
        return await runner.RunAsync(context, outcome, mapped.Request, mapped.Names, shape, body.Stream == true);
    }

    internal static IResult Get(string id, HttpContext context, ResponseStore store) =>
        store.Find(id, ApiKeyAuthenticationHandler.KeyOf(context.User)) is { } stored
            ? Results.Bytes(stored.Body, "application/json")
            : throw NotFound(id);

    internal static IResult Delete(string id, HttpContext context, ResponseStore store) =>
        store.Delete(id, ApiKeyAuthenticationHandler.KeyOf(context.User))
            ? OpenAiResults.Json(new DeletedResponseDto(id, "response", true), OpenAiJsonContext.Web.DeletedResponseDto)
            : throw NotFound(id);

    private static OpenAiException NotFound(string id) =>
        new(StatusCodes.Status404NotFound, $"Response with id '{id}' not found.", "invalid_request_error", null, null);
}
