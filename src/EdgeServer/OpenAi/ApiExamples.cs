using System.Text.Json.Nodes;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace EdgeServer.OpenAi;

/// <summary>Request examples for the Swagger UI, so "Try it out" sends something that works.</summary>
internal sealed class ApiExamples : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        var path = context.ApiDescription.RelativePath;
        var example = path switch
        {
            "v1/chat/completions" => """{"model":"Llama-3.2-1B-Instruct-Q4_K_M","messages":[{"role":"system","content":"Answer in one sentence."},{"role":"user","content":"What is a GGUF file?"}],"max_tokens":64,"temperature":0.2,"stream":false}""",
            "v1/completions" => """{"model":"Llama-3.2-1B-Instruct-Q4_K_M","prompt":"Once upon a time","max_tokens":32}""",
            _ => null,
        };
        if (example is not null && operation.RequestBody?.Content?.TryGetValue("application/json", out var media) == true && media is OpenApiMediaType json)
        {
            json.Example = JsonNode.Parse(example);
        }
    }
}
