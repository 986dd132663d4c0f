using EdgeServer.Inference.Gguf;

namespace EdgeServer.TestSupport;

/// <summary>
/// Weights whose greedy output follows a table of successors: each token's embedding is one-hot and the output
/// matrix scores a token's successor; tokens without one lead to end of text. The layers carry small random weights,
/// so real attention and feed-forward work runs while the residual one-hot decides.
/// </summary>
internal sealed class SuccessorWeights(Dictionary<int, int> successors, int vocabularyCount) : ILlamaWeights
{
    private const float Embedding = 4f;
    private readonly RandomLlamaWeights _random = new(seed: 7, scale: 0.005f);
    private readonly Dictionary<int, List<int>> _predecessors = successors
        .GroupBy(kv => kv.Value)
        .ToDictionary(g => g.Key, g => g.Select(kv => kv.Key).ToList());

    public void FillRow(string tensor, int row, Span<float> values)
    {
        switch (tensor)
        {
            case "token_embd.weight":
                values.Clear();
                values[row] = Embedding;
                break;
            case "output.weight":
                // Row j scores token j: 1 at every token whose successor is j. Tokens with no successor lead to EOS.
                values.Clear();
                if (_predecessors.TryGetValue(row, out var from))
                {
                    foreach (var t in from)
                    {
                        values[t] = 1f;
                    }
                }

                if (row == SpmVocabulary.Eos)
                {
                    for (var t = 0; t < vocabularyCount; t++)
                    {
                        if (!successors.ContainsKey(t))
                        {
                            values[t] = 1f;
                        }
                    }
                }

                break;
            default:
                _random.FillRow(tensor, row, values);
                break;
        }
    }
}
