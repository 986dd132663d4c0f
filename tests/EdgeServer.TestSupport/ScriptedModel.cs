using System.Text.RegularExpressions;
using EdgeServer.Inference.Gguf;

namespace EdgeServer.TestSupport;

/// <summary>
/// A generated model that answers every chat prompt with a fixed text, streamed piece by piece: each piece of the
/// reply is one token of its vocabulary, and its weights (<see cref="SuccessorWeights"/>) lead from the newline that
/// ends a ChatML prompt through the pieces to end of text, or, when <c>endless</c>, from the last piece back to the
/// first, so the reply repeats until max_tokens or the context runs out. Given a chat template, the model serves it
/// (its prompt must end in a newline too, as Qwen's and DeepSeek-R1's do).
/// </summary>
public static partial class ScriptedModel
{
    /// <summary>The pieces <see cref="Write"/> makes of <paramref name="reply"/>: words with the space before them, each piece once.</summary>
    public static IReadOnlyList<string> Pieces(string reply)
    {
        var used = new HashSet<string>(BasePieces, StringComparer.Ordinal);
        var pieces = new List<string>();
        var pending = string.Empty;
        foreach (Match word in Word().Matches(reply))
        {
            pending += word.Value.Replace(' ', '▁');
            if (used.Add(pending))
            {
                pieces.Add(pending);
                pending = string.Empty;
            }
        }

        if (pending.Length > 0)
        {
            // A repeated last word joins the piece before it.
            used.Remove(pieces[^1]);
            pieces[^1] += pending;
            if (!used.Add(pieces[^1]))
            {
                throw new ArgumentException($"The reply's end '{pieces[^1]}' repeats an earlier piece.", nameof(reply));
            }
        }

        return pieces;
    }

    public static void Write(string path, string reply, bool endless = false, string? chatTemplate = null) =>
        WritePieces(path, Pieces(reply), endless, chatTemplate);

    /// <summary>
    /// A model whose reply is exactly <paramref name="pieces"/>, one token each (a space is written as '▁'), so a test
    /// decides where the text is cut, e.g. a marker split across two tokens. Pieces must differ from each other and
    /// from the single letters and digits every vocabulary has.
    /// </summary>
    public static void WritePieces(string path, IReadOnlyList<string> pieces, bool endless = false, string? chatTemplate = null)
    {
        pieces = pieces.Select(p => p.Replace(' ', '▁')).ToList();
        if (pieces.Distinct(StringComparer.Ordinal).Count() != pieces.Count || pieces.Any(p => p.Length == 0 || BasePieces.Contains(p, StringComparer.Ordinal)))
        {
            throw new ArgumentException("Pieces must be non-empty, distinct, and not a single letter or digit.", nameof(pieces));
        }

        var vocabulary = new SpmVocabulary(BasePieces.Concat(pieces));
        if (vocabulary.Count > SuccessorModel.Shape.EmbeddingLength)
        {
            throw new ArgumentException($"The reply needs {vocabulary.Count} tokens; one-hot embeddings allow {SuccessorModel.Shape.EmbeddingLength}.", nameof(pieces));
        }

        var successors = new Dictionary<int, int> { [SpmVocabulary.ByteToken((byte)'\n')] = vocabulary[pieces[0]] };
        for (var i = 0; i + 1 < pieces.Count; i++)
        {
            successors[vocabulary[pieces[i]]] = vocabulary[pieces[i + 1]];
        }

        if (endless)
        {
            successors[vocabulary[pieces[^1]]] = vocabulary[pieces[0]];
        }

        LlamaModelBuilder.Write(path, SuccessorModel.Shape, vocabulary, new SuccessorWeights(successors, vocabulary.Count), name: "scripted-test-model", chatTemplate: chatTemplate);
    }

    /// <summary>Letters and digits, so prompts tokenize into pieces rather than bytes alone.</summary>
    private static IEnumerable<string> BasePieces => new[] { "▁" }
        .Concat("abcdefghijklmnopqrstuvwxyz0123456789".Select(c => c.ToString()));

    [GeneratedRegex(@"\s*\S+\s*$|\s*\S+")]
    private static partial Regex Word();
}
