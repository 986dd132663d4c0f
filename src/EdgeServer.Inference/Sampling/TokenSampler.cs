using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Sampling;

/// <summary>
/// Picks one sequence's next token: its sampler chain, and, for constrained output, a grammar. The grammar is
/// not run over the whole vocabulary every step (tens of milliseconds on a 128k vocabulary): the chain picks a
/// token, the grammar checks that one token, and only when it refuses is the grammar applied to every
/// candidate and the choice made again (as llama.cpp's own common sampler does).
/// Built on the request's thread before it is queued, so a grammar llama.cpp refuses is that request's error;
/// then used by one thread at a time (the decode loop, or the worker it hands a grammar step to).
/// </summary>
internal sealed unsafe class TokenSampler : IDisposable
{
    private readonly SafeLlamaSamplerHandle _chain;
    private readonly SafeLlamaSamplerHandle? _grammar;
    private readonly int _vocabularySize;
    private LlamaTokenData[]? _candidates;

    /// <summary>Throws <see cref="GrammarRefusedException"/> when llama.cpp refuses <paramref name="grammar"/>.</summary>
    public TokenSampler(SamplingParameters p, IReadOnlyDictionary<int, float> logitBias, string? grammar, IntPtr vocab, int vocabularySize, int contextLength)
    {
        _vocabularySize = vocabularySize;
        _chain = SamplerChainFactory.Create(p, logitBias, vocabularySize, contextLength);
        try
        {
            _grammar = grammar is null ? null : SamplerChainFactory.CreateGrammar(vocab, grammar);
        }
        catch
        {
            _chain.Dispose();
            throw;
        }
    }

    /// <summary>Whether a grammar constrains this sequence; its steps can take long, so they run off the decode thread.</summary>
    public bool HasGrammar => _grammar is not null;

    /// <summary>Samples from the context's logits of <paramref name="batchIndex"/> (decode thread).</summary>
    public int Sample(SafeLlamaContextHandle context, int batchIndex)
    {
        if (_grammar is null)
        {
            return NativeMethods.llama_sampler_sample(_chain, context, batchIndex);
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
        var token = Choose(logits, constrain: false);
        if (_grammar is null)
        {
            NativeMethods.llama_sampler_accept(_chain, token);
            return token;
        }

        var probe = new LlamaTokenData { Id = token, Logit = 1f };
        var single = new LlamaTokenDataArray { Data = &probe, Size = 1, Selected = -1 };
        NativeMethods.llama_sampler_apply(_grammar, &single);
        if (float.IsNegativeInfinity(single.Data[0].Logit))
        {
            token = Choose(logits, constrain: true);
        }

        NativeMethods.llama_sampler_accept(_grammar, token);
        NativeMethods.llama_sampler_accept(_chain, token);
        return token;
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
