using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;
using Microsoft.AspNetCore.Builder;

namespace EdgeServer.Tests.OpenAi;

/// <summary>
/// A server of scripted models with reasoning models' published chat templates (Qwen3's, a DeepSeek-R1 distill's),
/// each forced to reply with a known text that holds thinking: the reply's pieces are its tokens, so a marker can
/// be split across two of them.
/// </summary>
public sealed class ReasoningServerFixture : InProcessServer
{
    /// <summary>Qwen3's template; the thinking markers are cut across tokens.</summary>
    public const string Qwen3 = "qwen3-thinker";

    public static readonly string[] Qwen3Pieces = ["<th", "ink>", "\nI", " plan", "\n</thi", "nk>", "\n\nThe", " answer"];

    /// <summary>The DeepSeek-R1 distill's template, which opens &lt;think&gt; itself: the reply starts inside thinking.</summary>
    public const string DeepSeek = "r1-distill";

    public static readonly string[] DeepSeekPieces = ["I", " plan", "\n</think>", "\n\nThe", " answer"];

    /// <summary>Opens its thinking and never closes it, until max_tokens.</summary>
    public const string Unclosed = "qwen3-unclosed";

    /// <summary>A closing marker without an opener: all answer.</summary>
    public const string NoOpener = "qwen3-no-opener";

    public const string NoOpenerReply = "The answer</think> stays answer";

    /// <summary>Markers inside the answer, after the thinking ended: answer text.</summary>
    public const string TagsInAnswer = "qwen3-tags-in-answer";

    public static readonly string[] TagsInAnswerPieces = ["<think>", "\nplan", "</think>", "\n\nUse", " <think>", " tags", " </think>", " here"];

    /// <summary>Thinks, then calls a tool in Qwen's Hermes syntax.</summary>
    public const string ToolThinker = "qwen3-tool-thinker";

    public const string ToolThinkerReply = "<think>\nI will call it\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    private string _models = null!;

    public override async Task InitializeAsync()
    {
        _models = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), "reasoning-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_models);
        ScriptedModel.WritePieces(Path.Combine(_models, Qwen3 + ".gguf"), Qwen3Pieces, chatTemplate: SuccessorModel.Qwen3Template);
        ScriptedModel.WritePieces(Path.Combine(_models, DeepSeek + ".gguf"), DeepSeekPieces, chatTemplate: SuccessorModel.DeepSeekR1DistillTemplate);
        ScriptedModel.Write(Path.Combine(_models, Unclosed + ".gguf"), "<think>\nround and round we go", endless: true, chatTemplate: SuccessorModel.Qwen3Template);
        ScriptedModel.Write(Path.Combine(_models, NoOpener + ".gguf"), NoOpenerReply, chatTemplate: SuccessorModel.Qwen3Template);
        ScriptedModel.WritePieces(Path.Combine(_models, TagsInAnswer + ".gguf"), TagsInAnswerPieces, chatTemplate: SuccessorModel.Qwen3Template);
        ScriptedModel.Write(Path.Combine(_models, ToolThinker + ".gguf"), ToolThinkerReply, chatTemplate: SuccessorModel.Qwen3Template);

        Scratch = _models;
        await StartAsync(
        [
            "--models-dir", _models,
            "--threads", "1",
            "--slots", "2",
            "--ctx-size", "2048",
            "--Logging:LogLevel:Default=Warning",
        ]);
    }
}

[CollectionDefinition(Name)]
public sealed class ReasoningGroup : ICollectionFixture<ReasoningServerFixture>
{
    public const string Name = "reasoning";
}

/// <summary>
/// /v1/chat/completions with reasoning models: thinking comes out of <c>content</c> into <c>reasoning_content</c> and
/// <c>reasoning</c>, whole and streamed, with its tokens counted in <c>completion_tokens_details.reasoning_tokens</c>.
/// </summary>
[Collection(ReasoningGroup.Name)]
public sealed class ReasoningTests(ReasoningServerFixture server)
{
    private static string Chat(string model, string extra = "") =>
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"What is the answer?"}],"temperature":0,"max_tokens":40{{extra}}}""";

    [Theory]
    [InlineData(ReasoningServerFixture.Qwen3, 6)] // the markers are split across tokens
    [InlineData(ReasoningServerFixture.DeepSeek, 3)] // the prompt opened the thinking
    public async Task ThinkingIsSplitFromTheAnswer(string model, int reasoningTokens)
    {
        var body = await server.PostOkAsync("/v1/chat/completions", Chat(model));
        server.AssertMatchesSchema("CreateChatCompletionResponse", body);
        using var doc = JsonDocument.Parse(body);
        var message = doc.RootElement.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("The answer", message.GetProperty("content").GetString());
        Assert.Equal("I plan", message.GetProperty("reasoning_content").GetString());
        Assert.Equal("I plan", message.GetProperty("reasoning").GetString());
        Assert.Equal("stop", doc.RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        var usage = doc.RootElement.GetProperty("usage");
        Assert.Equal(reasoningTokens, usage.GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());
        Assert.True(usage.GetProperty("completion_tokens").GetInt32() > reasoningTokens);
    }

    [Theory]
    [InlineData(ReasoningServerFixture.Qwen3, 6)]
    [InlineData(ReasoningServerFixture.DeepSeek, 3)]
    public async Task ThinkingStreamsInItsOwnDeltas(string model, int reasoningTokens)
    {
        var body = await server.PostOkAsync("/v1/chat/completions", Chat(model, ""","stream":true,"stream_options":{"include_usage":true}"""));
        var (content, reasoning, reasoningAlias, chunks) = ReadStream(body);
        Assert.Equal("The answer", content);
        Assert.Equal("I plan", reasoning);
        Assert.Equal("I plan", reasoningAlias);

        // Token by token: the thinking arrives in more than one delta, none of which also carries answer text.
        var thoughtDeltas = chunks.Where(c => c.Delta.ValueKind == JsonValueKind.Object && c.Delta.TryGetProperty("reasoning_content", out _)).ToList();
        Assert.True(thoughtDeltas.Count > 1, body);
        Assert.All(thoughtDeltas, c => Assert.False(c.Delta.TryGetProperty("content", out _)));
        Assert.Equal(reasoningTokens, chunks[^1].Root.GetProperty("usage").GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());
    }

    [Fact]
    public async Task AnUnclosedThinkingThatRunsToMaxTokensIsAllReasoning()
    {
        var whole = await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.Unclosed).Replace("\"max_tokens\":40", "\"max_tokens\":9", StringComparison.Ordinal));
        server.AssertMatchesSchema("CreateChatCompletionResponse", whole);
        using var doc = JsonDocument.Parse(whole);
        var choice = doc.RootElement.GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(string.Empty, choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("round and round we go<think>\nround and", choice.GetProperty("message").GetProperty("reasoning_content").GetString());
        Assert.Equal(9, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());

        var streamed = await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.Unclosed, ""","stream":true""").Replace("\"max_tokens\":40", "\"max_tokens\":9", StringComparison.Ordinal));
        var (content, reasoning, _, chunks) = ReadStream(streamed);
        Assert.Equal(string.Empty, content);
        Assert.Equal("round and round we go<think>\nround and", reasoning);
        Assert.Equal("length", chunks.Select(c => c.Finish).Last(f => f is not null));
    }

    [Fact]
    public async Task AClosingMarkerWithoutAnOpenerStaysAnswer()
    {
        var body = await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.NoOpener));
        server.AssertMatchesSchema("CreateChatCompletionResponse", body);
        using var doc = JsonDocument.Parse(body);
        var message = doc.RootElement.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal(ReasoningServerFixture.NoOpenerReply, message.GetProperty("content").GetString());
        Assert.False(message.TryGetProperty("reasoning_content", out _));
        Assert.False(message.TryGetProperty("reasoning", out _));
        Assert.Equal(0, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens_details").GetProperty("reasoning_tokens").GetInt32());

        var (content, reasoning, _, _) = ReadStream(await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.NoOpener, ""","stream":true""")));
        Assert.Equal(ReasoningServerFixture.NoOpenerReply, content);
        Assert.Equal(string.Empty, reasoning);
    }

    [Fact]
    public async Task MarkersInTheAnswerAfterThinkingStayAnswer()
    {
        var body = await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.TagsInAnswer));
        using var doc = JsonDocument.Parse(body);
        var message = doc.RootElement.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("Use <think> tags </think> here", message.GetProperty("content").GetString());
        Assert.Equal("plan", message.GetProperty("reasoning_content").GetString());

        var (content, reasoning, _, _) = ReadStream(await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.TagsInAnswer, ""","stream":true""")));
        Assert.Equal("Use <think> tags </think> here", content);
        Assert.Equal("plan", reasoning);
    }

    [Fact]
    public async Task ToolCallsAreReadFromTheAnswerAfterThinking()
    {
        const string Tools = ""","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]""";
        var body = await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.ToolThinker, Tools).Replace("\"max_tokens\":40", "\"max_tokens\":100", StringComparison.Ordinal));
        server.AssertMatchesSchema("CreateChatCompletionResponse", body);
        using var doc = JsonDocument.Parse(body);
        var choice = doc.RootElement.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var message = choice.GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        Assert.Equal("I will call it", message.GetProperty("reasoning_content").GetString());
        var call = Assert.Single(message.GetProperty("tool_calls").EnumerateArray().ToList());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("""{"city":"Paris"}""", call.GetProperty("function").GetProperty("arguments").GetString());

        var streamed = await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.ToolThinker, Tools + ""","stream":true""").Replace("\"max_tokens\":40", "\"max_tokens\":100", StringComparison.Ordinal));
        var (content, reasoning, _, chunks) = ReadStream(streamed);
        Assert.Equal(string.Empty, content);
        Assert.Equal("I will call it", reasoning);
        Assert.Contains(chunks, c => c.Delta.ValueKind == JsonValueKind.Object && c.Delta.TryGetProperty("tool_calls", out _));
        Assert.Equal("tool_calls", chunks.Select(c => c.Finish).Last(f => f is not null));
    }

    [Fact]
    public async Task ReasoningEffortNoneTurnsThinkingOffInTheTemplate()
    {
        // Qwen3's template writes an empty <think></think> block into the prompt when enable_thinking is false.
        var on = PromptTokens(await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.Qwen3)));
        var high = PromptTokens(await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.Qwen3, ""","reasoning_effort":"high" """)));
        var off = PromptTokens(await server.PostOkAsync("/v1/chat/completions", Chat(ReasoningServerFixture.Qwen3, ""","reasoning_effort":"none" """)));
        Assert.Equal(on, high);
        Assert.True(off > on, $"{off} > {on}");

        static int PromptTokens(string body) => JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
    }

    [Fact]
    public async Task AnUnknownReasoningEffortIsA400NamingIt()
    {
        using var response = await server.PostAsync("/v1/chat/completions", Chat(ReasoningServerFixture.Qwen3, ""","reasoning_effort":"extreme" """));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        server.AssertMatchesSchema("ErrorResponse", body);
        Assert.Equal("reasoning_effort", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task ThinkingSentBackInTheHistoryReachesTheTemplate()
    {
        // Qwen3's template shows an assistant turn's reasoning_content after the last user message (a tool-calling turn).
        const string Turns = """[{"role":"user","content":"Weather?"},{"role":"assistant","content":"","reasoning_content":"REASONING","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_1","content":"sunny"}]""";
        var without = Turns.Replace(",\"reasoning_content\":\"REASONING\"", string.Empty, StringComparison.Ordinal);
        var with = PromptTokens(await server.PostOkAsync("/v1/chat/completions", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","messages":{{Turns}},"max_tokens":1}"""));
        var plain = PromptTokens(await server.PostOkAsync("/v1/chat/completions", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","messages":{{without}},"max_tokens":1}"""));
        Assert.True(with > plain, $"{with} > {plain}");

        static int PromptTokens(string body) => JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
    }

    [Fact]
    public async Task ResponsesReturnThinkingAsAReasoningItem()
    {
        var request = $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","input":"What is the answer?","temperature":0,"max_output_tokens":40}""";
        var whole = await server.PostOkAsync("/v1/responses", request);
        server.AssertMatchesSchema("Response", whole);
        var root = JsonDocument.Parse(whole).RootElement;
        var output = root.GetProperty("output").EnumerateArray().ToList();
        Assert.Equal(["reasoning", "message"], output.Select(o => o.GetProperty("type").GetString()));
        Assert.Equal("I plan", output[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal("reasoning_text", output[0].GetProperty("content")[0].GetProperty("type").GetString());
        Assert.Equal(0, output[0].GetProperty("summary").GetArrayLength());
        Assert.Equal("The answer", output[1].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(6, root.GetProperty("usage").GetProperty("output_tokens_details").GetProperty("reasoning_tokens").GetInt32());

        var events = (await server.PostOkAsync("/v1/responses", request.Replace("}", ",\"stream\":true}", StringComparison.Ordinal)))
            .Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('\n')[1]["data: ".Length..]).ToList();
        var types = new List<string>();
        var thought = new StringBuilder();
        var text = new StringBuilder();
        for (var i = 0; i < events.Count; i++)
        {
            server.AssertMatchesSchema("ResponseStreamEvent", events[i]);
            var data = JsonDocument.Parse(events[i]).RootElement;
            Assert.Equal(i, data.GetProperty("sequence_number").GetInt32());
            var type = data.GetProperty("type").GetString()!;
            thought.Append(type == "response.reasoning_text.delta" ? data.GetProperty("delta").GetString() : null);
            text.Append(type == "response.output_text.delta" ? data.GetProperty("delta").GetString() : null);
            if (types.Count == 0 || types[^1] != type || !type.EndsWith(".delta", StringComparison.Ordinal))
            {
                types.Add(type);
            }
        }

        Assert.Equal(
            ["response.created", "response.in_progress", "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.done", "response.output_item.done",
             "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"],
            types);
        Assert.Equal("I plan", thought.ToString());
        Assert.Equal("The answer", text.ToString());
    }

    [Fact]
    public async Task ResponsesTakeReasoningEffortAndAReplayedReasoningItem()
    {
        var on = Input(await server.PostOkAsync("/v1/responses", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","input":"Hi","max_output_tokens":1,"reasoning":{"effort":"high","summary":"auto"} }"""));
        var off = Input(await server.PostOkAsync("/v1/responses", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","input":"Hi","max_output_tokens":1,"reasoning":{"effort":"none"} }"""));
        Assert.True(off > on, $"{off} > {on}");

        // A client without stored responses sends the earlier output back, reasoning item included.
        const string Replay = """[{"role":"user","content":"Hi"},{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"I plan"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"The answer"}]},{"role":"user","content":null}]""";
        using var response = await server.PostAsync("/v1/responses", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","max_output_tokens":1,"input":{{Replay}}}""");
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("input[3].content", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("param").GetString());
        await server.PostOkAsync("/v1/responses", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","max_output_tokens":1,"input":{{Replay.Replace("null", "\"Again\"", StringComparison.Ordinal)}}}""");

        using var bad = await server.PostAsync("/v1/responses", $$"""{"model":"{{ReasoningServerFixture.Qwen3}}","input":"Hi","reasoning":{"effort":"extreme"} }""");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("reasoning.effort", JsonDocument.Parse(await bad.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("param").GetString());

        static int Input(string body) => JsonDocument.Parse(body).RootElement.GetProperty("usage").GetProperty("input_tokens").GetInt32();
    }

    private sealed record StreamChunk(JsonElement Root, JsonElement Delta, string? Finish);

    /// <summary>Validates each chunk and joins the deltas' content, reasoning_content and reasoning.</summary>
    private (string Content, string Reasoning, string ReasoningAlias, List<StreamChunk> Chunks) ReadStream(string body)
    {
        var content = new StringBuilder();
        var reasoning = new StringBuilder();
        var alias = new StringBuilder();
        var chunks = new List<StreamChunk>();
        foreach (var data in ServerFixture.SseData(body))
        {
            server.AssertMatchesSchema("CreateChatCompletionStreamResponse", data);
            var root = JsonDocument.Parse(data).RootElement;
            if (root.GetProperty("choices").GetArrayLength() == 0)
            {
                chunks.Add(new StreamChunk(root, default, null));
                continue;
            }

            var choice = root.GetProperty("choices")[0];
            var delta = choice.GetProperty("delta");
            content.Append(delta.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null);
            reasoning.Append(delta.TryGetProperty("reasoning_content", out var r) ? r.GetString() : null);
            alias.Append(delta.TryGetProperty("reasoning", out var a) ? a.GetString() : null);
            chunks.Add(new StreamChunk(root, delta, choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String ? choice.GetProperty("finish_reason").GetString() : null));
        }

        return (content.ToString(), reasoning.ToString(), alias.ToString(), chunks);
    }
}
