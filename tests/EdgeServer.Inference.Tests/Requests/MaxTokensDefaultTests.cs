namespace EdgeServer.Inference.Tests.Requests;

/// <summary>How many tokens a request may generate, from its max_tokens, the host's default and the room in the context.</summary>
public class MaxTokensDefaultTests
{
    private static readonly GenerationRequest WithoutLength = new() { Model = "m", Prompt = "p" };

    [Theory]
    [InlineData(1024, 100, 2048, 1024)] // the default
    [InlineData(1024, 1500, 2048, 548)] // the default, cut to the room left
    [InlineData(0, 100, 2048, 1948)] // 0: to the end of the context
    public void ARequestWithoutMaxTokensGetsTheDefaultWithinTheContext(int defaultMaxTokens, int promptTokens, int context, int expected) =>
        Assert.Equal(expected, GenerationRequestValidator.ForContext(WithoutLength, promptTokens, context, new GenerationLimits { DefaultMaxTokens = defaultMaxTokens }));

    [Fact]
    public void AnExplicitMaxTokensWinsOverTheDefault() =>
        Assert.Equal(1500, GenerationRequestValidator.ForContext(WithoutLength with { MaxTokens = 1500 }, 100, 2048, new GenerationLimits { DefaultMaxTokens = 16 }));
}
