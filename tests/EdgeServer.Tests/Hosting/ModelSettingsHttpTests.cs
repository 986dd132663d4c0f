using System.ClientModel;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Options;
using OpenAI;
using OpenAI.Chat;

namespace EdgeServer.Tests.Hosting;

/// <summary>A model configured by EdgeServer:Models with settings of its own, beside the shared fixture's models.</summary>
public sealed class TunedModelServerFixture : ServerFixture
{
    protected override IEnumerable<string> ExtraArguments(string scratch)
    {
        // A copy of its own: a path already served (the --model file) is served once, under its first name.
        var path = Path.Combine(scratch, "tuned", "tuned.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (!File.Exists(path))
        {
            SuccessorModel.Write(path);
        }

        return
        [
            "--EdgeServer:Models:0:Id=tuned",
            $"--EdgeServer:Models:0:Path={path}",
            "--EdgeServer:Models:0:Aliases:0=gpt-4o-mini",
            "--EdgeServer:Models:0:Aliases:1=tuned:latest",
            "--EdgeServer:Models:0:Slots=1",
            "--EdgeServer:Models:0:ContextPerSlot=512",
            "--EdgeServer:Models:0:KvCacheType=q8_0",
            "--EdgeServer:Models:0:Sampling:Temperature=0",
            "--EdgeServer:Models:0:Sampling:TopP=0.5",
        ];
    }
}

/// <summary>Per-model settings in EdgeServer:Models: aliases, slots, context, KV cache type, default sampling; and what start-up refuses.</summary>
public class ModelSettingsHttpTests(TunedModelServerFixture server) : IClassFixture<TunedModelServerFixture>
{
    [Fact]
    public async Task TheModelIsListedOnceWithItsAliasesAndItsOwnContext()
    {
        var list = JsonDocument.Parse(await server.Http.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray().ToList();
        var tuned = Assert.Single(list, m => m.GetProperty("id").GetString() == "tuned");
        Assert.DoesNotContain(list, m => m.GetProperty("id").GetString() == "gpt-4o-mini");
        var details = tuned.GetProperty("details");
        Assert.Equal(["gpt-4o-mini", "tuned:latest"], details.GetProperty("aliases").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal(512, details.GetProperty("context_length").GetInt32());

        // By an alias, the model's own entry.
        using var response = await server.Http.GetAsync("/v1/models/tuned:latest");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        server.AssertMatchesSchema("Model", text);
        Assert.Equal("tuned", JsonDocument.Parse(text).RootElement.GetProperty("id").GetString());
    }

    [Fact]
    public async Task TheOpenAiSdkReachesTheModelByAnAlias()
    {
        var client = new ChatClient("gpt-4o-mini", new ApiKeyCredential("no-key-needed"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 5 });
        Assert.Equal("abcde", completion.Content[0].Text);
    }

    [Fact]
    public async Task ARequestGetsTheModelsSamplingForTheFieldsItLeavesOut()
    {
        var own = JsonDocument.Parse(await server.PostOkAsync("/v1/responses", """{"model":"gpt-4o-mini","input":"go","max_output_tokens":2}""")).RootElement;
        Assert.Equal(0, own.GetProperty("temperature").GetDouble());
        Assert.Equal(0.5, own.GetProperty("top_p").GetDouble(), 3);

        // The request's own value wins; another model keeps the server's defaults.
        var given = JsonDocument.Parse(await server.PostOkAsync("/v1/responses", """{"model":"tuned","input":"go","max_output_tokens":2,"temperature":0.7}""")).RootElement;
        Assert.Equal(0.7, given.GetProperty("temperature").GetDouble(), 3);
        Assert.Equal(0.5, given.GetProperty("top_p").GetDouble(), 3);
        var other = JsonDocument.Parse(await server.PostOkAsync("/v1/responses", """{"model":"successor","input":"go","max_output_tokens":2}""")).RootElement;
        Assert.Equal(0.8, other.GetProperty("temperature").GetDouble(), 3);
    }

    [Theory]
    [InlineData("--EdgeServer:Scheduler:KvCacheType=q4_0|--EdgeServer:Scheduler:FlashAttention=off", "EdgeServer:Scheduler: a q4_0 KV cache needs flash attention")]
    [InlineData("--EdgeServer:Models:0:KvCacheType=q8_0|--EdgeServer:Models:0:FlashAttention=Off", "EdgeServer:Models:0 ('m'): a q8_0 KV cache needs flash attention")]
    [InlineData("--EdgeServer:Models:0:Aliases:0=successor", "the names successor are used more than once")]
    [InlineData("--EdgeServer:Models:0:Sampling:Temperature=5", "EdgeServer:Models:0:Sampling:Temperature ('m'): 5 is out of range; it must be from 0 to 2")]
    [InlineData("--EdgeServer:Models:0:Sampling:TopP=0", "EdgeServer:Models:0:Sampling:TopP ('m'): 0 is out of range")]
    [InlineData("--EdgeServer:Models:0:KvCacheType=q5_1", "EdgeServer:Models:0: Failed to convert configuration value 'q5_1' at 'EdgeServer:Models:0:KvCacheType'")]
    [InlineData("--EdgeServer:Models:0:ContextPerSlot=lots", "'lots' at 'EdgeServer:Models:0:ContextPerSlot'")]
    [InlineData("--EdgeServer:Models:0:Slots=0", "Slots")]
    public async Task BadModelSettingsStopStartUpWithTheSettingNamed(string arguments, string expected)
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--models-dir", "/nonexistent",
            "--EdgeServer:Models:1:Id=successor",
            $"--EdgeServer:Models:1:Path={SuccessorModel.SharedPath}",
            "--EdgeServer:Models:0:Id=m",
            $"--EdgeServer:Models:0:Path={SuccessorModel.SharedPath}",
            "--Logging:LogLevel:Default=None",
            .. arguments.Split('|'),
        ]);
        var e = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await using var app = builder.Build();
            app.MapEdgeServer();
            await app.StartAsync();
        });
        var message = e is OptionsValidationException v ? string.Join("\n", v.Failures) : e.ToString();
        Assert.Contains(expected, message, StringComparison.Ordinal);
    }
}
