using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Sampling;

/// <summary>
/// Picks one sequence's next token: its sampler chain, and, for constrained output, a grammar. The grammar is
/// not run over the whole vocabulary every step (tens of milliseconds on a 128k vocabulary): the chain picks a
/// token, the grammar checks that one token, and only when it refuses is the grammar applied to every
/// candidate and the choice made again (as llama.cpp's own common sampler does).
/// A <see cref="GrammarTrigger"/> makes the grammar lazy: sampling is free until the output opens the trigger's
/// marker; then the grammar is made to start at that point, is fed the tokens already written from there (each
/// checked first, as llama.cpp aborts on text its grammar refuses), and constrains the rest.
/// Built on the request's thread before it is queued, so a grammar llama.cpp refuses is that request's error;
/// then used by one thread at a time (the decode loop, or the worker it hands a grammar step to).
/// </summary>
internal sealed unsafe class TokenSampler : IDisposable
{
    private readonly SafeLlamaSamplerHandle _chain;
    private readonly IntPtr _vocab;
    private readonly int _vocabularySize;
    private SafeLlamaSamplerHandle? _grammar;
    private GrammarTriggerWatch? _watch;
    private LlamaTokenData[]? _candidates;

    /// <summary>Throws <see cref="GrammarRefusedException"/> when llama.cpp refuses <paramref name="grammar"/>.</summary>
    public TokenSampler(SamplingParameters p, IReadOnlyDictionary<int, float> logitBias, string? grammar, IntPtr vocab, int vocabularySize, int contextLength, GrammarTrigger? trigger = null)
    {
        _vocab = vocab;
        _vocabularySize = vocabularySize;
        _chain = SamplerChainFactory.Create(p, logitBias, vocabularySize, contextLength);
        try
        {
            _grammar = grammar is null ? null : SamplerChainFactory.CreateGrammar(vocab, grammar);
            if (trigger is not null)
            {
                // Made once now so that llama.cpp's refusal is this request's error, not a surprise at the trigger.
                SamplerChainFactory.CreateGrammar(vocab, trigger.Grammar).Dispose();
                _watch = new GrammarTriggerWatch(trigger);
            }
        }
        catch
        {
            _chain.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether a grammar constrains this sequence (or a lazy one is about to start); its steps can take long, so they
    /// run off the decode thread.
    /// </summary>
    public bool HasGrammar => _grammar is not null || _watch is { Fired: true };

    /// <summary>Samples from the context's logits of <paramref name="batchIndex"/> (decode thread).</summary>
    public int Sample(SafeLlamaContextHandle context, int batchIndex)
    {
        if (!HasGrammar)
        {
            var sampled = NativeMethods.llama_sampler_sample(_chain, context, batchIndex);
            Watch(sampled);
            return sampled;
        }

        var logits = NativeMethods.llama_get_logits_ith(context, batchIndex);
        return logits == null ? throw new InferenceException($"llama.cpp has no logits for batch position {batchIndex}.") : Sample(logits);
    }

    /// <summary>Samples from a copy of one position's logits (any one thread at a time).</summary>
    public int Sample(float[] logits)
    {
        fixed (float* p = logits)
        {
            return Sample(p);
        }
    }

    private int Sample(float* logits)
    {
        if (_watch is { Fired: true })
        {
            StartGrammar();
        }

        var token = Choose(logits, constrain: false);
        if (_grammar is null)
        {
            NativeMethods.llama_sampler_accept(_chain, token);
            Watch(token);
            return token;
        }

        if (!Allows(_grammar, token))
        {
            token = Choose(logits, constrain: true);
        }

        NativeMethods.llama_sampler_accept(_grammar, token);
        NativeMethods.llama_sampler_accept(_chain, token);
        return token;
    }

    /// <summary>Whether the grammar accepts <paramref name="token"/> next: llama.cpp aborts when it is fed one it does not.</summary>
    private static bool Allows(SafeLlamaSamplerHandle grammar, int token)
    {
        var probe = new LlamaTokenData { Id = token, Logit = 1f };
        var single = new LlamaTokenDataArray { Data = &probe, Size = 1, Selected = -1 };
        NativeMethods.llama_sampler_apply(grammar, &single);
        return !float.IsNegativeInfinity(single.Data[0].Logit);
    }

    /// <summary>Passes a token sampled without a grammar to the trigger watch; a watch that can no longer fire goes.</summary>
    private void Watch(int token)
    {
        if (_watch is not { Fired: false } watch)
        {
            return;
        }

        Span<byte> buffer = stackalloc byte[256];
        int length;
        fixed (byte* p = buffer)
        {
            length = NativeMethods.llama_token_to_piece(_vocab, token, p, buffer.Length, 0, watch.Trigger.RenderSpecialTokens);
        }

        if (length < 0)
        {
            buffer = new byte[-length];
            fixed (byte* p = buffer)
            {
                length = NativeMethods.llama_token_to_piece(_vocab, token, p, buffer.Length, 0, watch.Trigger.RenderSpecialTokens);
            }
        }

        watch.Push(token, buffer[..Math.Max(length, 0)]);
        if (watch.Ended)
        {
            _watch = null;
        }
    }

    /// <summary>
    /// The trigger fired: the grammar starts where the marker's token starts and is fed the tokens written since.
    /// When it refuses one (the model wrote past the marker what no call allows), the output stays free, to be read
    /// as text.
    /// </summary>
    private void StartGrammar()
    {
        var watch = _watch!;
        _watch = null;
        if (watch.Start() is not { } start)
        {
            return;
        }

        var (prefix, tokens) = start;
        SafeLlamaSamplerHandle grammar;
        try
        {
            grammar = SamplerChainFactory.CreateGrammar(_vocab, watch.Trigger.WithPrefix(prefix));
        }
        catch (GrammarRefusedException)
        {
            return;
        }

        foreach (var token in tokens)
        {
            if (!Allows(grammar, token))
            {
                grammar.Dispose();
                return;
            }

            NativeMethods.llama_sampler_accept(grammar, token);
        }

        _grammar = grammar;
    }

    private int Choose(float* logits, bool constrain)
    {
        _candidates ??= new LlamaTokenData[_vocabularySize];
        for (var i = 0; i < _candidates.Length; i++)
        {
            _candidates[i] = new LlamaTokenData { Id = i, Logit = logits[i] };
        }

        fixed (LlamaTokenData* data = _candidates)
        {
            var array = new LlamaTokenDataArray { Data = data, Size = (nuint)_candidates.Length, Selected = -1 };
            if (constrain)
            {
                NativeMethods.llama_sampler_apply(_grammar!, &array);
            }

            NativeMethods.llama_sampler_apply(_chain, &array);
            if (array.Selected < 0 || array.Selected >= (long)array.Size)
            {
                throw new InferenceException("The sampler chain selected no token.");
            }

            // A token the grammar refused would abort llama.cpp on accept: fail this request instead.
            if (constrain && float.IsNegativeInfinity(array.Data[array.Selected].Logit))
            {
                throw new InferenceException("The output grammar allows no token of this model's vocabulary here.");
            }

            return array.Data[array.Selected].Id;
        }
    }

    public void Dispose()
    {
        _grammar?.Dispose();
        _chain.Dispose();
    }
}
