using System.Text;

namespace EdgeServer.Inference.Chat;

/// <summary>The markers a reasoning model writes around its thinking, as its chat template shows them.</summary>
public sealed record ReasoningSyntax(string Open, string Close);

/// <summary>
/// Which thinking markers a template teaches its model, and whether a rendered prompt leaves the model inside its
/// thinking. The syntaxes are those of llama.cpp's chat parsers that split reasoning by tags: <c>&lt;think&gt;</c>
/// (Qwen3, QwQ, DeepSeek-R1 and its distills, SmolLM3, LFM2.5, GLM, MiniMax, Kimi), <c>&lt;seed:think&gt;</c>
/// (Seed-OSS) and <c>[THINK]</c> (Magistral, Ministral reasoning). gpt-oss's channels and Command R7B's
/// START_THINKING/START_RESPONSE are not split.
/// </summary>
internal static class ReasoningFormat
{
    public static ReasoningSyntax Think { get; } = new("<think>", "</think>");

    public static ReasoningSyntax SeedThink { get; } = new("<seed:think>", "</seed:think>");

    public static ReasoningSyntax MistralThink { get; } = new("[THINK]", "[/THINK]");

    /// <summary>The syntax whose closing marker the template's source holds; null when it shows none.</summary>
    public static ReasoningSyntax? Detect(string templateSource)
    {
        foreach (var syntax in new[] { SeedThink, MistralThink, Think })
        {
            if (templateSource.Contains(syntax.Close, StringComparison.Ordinal))
            {
                return syntax;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether the prompt ends inside thinking: its generation prompt opened the marker itself (DeepSeek-R1's
    /// distills, Qwen3 thinking variants), so the model's output starts with its thinking.
    /// </summary>
    public static bool OpensThinking(ReasoningSyntax syntax, string prompt) =>
        prompt.AsSpan().TrimEnd().EndsWith(syntax.Open, StringComparison.Ordinal);
}

/// <summary>
/// Splits a model's output, as it streams, into its thinking and its answer. Thinking is recognised only at the
/// start of the reply (after whitespace), or from the first token when the prompt opened it; it ends at the closing
/// marker, and anything after that is answer, markers included. An unclosed thinking runs to the end of the output.
/// Answer text is held back only while it may still be the opening marker; thinking text also while it may be the
/// closing one, and its trailing whitespace until more text follows. Thinking is trimmed, as is the whitespace
/// between the closing marker and the answer.
/// </summary>
internal sealed class ReasoningSplitter(ReasoningSyntax syntax, bool startsInside)
{
    private enum State
    {
        /// <summary>Nothing but whitespace and part of the opening marker so far.</summary>
        Start,
        Thinking,

        /// <summary>Thinking has ended; whitespace before the answer is dropped.</summary>
        AnswerStart,
        Answer,
    }

    private readonly StringBuilder _held = new();
    private State _state;
    private bool _thoughtStarted; // non-whitespace thinking has been passed on
    private int _heldTokens;

    /// <summary>Tokens that carried thinking or its markers.</summary>
    public int ReasoningTokens { get; private set; }

    /// <summary>
    /// Takes the next piece of output, made of <paramref name="tokens"/> tokens, and returns what can be passed on.
    /// </summary>
    public (string Reasoning, string Answer) Push(string text, int tokens)
    {
        _held.Append(text);
        var reasoning = new StringBuilder();
        var answer = new StringBuilder();
        if (_state == State.Thinking)
        {
            ReasoningTokens += tokens;
        }

        while (true)
        {
            switch (_state)
            {
                case State.Start:
                    var held = _held.ToString();
                    var trimmed = held.AsSpan().TrimStart();
                    if (trimmed.IsEmpty || (trimmed.Length < syntax.Open.Length && syntax.Open.AsSpan().StartsWith(trimmed, StringComparison.Ordinal)))
                    {
                        _heldTokens += tokens;
                        return (string.Empty, string.Empty);
                    }

                    if (trimmed.StartsWith(syntax.Open, StringComparison.Ordinal))
                    {
                        _held.Clear().Append(trimmed[syntax.Open.Length..]);
                    }
                    else if (!startsInside)
                    {
                        // A reply that does not open with the marker is all answer, verbatim.
                        _state = State.Answer;
                        _heldTokens = 0;
                        _held.Clear();
                        return (string.Empty, held);
                    }

                    _state = State.Thinking;
                    ReasoningTokens += _heldTokens + tokens;
                    _heldTokens = 0;
                    continue;
                case State.Thinking:
                    var thought = _held.ToString();
                    var end = thought.IndexOf(syntax.Close, StringComparison.Ordinal);
                    if (end >= 0)
                    {
                        Think(reasoning, thought.AsSpan(0, end).TrimEnd());
                        _held.Clear().Append(thought.AsSpan(end + syntax.Close.Length));
                        _state = State.AnswerStart;
                        continue;
                    }

                    var safe = thought.Length - ToolCallSession.HeldSuffix(thought, syntax.Close);
                    while (safe > 0 && char.IsWhiteSpace(thought[safe - 1]))
                    {
                        safe--;
                    }

                    Think(reasoning, thought.AsSpan(0, safe));
                    _held.Remove(0, safe);
                    return (reasoning.ToString(), answer.ToString());
                case State.AnswerStart:
                    var rest = _held.ToString();
                    var start = rest.AsSpan().TrimStart();
                    _held.Clear();
                    if (start.IsEmpty)
                    {
                        return (reasoning.ToString(), answer.ToString());
                    }

                    answer.Append(start);
                    _state = State.Answer;
                    return (reasoning.ToString(), answer.ToString());
                default:
                    answer.Append(_held);
                    _held.Clear();
                    return (reasoning.ToString(), answer.ToString());
            }
        }
    }

    /// <summary>At the end of the output: what was held back. Unclosed thinking stays thinking.</summary>
    public (string Reasoning, string Answer) Flush()
    {
        var held = _held.ToString();
        _held.Clear();
        switch (_state)
        {
            case State.Start when startsInside && held.AsSpan().Trim().Length > 0:
                ReasoningTokens += _heldTokens;
                _heldTokens = 0;
                return (held.Trim(), string.Empty);
            case State.Start:
                return (string.Empty, startsInside ? string.Empty : held);
            case State.Thinking:
                var reasoning = new StringBuilder();
                Think(reasoning, held.AsSpan().TrimEnd());
                return (reasoning.ToString(), string.Empty);
            default:
                return (string.Empty, string.Empty);
        }
    }

    private void Think(StringBuilder reasoning, ReadOnlySpan<char> text)
    {
        if (!_thoughtStarted)
        {
            text = text.TrimStart();
            _thoughtStarted = text.Length > 0;
        }

        reasoning.Append(text);
    }
}
