using EdgeServer.Telemetry;

namespace EdgeServer.OpenAi;

/// <summary>
/// POST /v1/responses for text input and output, whole or streamed as OpenAI's typed events. The request maps
/// straight to a generation (<see cref="ResponsesMapper"/>) and runs as every generation does
/// (<see cref="GenerationRunner"/>). EdgeServer keeps no state: previous_response_id, conversations, background runs
/// and tools are refused.
/// </summary>
public static class ResponsesEndpoints
{
    public static void MapResponses(this RouteGroupBuilder v1) =>
        v1.MapPost("/responses", CreateAsync)
            .Accepts<CreateResponseRequest>("application/json")
            .Produces<ResponseObject>()
            .Produces<ErrorResponse>(StatusCodes.Status400BadRequest);

    internal static async Task<IResult> CreateAsync(HttpContext context, GenerationRunner runner, GenerationOutcome outcome, TimeProvider clock)
    {
        var body = await OpenAiResults.ReadBodyAsync(context.Request, OpenAiJsonContext.Web.CreateResponseRequest, context.RequestAborted);
        var (request, names) = ResponsesMapper.FromResponses(body, runner.DefaultSampling(body.Model));
        return await runner.RunAsync(context, outcome, request, names, new ResponsesShape(body, request.Model, request.Sampling, clock), body.Stream == true);
    }
}
