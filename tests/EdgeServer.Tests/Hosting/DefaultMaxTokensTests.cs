using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Options;

namespace EdgeServer.Tests.Hosting;

/// <summary>The successor model behind a server whose EdgeServer:Limits:DefaultMaxTokens is 5.</summary>
public sealed class FiveTokenDefaultServerFixture : IAsyncLifetime
{
    public const int DefaultMaxTokens = 5;
    public const int ContextPerSlot = 512;
    private WebApplication? _app;
    private string? _models;

    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _models = Directory.CreateTempSubdirectory("edgeserver-default-max-").FullName;
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--model", SuccessorModel.SharedPath,
            "--models-dir", _models,
            "--threads", "2",
            "--slots", "2",
            "--ctx-size", ContextPerSlot.ToString(CultureInfo.InvariantCulture),
            $"--EdgeServer:Limits:DefaultMaxTokens={DefaultMaxTokens}",
            "--Logging:LogLevel:Default=Warning",
        ]);
        _app = builder.Build();
        _app.MapEdgeServer();
        await _app.StartAsync();
        Http = new HttpClient { BaseAddress = new Uri(_app.Urls.Single()), Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        Directory.Delete(_models!, recursive: true);
    }

    public async Task<JsonElement> PostOkAsync(string path, string json)
    {
        using var response = await Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.Clone();
    }
}

/// <summary>
/// A request that names no length gets EdgeServer:Limits:DefaultMaxTokens on every API that generates, and a
/// request that names one gets it, beyond the default. The successor model's chat reply is the alphabet and "é€"
/// (31 tokens), far longer than the default of this server.
/// </summary>
public class DefaultMaxTokensTests(FiveTokenDefaultServerFixture server) : IClassFixture<FiveTokenDefaultServerFixture>
{
    private const int Cap = FiveTokenDefaultServerFixture.DefaultMaxTokens;
    private const string Go = """[{"role":"user","content":"go"}]""";

    [Fact]
    public async Task ChatWithoutMaxTokensStopsAtTheDefaultWithLength()
    {
        var reply = await server.PostOkAsync("/v1/chat/completions", $$"""{"model":"successor","messages":{{Go}},"temperature":0}""");
        var choice = reply.GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(SuccessorModel.Alphabet[..Cap], choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(Cap, reply.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnEndlessGenerationWithoutMaxTokensStopsAtTheDefault(bool stream)
    {
        var body = $$"""{"model":"successor","messages":{{Go}},"temperature":0,"ignore_eos":true{{(stream ? ""","stream":true,"stream_options":{"include_usage":true}""" : "")}}}""";
        using var response = await server.Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var events = stream ? ServerFixture.SseData(text).Select(d => JsonDocument.Parse(d).RootElement).ToList() : [JsonDocument.Parse(text).RootElement];
        Assert.Equal("length", events.SelectMany(e => e.GetProperty("choices").EnumerateArray())
            .Select(c => c.TryGetProperty("finish_reason", out var f) ? f.GetString() : null).Last(f => f is not null));
        Assert.Equal(Cap, events.Last().GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Theory]
    [InlineData("max_tokens", 12, "length")]
    [InlineData("max_completion_tokens", 12, "length")]
    [InlineData("max_tokens", 40, "stop")]
    public async Task AnExplicitMaxTokensAboveTheDefaultIsHonoured(string field, int maxTokens, string finish)
    {
        var reply = await server.PostOkAsync("/v1/chat/completions", $$"""{"model":"successor","messages":{{Go}},"temperature":0,"{{field}}":{{maxTokens}}}""");
        var choice = reply.GetProperty("choices")[0];
        Assert.Equal(finish, choice.GetProperty("finish_reason").GetString());
        var expected = finish == "stop" ? SuccessorModel.ChatReply : SuccessorModel.Alphabet[..maxTokens];
        Assert.Equal(expected, choice.GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task AnExplicitMaxTokensRunsUpToTheContext()
    {
        // Past end-of-text the successor model writes end-of-text forever: ignore_eos makes that endless.
        var maxTokens = FiveTokenDefaultServerFixture.ContextPerSlot - 64;
        var reply = await server.PostOkAsync("/v1/chat/completions", $$"""{"model":"successor","messages":{{Go}},"temperature":0,"ignore_eos":true,"max_tokens":{{maxTokens}}}""");
        Assert.Equal("length", reply.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(maxTokens, reply.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ResponsesWithoutMaxOutputTokensStopAtTheDefault()
    {
        var reply = await server.PostOkAsync("/v1/responses", """{"model":"successor","input":"go","temperature":0}""");
        Assert.Equal("incomplete", reply.GetProperty("status").GetString());
        Assert.Equal("max_output_tokens", reply.GetProperty("incomplete_details").GetProperty("reason").GetString());
        Assert.Equal(Cap, reply.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Theory]
    [InlineData("/api/chat", "")]
    [InlineData("/api/chat", ""","options":{"num_predict":-1}""")]
    [InlineData("/api/generate", ""","options":{"num_predict":-2}""")]
    [InlineData("/api/generate", "")]
    public async Task OllamaWithoutNumPredictStopsAtTheDefault(string path, string options)
    {
        var input = path == "/api/chat" ? "\"messages\":" + Go : "\"prompt\":\"go\"";
        var reply = await server.PostOkAsync(path, $$"""{"model":"successor",{{input}},"stream":false{{options}}}""");
        Assert.Equal("length", reply.GetProperty("done_reason").GetString());
        Assert.Equal(Cap, reply.GetProperty("eval_count").GetInt32());
    }

    [Fact]
    public async Task LegacyCompletionsKeepOpenAisDefaultOf16()
    {
        var reply = await server.PostOkAsync("/v1/completions", """{"model":"successor","prompt":"Hello a","temperature":0}""");
        Assert.Equal("bcdefghijklmnopq", reply.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(16, reply.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ADefaultAboveTheMaxTokensLimitStopsStartUpNamingBoth()
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--models-dir", "/nonexistent",
            "--EdgeServer:Limits:MaxTokens=100",
            "--EdgeServer:Limits:DefaultMaxTokens=200",
            "--Logging:LogLevel:Default=None",
        ]);
        var e = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
        {
            await using var app = builder.Build();
            app.MapEdgeServer();
            await app.StartAsync();
        });
        var message = Assert.Single(e.Failures);
        Assert.Contains("EdgeServer:Limits:DefaultMaxTokens (200)", message, StringComparison.Ordinal);
        Assert.Contains("EdgeServer:Limits:MaxTokens (100)", message, StringComparison.Ordinal);
    }
}
