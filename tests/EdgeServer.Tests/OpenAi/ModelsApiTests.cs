using Microsoft.Extensions.DependencyInjection;
using EdgeServer.Inference;
using System.Net;
using System.Text;
using System.Text.Json;

namespace EdgeServer.Tests.OpenAi;

/// <summary>A server of its own, so that unloading its models disturbs no other test.</summary>
public sealed class PoolServerFixture : ServerFixture;

/// <summary>A budget no model fits.</summary>
public sealed class TinyBudgetServerFixture : ServerFixture
{
    protected override IEnumerable<string> ExtraArguments(string scratch) => ["--EdgeServer:Memory:Budget=64kb"];
}

/// <summary>/v1/models with state and memory, loading and unloading on request, keep_alive, and a model that can never fit.</summary>
public class ModelsApiTests(PoolServerFixture server) : IClassFixture<PoolServerFixture>
{
    private const string Chat = """{"model":"successor","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":3}""";

    private async Task<JsonElement> Model(string id = ServerFixture.Model)
    {
        using var response = await server.Http.GetAsync($"/v1/models/{id}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        server.AssertMatchesSchema("Model", text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static string Status(JsonElement model) => model.GetProperty("details").GetProperty("status").GetString()!;

    private async Task<JsonElement> Post(string path, HttpStatusCode expected)
    {
        using var response = await server.Http.PostAsync(path, new StringContent(string.Empty, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(expected == response.StatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Fact]
    public async Task TheListShowsTheBudgetAndEachModelsMemory()
    {
        using var response = await server.Http.GetAsync("/v1/models");
        var text = await response.Content.ReadAsStringAsync();
        server.AssertMatchesSchema("ListModelsResponse", text);
        var list = JsonDocument.Parse(text).RootElement;
        Assert.True(list.GetProperty("memory").GetProperty("budget_bytes").GetInt64() > 0);
        var successor = list.GetProperty("data").EnumerateArray().Single(m => m.GetProperty("id").GetString() == ServerFixture.Model);
        Assert.True(successor.GetProperty("details").GetProperty("memory_bytes").GetInt64() > 0);
    }

    [Fact]
    public async Task AModelLoadsAndUnloadsOnRequestAndLoadsAgainForTheNextRequest()
    {
        var loaded = await Post("/v1/models/successor/load", HttpStatusCode.OK);
        Assert.Equal("loaded", Status(loaded));
        var unloaded = await Post("/v1/models/successor/unload", HttpStatusCode.OK);
        Assert.Equal("available", Status(unloaded));
        Assert.Equal("abc", JsonDocument.Parse(await server.PostOkAsync("/v1/chat/completions", Chat)).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("loaded", Status(await Model()));
    }

    [Fact]
    public async Task UnloadingABusyModelWithoutWaitingIs409AndItsStreamFinishes()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"model":"successor","prompt":"1","ignore_eos":true,"max_tokens":300,"temperature":0,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var stream = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync(), StringComparison.Ordinal);

        // Held once the first token is out, so that a fast box cannot finish the 300 tokens before the unload.
        var scheduler = ((InferenceEngine)server.App.Services.GetRequiredService<IInferenceEngine>()).GetLoadedScheduler(ServerFixture.Model)!;
        using var gate = new ManualResetEventSlim();
        scheduler.LoopHook = () => gate.Wait();
        try
        {
            var busy = await Post("/v1/models/successor/unload?wait=false", HttpStatusCode.Conflict);
            Assert.Equal("model_busy", busy.GetProperty("error").GetProperty("code").GetString());
        }
        finally
        {
            scheduler.LoopHook = null;
            gate.Set();
        }

        var rest = await reader.ReadToEndAsync();
        Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);
        Assert.DoesNotContain("\"error\"", rest, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/v1/models/nope/load", HttpStatusCode.NotFound, "model_not_found")]
    [InlineData("/v1/models/successor/explode", HttpStatusCode.NotFound, "unknown_url")]
    [InlineData("/v1/models/successor/unload?wait=maybe", HttpStatusCode.BadRequest, "invalid_value")]
    [InlineData("/v1/models/truncated/load", HttpStatusCode.ServiceUnavailable, "model_unavailable")]
    public async Task BadModelActionsGetOpenAiErrors(string path, HttpStatusCode status, string code)
    {
        var error = await Post(path, status);
        server.AssertMatchesSchema("ErrorResponse", error.GetRawText());
        Assert.Equal(code, error.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task KeepAliveZeroUnloadsTheModelRightAfterTheRequest()
    {
        await server.PostOkAsync("/v1/chat/completions", Chat.Replace("\"max_tokens\":3", "\"max_tokens\":3,\"keep_alive\":0", StringComparison.Ordinal));
        for (var i = 0; i < 250 && Status(await Model()) != "available"; i++)
        {
            await Task.Delay(20);
        }

        Assert.Equal("available", Status(await Model()));

        // The next request without keep_alive keeps the model's own setting: 0 until another request changes it.
        await server.PostOkAsync("/v1/chat/completions", Chat.Replace("\"max_tokens\":3", "\"max_tokens\":3,\"keep_alive\":\"5m\"", StringComparison.Ordinal));
        Assert.Equal("loaded", Status(await Model()));
        Assert.True((await Model()).GetProperty("details").GetProperty("expires_at").GetInt64() > DateTimeOffset.UtcNow.ToUnixTimeSeconds());
    }

    [Theory]
    [InlineData("\"soon\"")]
    [InlineData("true")]
    [InlineData("{}")]
    [InlineData("\"5x\"")]
    public async Task AnUnreadableKeepAliveIsA400(string value)
    {
        using var response = await server.PostAsync("/v1/chat/completions", Chat.Replace("\"max_tokens\":3", $"\"max_tokens\":3,\"keep_alive\":{value}", StringComparison.Ordinal));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("keep_alive", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
    }
}

/// <summary>A server of its own whose models folder a test changes.</summary>
public sealed class FolderServerFixture : ServerFixture;

/// <summary>The models folder followed while the server runs.</summary>
public class ModelsFolderHttpTests(FolderServerFixture server) : IClassFixture<FolderServerFixture>
{
    private async Task<HttpStatusCode> Lookup(string id)
    {
        using var response = await server.Http.GetAsync($"/v1/models/{id}");
        return response.StatusCode;
    }

    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        for (var i = 0; i < 300 && !await condition(); i++)
        {
            await Task.Delay(50);
        }

        Assert.True(await condition(), what);
    }

    [Fact]
    public async Task AModelFileDroppedIntoTheFolderIsServedAndLeavesWhenRemoved()
    {
        // Copied in under another name and renamed, as a careful download does; a plain copy works too (the folder
        // is read once it has been quiet for a second).
        var path = Path.Combine(server.ModelsDirectory, "dropped.gguf");
        File.Copy(EdgeServer.TestSupport.SuccessorModel.SharedPath, path + ".part");
        File.Move(path + ".part", path);
        await Until(async () => await Lookup("dropped") == HttpStatusCode.OK, "the new file is listed without a restart");

        var reply = JsonDocument.Parse(await server.PostOkAsync("/v1/chat/completions", """{"model":"dropped","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":3}"""));
        Assert.Equal("abc", reply.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        File.Delete(path);
        await Until(async () => await Lookup("dropped") == HttpStatusCode.NotFound, "the removed file leaves the list");
        using var gone = await server.PostAsync("/v1/chat/completions", """{"model":"dropped","messages":[{"role":"user","content":"hi"}]}""");
        var text = await gone.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", text);
        Assert.Equal("model_not_found", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString());
    }
}

/// <summary>A model that can never fit the budget is refused at once, with the numbers.</summary>
public class TinyBudgetTests(TinyBudgetServerFixture server) : IClassFixture<TinyBudgetServerFixture>
{
    [Fact]
    public async Task ARequestForAModelBiggerThanTheBudgetIs507WithTheNumbers()
    {
        using var response = await server.PostAsync("/v1/chat/completions", """{"model":"successor","messages":[{"role":"user","content":"hi"}]}""");
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.InsufficientStorage, response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", text);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal("model_too_large", error.GetProperty("code").GetString());
        Assert.Contains("64 KiB", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}
