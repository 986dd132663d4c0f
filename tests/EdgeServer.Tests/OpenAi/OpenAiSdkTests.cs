using System.ClientModel;
using EdgeServer.TestSupport;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace EdgeServer.Tests.OpenAi;

/// <summary>The official OpenAI .NET SDK, pointed at EdgeServer, gets what it would from OpenAI.</summary>
[Collection(ServerGroup.Name)]
public class OpenAiSdkTests(ServerFixture server)
{
    private OpenAIClientOptions Options => new() { Endpoint = new Uri(server.BaseAddress, "/v1"), NetworkTimeout = TimeSpan.FromSeconds(60) };

    private ChatClient Chat(string model = ServerFixture.Model) => new(model, new ApiKeyCredential("no-key-needed"), Options);

    [Fact]
    public async Task ChatCompletionReturnsTheModelsReply()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync(
            [new SystemChatMessage("You recite."), new UserChatMessage("Say the alphabet")],
            new ChatCompletionOptions { Temperature = 0 });

        Assert.Equal(SuccessorModel.ChatReply, completion.Content.Single().Text);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(ServerFixture.Model, completion.Model);
        Assert.StartsWith("chatcmpl-", completion.Id, StringComparison.Ordinal);
        Assert.Equal(31, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + 31, completion.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task StreamingDeliversTheReplyTokenByToken()
    {
        var pieces = new List<string>();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        await foreach (var update in Chat().CompleteChatStreamingAsync([new UserChatMessage("Say the alphabet")], new ChatCompletionOptions { Temperature = 0 }))
        {
            pieces.AddRange(update.ContentUpdate.Select(p => p.Text));
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }

        Assert.Equal(SuccessorModel.ChatReply, string.Concat(pieces));
        // One event per token: 26 letters, then "é" and "€", each completed by its last byte token.
        Assert.Equal(28, pieces.Count(p => p.Length > 0));
        Assert.Equal(ChatFinishReason.Stop, finish);
        Assert.NotNull(usage);
        Assert.Equal(31, usage.OutputTokenCount);
    }

    [Fact]
    public async Task MaxOutputTokensAndStopSequencesAreHonoured()
    {
        ChatCompletion limited = await Chat().CompleteChatAsync([new UserChatMessage("go")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 });
        Assert.Equal("abcde", limited.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Length, limited.FinishReason);

        var options = new ChatCompletionOptions { Temperature = 0 };
        options.StopSequences.Add("fgh");
        ChatCompletion stopped = await Chat().CompleteChatAsync([new UserChatMessage("go")], options);
        Assert.Equal("abcde", stopped.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task ModelsAreListedAndRetrievable()
    {
        var client = new OpenAIModelClient(new ApiKeyCredential("no-key-needed"), Options);
        OpenAIModelCollection models = await client.GetModelsAsync();
        string[] expected = ["alien", "notes", "successor", "successor-qwen", "truncated", .. ServerFixture.Hostile.Keys];
        Assert.Equal(expected.Order(StringComparer.Ordinal), models.Select(m => m.Id).Order(StringComparer.Ordinal));
        OpenAIModel model = await client.GetModelAsync(ServerFixture.Model);
        Assert.Equal("edgeserver", model.OwnedBy);
    }

    [Fact]
    public async Task AnUnknownModelIsA404TheSdkSurfaces()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Chat("no-such-model").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, e.Status);
        Assert.Contains("no-such-model", e.Message, StringComparison.Ordinal);
    }
}
