using EdgeServer.Inference.Gguf;

namespace EdgeServer.TestSupport;

/// <summary>
/// A generated llama model whose greedy output is known from its construction, so tests can assert exact text.
/// Each token's embedding is a one-hot vector and the output matrix maps token t to its successor:
///   'a'→'b'→…→'y'→'z'→ bytes C3 A9 ("é") → bytes E2 82 AC ("€") → end of text;
///   '0'→'1'→…→'9'→ end of text;  "▁x" (a word start) → the letter after x;  '\n' → 'a'.
/// Every other token leads to end of text. The transformer layers carry small random weights, so real
/// attention and feed-forward work runs, but the residual one-hot dominates: logits are ~20 for the successor
/// and near 0 for the rest. So after a prompt ending in "j", greedy output is "klmnopqrstuvwxyzé€".
/// </summary>
public static class SuccessorModel
{
    public const string Alphabet = "abcdefghijklmnopqrstuvwxyz";

    /// <summary>What the model writes after a chat prompt (which ends in a newline): the alphabet, then "é€".</summary>
    public const string ChatReply = Alphabet + "é€";

    public static readonly LlamaShape Shape = new(
        EmbeddingLength: 384, BlockCount: 2, HeadCount: 6, HeadCountKv: 2, FeedForwardLength: 256, ContextLength: 4096);

    public static SpmVocabulary Vocabulary { get; } = new(
        new[] { "▁" }
            .Concat(Alphabet.Select(c => c.ToString()))
            .Concat("0123456789".Select(c => c.ToString()))
            .Concat(Alphabet.Select(c => "▁" + c)));

    /// <summary>Greedy continuation of text whose last character is <paramref name="last"/>, up to end of text.</summary>
    public static string ExpectedAfter(char last)
    {
        var i = Alphabet.IndexOf(last, StringComparison.Ordinal);
        if (i >= 0)
        {
            return Alphabet[(i + 1)..] + "é€";
        }

        var d = "0123456789".IndexOf(last, StringComparison.Ordinal);
        return d >= 0 ? "0123456789"[(d + 1)..] : last == '\n' ? ChatReply : string.Empty;
    }

    /// <summary>Qwen 2.5's published chat template (tools in the Hermes syntax), for tests of tool calling.</summary>
    public static string QwenTemplate { get; } = ReadResource("qwen2.5.jinja");

    /// <summary>Qwen 3's published chat template: the model opens its thinking with &lt;think&gt;; <c>enable_thinking: false</c> closes it in the prompt.</summary>
    public static string Qwen3Template { get; } = ReadResource("qwen3.jinja");

    /// <summary>A DeepSeek-R1 distill's chat template: its generation prompt opens &lt;think&gt;, so output starts inside thinking.</summary>
    public static string DeepSeekR1DistillTemplate { get; } = ReadResource("deepseek-r1-distill.jinja");

    private static string ReadResource(string name)
    {
        using var stream = typeof(SuccessorModel).Assembly.GetManifestResourceStream(name)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public static void Write(string path, string? chatTemplate = null) =>
        LlamaModelBuilder.Write(path, Shape, Vocabulary, new SuccessorWeights(Successors(), Vocabulary.Count), name: "successor-test-model", chatTemplate: chatTemplate);

    /// <summary>Writes the model once per process into a temp folder and returns its path.</summary>
    public static string SharedPath => s_shared.Value;

    private static readonly Lazy<string> s_shared = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "successor.gguf");
        Write(path);
        return path;
    });

    private static Dictionary<int, int> Successors()
    {
        var v = Vocabulary;
        var map = new Dictionary<int, int>();
        for (var i = 0; i + 1 < Alphabet.Length; i++)
        {
            map[v[Alphabet[i].ToString()]] = v[Alphabet[i + 1].ToString()];
            map[v["▁" + Alphabet[i]]] = v[Alphabet[i + 1].ToString()];
        }

        map[v["▁z"]] = SpmVocabulary.ByteToken(0xC3);
        int[] tail = [v["z"], SpmVocabulary.ByteToken(0xC3), SpmVocabulary.ByteToken(0xA9), SpmVocabulary.ByteToken(0xE2), SpmVocabulary.ByteToken(0x82), SpmVocabulary.ByteToken(0xAC), SpmVocabulary.Eos];
        for (var i = 0; i + 1 < tail.Length; i++)
        {
            map[tail[i]] = tail[i + 1];
        }

        for (var d = 0; d < 9; d++)
        {
            map[v[d.ToString(System.Globalization.CultureInfo.InvariantCulture)]] = v[(d + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)];
        }

        map[SpmVocabulary.ByteToken((byte)'\n')] = v["a"];
        return map;
    }
}
