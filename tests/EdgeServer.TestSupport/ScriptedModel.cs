using System.Text.RegularExpressions;
using EdgeServer.Inference.Gguf;

namespace EdgeServer.TestSupport;

/// <summary>
/// A generated model that answers every chat prompt with a fixed text, streamed piece by piece: each piece of the
/// reply is one token of its vocabulary, and its weights (<see cref="SuccessorWeights"/>) lead from the newline that
/// ends a ChatML prompt through the pieces to end of text, or, when <c>endless</c>, from the last piece back to the
/// first, so the reply repeats until max_tokens or the context runs out.
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

    public static void Write(string path, string reply, bool endless = false)
    {
        var pieces = Pieces(reply);
        var vocabulary = new SpmVocabulary(BasePieces.Concat(pieces));
        if (vocabulary.Count > SuccessorModel.Shape.EmbeddingLength)
        {
            throw new ArgumentException($"The reply needs {vocabulary.Count} tokens; one-hot embeddings allow {SuccessorModel.Shape.EmbeddingLength}.", nameof(reply));
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

        LlamaModelBuilder.Write(path, SuccessorModel.Shape, vocabulary, new SuccessorWeights(successors, vocabulary.Count), name: "scripted-test-model");
    }

    /// <summary>Letters and digits, so prompts tokenize into pieces rather than bytes alone.</summary>
    private static IEnumerable<string> BasePieces => new[] { "▁" }
        .Concat("abcdefghijklmnopqrstuvwxyz0123456789".Select(c => c.ToString()));

    [GeneratedRegex(@"\s*\S+\s*$|\s*\S+")]
    private static partial Regex Word();
}
