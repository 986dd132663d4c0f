using System.ClientModel;
using System.Net;
using System.Text.Json;
using EdgeServer.TestSupport;
using OpenAI;
using OpenAI.Embeddings;

namespace EdgeServer.Tests.OpenAi;

/// <summary>/v1/embeddings through the official SDK (mean pooling over the decoder model), and /tokenize, /detokenize.</summary>
[Collection(ServerGroup.Name)]
public class EmbeddingAndTokenizerTests(ServerFixture server)
{
    private EmbeddingClient Embeddings() => new(ServerFixture.Model, new ApiKeyCredential("no-key-needed"),
        new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) });

    [Fact]
    public async Task EmbeddingsAreNormalisedVectorsThatDependOnTheText()
    {
        ClientResult<OpenAIEmbeddingCollection> result = await Embeddings().GenerateEmbeddingsAsync(["hello world", "hello world", "zebra"]);
        var vectors = result.Value.Select(e => e.ToFloats().ToArray()).ToList();

        Assert.Equal(3, vectors.Count);
        Assert.All(vectors, v =>
        {
            Assert.Equal(SuccessorModel.Shape.EmbeddingLength, v.Length);
            Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 3);
        });
        Assert.Equal(vectors[0], vectors[1]);
        Assert.True(Cosine(vectors[0], vectors[2]) < 0.999, "different texts, different vectors");
        Assert.Equal([0, 1, 2], result.Value.Select(e => e.Index));
        Assert.True(result.Value.Usage.InputTokenCount > 0);
    }

    [Fact]
    public async Task FloatAndBase64AgreeAndMatchTheSpec()
    {
        var floats = await server.PostOkAsync("/v1/embeddings", """{"model":"successor","input":"abc","encoding_format":"float"}""");
        var base64 = await server.PostOkAsync("/v1/embeddings", """{"model":"successor","input":["abc"],"encoding_format":"base64"}""");
        server.AssertMatchesSchema("CreateEmbeddingResponse", floats);

        // The spec types the vector as numbers only; base64 is what OpenAI (and its SDKs) send and expect for
        // encoding_format "base64". Everything else about the body is checked against the spec.
        var vectorless = JsonDocument.Parse(base64).RootElement.GetRawText().Replace(
            JsonDocument.Parse(base64).RootElement.GetProperty("data")[0].GetProperty("embedding").GetRawText(), "[0.5]", StringComparison.Ordinal);
        server.AssertMatchesSchema("CreateEmbeddingResponse", vectorless);

        var f = JsonDocument.Parse(floats).RootElement.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray();
        var bytes = Convert.FromBase64String(JsonDocument.Parse(base64).RootElement.GetProperty("data")[0].GetProperty("embedding").GetString()!);
        Assert.Equal(f, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray());
    }

    [Fact]
    public async Task TokenIdsCanBeEmbeddedAndWrongRequestsAreRefused()
    {
        var ids = JsonDocument.Parse(await server.PostOkAsync("/tokenize", """{"model":"successor","content":"abc","add_special":true}""")).RootElement.GetProperty("tokens").GetRawText();
        var byIds = await server.PostOkAsync("/v1/embeddings", $$"""{"model":"successor","input":{{ids}}}""");
        var byText = await server.PostOkAsync("/v1/embeddings", """{"model":"successor","input":"abc"}""");
        Assert.Equal(
            JsonDocument.Parse(byText).RootElement.GetProperty("data")[0].GetProperty("embedding").GetRawText(),
            JsonDocument.Parse(byIds).RootElement.GetProperty("data")[0].GetProperty("embedding").GetRawText());

        await AssertError("""{"model":"successor","input":"abc","dimensions":8}""", "dimensions");
        await AssertError("""{"model":"successor","input":""}""", "input");
        await AssertError("""{"model":"successor","input":[999999]}""", "input");
        await AssertError("""{"model":"successor","input":"a","encoding_format":"int8"}""", "encoding_format");
        await AssertError("""{"model":"successor","input":"a","pooling":"max"}""", "pooling");
    }

    [Fact]
    public async Task TokenizeAndDetokenizeRoundTrip()
    {
        var tokens = JsonDocument.Parse(await server.PostOkAsync("/tokenize", """{"model":"successor","content":"hello é"}""")).RootElement.GetProperty("tokens");
        Assert.All(tokens.EnumerateArray(), t => Assert.Equal(JsonValueKind.Number, t.ValueKind));
        var text = JsonDocument.Parse(await server.PostOkAsync("/detokenize", $$"""{"model":"successor","tokens":{{tokens.GetRawText()}}}""")).RootElement.GetProperty("content").GetString();
        Assert.Equal("hello é", text!.TrimStart());

        var pieces = JsonDocument.Parse(await server.PostOkAsync("/tokenize", """{"model":"successor","content":"ab","with_pieces":true}""")).RootElement.GetProperty("tokens");
        Assert.Equal(["▁a".Replace('▁', ' '), "b"], pieces.EnumerateArray().Select(p => p.GetProperty("piece").GetString()));
        Assert.Equal(SuccessorModel.Vocabulary["b"], pieces[1].GetProperty("id").GetInt32());

        using var several = await server.PostAsync("/tokenize", """{"content":"x"}""");
        Assert.Equal(HttpStatusCode.BadRequest, several.StatusCode);
        Assert.Contains("'model' is required", await several.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var bad = await server.PostAsync("/detokenize", """{"model":"successor","tokens":[-1]}""");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    private async Task AssertError(string body, string param)
    {
        using var response = await server.PostAsync("/v1/embeddings", body);
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, json);
        server.AssertMatchesSchema("ErrorResponse", json);
        Assert.Equal(param, JsonDocument.Parse(json).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    private static double Cosine(float[] a, float[] b) => a.Zip(b).Sum(p => (double)p.First * p.Second);
}
