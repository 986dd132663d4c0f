using EdgeServer.Inference.Gguf;

namespace EdgeServer.TestSupport;

/// <summary>
/// A tiny generated model (random weights) whose vocabulary holds a chat template's control tokens, for tests of
/// how prompts are tokenized. Its normal pieces are single letters and digits and "▁" + a lowercase letter, so
/// any other character (punctuation such as '&lt;', '|', '&gt;', '_') is one byte token: text that only swaps one such
/// character for another keeps its token count.
/// </summary>
public static class ControlTokenModel
{
    private const string Letters = "abcdefghijklmnopqrstuvwxyz";

    private static readonly LlamaShape Shape = new(
        EmbeddingLength: 32, BlockCount: 1, HeadCount: 2, HeadCountKv: 1, FeedForwardLength: 32, ContextLength: 2048);

    public static SpmVocabulary Vocabulary(IEnumerable<string> control, IEnumerable<string>? userDefined = null) => new(
        new[] { "▁" }
            .Concat(Letters.Select(c => c.ToString()))
            .Concat(Letters.ToUpperInvariant().Select(c => c.ToString()))
            .Concat("0123456789".Select(c => c.ToString()))
            .Concat(Letters.Select(c => "▁" + c)),
        controlPieces: control,
        userDefinedPieces: userDefined);

    /// <param name="name">general.name; llama.cpp gives some families' special tokens strip attributes by it
    /// (every special token of a "phi-3" model strips the whitespace to its right).</param>
    public static void Write(string path, string? chatTemplate, IEnumerable<string> control, IEnumerable<string>? userDefined = null, string name = "control-token-test-model") =>
        LlamaModelBuilder.Write(path, Shape, Vocabulary(control, userDefined), new RandomLlamaWeights(seed: 11), name: name, chatTemplate: chatTemplate);
}
