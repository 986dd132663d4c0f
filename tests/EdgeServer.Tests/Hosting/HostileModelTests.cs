using System.Net;
using System.Text.Json;

namespace EdgeServer.Tests.Hosting;

/// <summary>
/// Hostile model files in the models folder: each is listed unavailable with a reason that names the file but
/// not its folder, a request for it gets 503, and the server keeps serving the good models. Two of them make
/// llama.cpp abort; the probe child dies in the server's place.
/// </summary>
[Collection(ServerGroup.Name)]
public class HostileModelTests(ServerFixture server)
{
    public static TheoryData<string, string> Reasons => new()
    {
        { "hostile-layers", "llama.block_count is 4000000000" },
        { "hostile-shape", "wrong shape" },
        { "hostile-vocab", "GGML_ASSERT(id_to_token.size() == token_to_id.size()) failed" },
        { "hostile-bytes", "std::out_of_range" },
    };

    [Theory]
    [MemberData(nameof(Reasons))]
    public async Task AHostileModelIsListedUnavailableWithItsReason(string id, string reason)
    {
        using var response = await server.Http.GetAsync($"/v1/models/{id}");
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var details = JsonDocument.Parse(body).RootElement.GetProperty("details");
        Assert.Equal("unavailable", details.GetProperty("status").GetString());
        var error = details.GetProperty("error").GetString()!;
        Assert.Contains(reason, error, StringComparison.Ordinal);
        Assert.Contains(id + ".gguf", error, StringComparison.Ordinal);
        Assert.DoesNotContain(server.ModelsDirectory, error, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Reasons))]
    public async Task ARequestForAHostileModelGets503AndTheServerKeepsServing(string id, string reason)
    {
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions" })
        {
            var body = path.EndsWith("chat/completions", StringComparison.Ordinal)
                ? $$"""{"model":"{{id}}","messages":[{"role":"user","content":"€ hi"}]}"""
                : $$"""{"model":"{{id}}","prompt":"€ hi"}""";
            using var response = await server.PostAsync(path, body);
            var text = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.Equal("model_unavailable", error.GetProperty("code").GetString());
            Assert.Contains(reason, error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.DoesNotContain(server.ModelsDirectory, text, StringComparison.Ordinal);
        }

        var good = await server.PostOkAsync("/v1/completions", """{"model":"successor","prompt":"w","temperature":0}""");
        Assert.Equal("xyzé€", JsonDocument.Parse(good).RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public void TheLogNamesTheFullPathOfEachHostileModel()
    {
        foreach (var id in ServerFixture.Hostile.Keys)
        {
            var full = Path.Combine(server.ModelsDirectory, id + ".gguf");
            Assert.Contains(server.Logs.Entries, e => e.Message.Contains(full, StringComparison.Ordinal) && e.Message.Contains(id, StringComparison.Ordinal));
        }
    }
}
