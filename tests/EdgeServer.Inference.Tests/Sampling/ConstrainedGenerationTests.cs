using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>An engine with room for a whole JSON object in each slot.</summary>
public sealed class ConstrainedEngineFixture : IDisposable
{
    public const string Model = "successor";

    public ConstrainedEngineFixture()
    {
        TestRuntime.Ensure();
        Engine = new InferenceEngine(
            new EngineOptions
            {
                Models = [new ModelSource(Model, SuccessorModel.SharedPath)],
                Scheduler = new() { Slots = 2, ContextPerSlot = 1024, BatchSize = 64, Threads = 2, QueueCapacity = 8 },
            },
            NullLoggerFactory.Instance);
    }

    public InferenceEngine Engine { get; }

    public void Dispose() => Engine.Dispose();
}

/// <summary>
/// Generation on the real model under schemas with ranges, multiples, patterns and formats. The successor model
/// would write the alphabet; with sampling, the grammar is all that keeps each value in bounds, so every draw of
/// every seed shows the constraint enforced, not merely requested.
/// </summary>
public class ConstrainedGenerationTests(ConstrainedEngineFixture fixture, ITestOutputHelper output) : IClassFixture<ConstrainedEngineFixture>
{
    private const string Schema = """
        {"type":"object","properties":{
          "count":{"type":"integer","minimum":-5,"maximum":37},
          "big":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991},
          "positive":{"type":"integer","exclusiveMinimum":0},
          "ratio":{"type":"number","exclusiveMinimum":0,"maximum":1.5},
          "step":{"type":"integer","multipleOf":5,"minimum":0,"maximum":100},
          "price":{"type":"number","multipleOf":0.01,"minimum":0,"exclusiveMaximum":10},
          "code":{"type":"string","pattern":"^[A-C]{2}-\\d{3}$"},
          "ip":{"type":"string","format":"ipv4"},
          "day":{"type":"string","format":"date"}
        },"required":["count","big","positive","ratio","step","price","code","ip","day"],"additionalProperties":false}
        """;

    [Theory]
    [InlineData(0f, 1)] // greedy: one draw is every draw
    [InlineData(0.8f, 3)]
    [InlineData(1.5f, 4)]
    public async Task EverySampledValueKeepsItsBounds(float temperature, int seeds)
    {
        for (uint seed = 1; seed <= seeds; seed++)
        {
            var request = new GenerationRequest
            {
                Model = ConstrainedEngineFixture.Model,
                Messages = [new ChatMessage("user", "give json")],
                Sampling = new SamplingParameters { Temperature = temperature, TopK = 0, TopP = 1, MinP = 0, Seed = seed },
                MaxTokens = 400,
                ResponseFormat = new ResponseFormat(ResponseFormatKind.JsonSchema, Schema),
            };
            var (text, final) = await Run(request);
            output.WriteLine(text);
            Assert.True(final.FinishReason == FinishReason.Stop, $"seed {seed}: {final.FinishReason} after {text}");

            using var doc = JsonDocument.Parse(text);
            var root = doc.RootElement;
            Assert.InRange(root.GetProperty("count").GetInt64(), -5, 37);
            Assert.InRange(root.GetProperty("big").GetInt64(), -9007199254740991, 9007199254740991);
            Assert.InRange(root.GetProperty("positive").GetInt64(), 1, long.MaxValue);
            var ratio = Decimal(root.GetProperty("ratio"));
            Assert.True(ratio is > 0 and <= 1.5m, $"ratio {ratio}");
            var step = root.GetProperty("step").GetInt64();
            Assert.True(step is >= 0 and <= 100 && step % 5 == 0, $"step {step}");
            var price = Decimal(root.GetProperty("price"));
            Assert.True(price is >= 0 and < 10 && price * 100 == decimal.Truncate(price * 100), $"price {price}");
            Assert.Matches(@"^[A-C]{2}-[0-9]{3}$", root.GetProperty("code").GetString());
            Assert.Matches(@"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$", root.GetProperty("ip").GetString());
            Assert.Matches(@"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", root.GetProperty("day").GetString());
        }
    }

    [Theory]
    [InlineData("""{"type":"integer","minimum":3,"maximum":5}""", "3|4|5")]
    [InlineData("""{"type":"integer","exclusiveMinimum":7,"exclusiveMaximum":9}""", "8")]
    [InlineData("""{"type":"string","pattern":"^(yes|no)$"}""", "\"yes\"|\"no\"")]
    public async Task AValueWithFewChoicesIsOneOfThem(string schema, string choices)
    {
        // The model would count on from the prompt's last digit (0123456789); only these values are allowed.
        for (uint seed = 1; seed <= 4; seed++)
        {
            var (text, final) = await Run(new GenerationRequest
            {
                Model = ConstrainedEngineFixture.Model,
                Prompt = "count 0",
                Sampling = new SamplingParameters { Temperature = seed == 1 ? 0 : 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = seed },
                MaxTokens = 20,
                ResponseFormat = new ResponseFormat(ResponseFormatKind.JsonSchema, schema),
            });
            Assert.Equal(FinishReason.Stop, final.FinishReason);
            Assert.Contains(text.TrimEnd(), choices.Split('|'));
        }
    }

    private static decimal Decimal(JsonElement value) => decimal.Parse(value.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture);

    private async Task<(string Text, GenerationChunk Final)> Run(GenerationRequest request)
    {
        var session = await fixture.Engine.StartAsync(request, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
            if (chunk.IsFinal)
            {
                return (text.ToString(), chunk);
            }
        }

        throw new InvalidOperationException("No final chunk.");
    }
}
