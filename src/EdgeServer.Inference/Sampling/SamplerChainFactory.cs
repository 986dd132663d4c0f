using System.Runtime.InteropServices;
using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Sampling;

/// <summary>Builds the llama_sampler chain for <see cref="SamplingParameters"/> that <see cref="GenerationRequestValidator"/> has checked.</summary>
internal static class SamplerChainFactory
{
    /// <summary>logit bias → penalties → top-k → top-p → min-p → temperature → draw; temperature 0 is greedy.</summary>
    public static unsafe SafeLlamaSamplerHandle Create(SamplingParameters p, IReadOnlyDictionary<int, float> logitBias, int vocabularySize, int contextLength)
    {
        var chainParams = NativeMethods.llama_sampler_chain_default_params();
        chainParams.NoPerf = 1;
        var chain = NativeMethods.llama_sampler_chain_init(chainParams);
        if (chain.IsInvalid)
        {
            chain.Dispose();
            throw new InferenceException("llama_sampler_chain_init failed.");
        }

        try
        {
            if (logitBias.Count > 0)
            {
                var biases = logitBias.Select(kv => new LlamaLogitBias { Token = kv.Key, Bias = kv.Value }).ToArray();
                fixed (LlamaLogitBias* b = biases)
                {
                    Add(chain, NativeMethods.llama_sampler_init_logit_bias(vocabularySize, biases.Length, b), "logit_bias");
                }
            }

            var penalize = p.RepeatPenalty != 1f || p.PresencePenalty != 0f || p.FrequencyPenalty != 0f;
            if (penalize && p.RepeatLastN != 0)
            {
                var lastN = p.RepeatLastN == -1 ? contextLength : p.RepeatLastN;
                Add(chain, NativeMethods.llama_sampler_init_penalties(vocabularySize, lastN, p.RepeatPenalty, p.FrequencyPenalty, p.PresencePenalty), "penalties");
            }

            if (p.Temperature <= 0f)
            {
                Add(chain, NativeMethods.llama_sampler_init_greedy(), "greedy");
                return chain;
            }

            if (p.TopK > 0)
            {
                Add(chain, NativeMethods.llama_sampler_init_top_k(p.TopK), "top_k");
            }

            if (p.TopP < 1f)
            {
                Add(chain, NativeMethods.llama_sampler_init_top_p(p.TopP, 1), "top_p");
            }

            if (p.MinP > 0f)
            {
                Add(chain, NativeMethods.llama_sampler_init_min_p(p.MinP, 1), "min_p");
            }

            Add(chain, NativeMethods.llama_sampler_init_temp(p.Temperature), "temp");
            Add(chain, NativeMethods.llama_sampler_init_dist(p.Seed ?? (uint)Random.Shared.Next()), "dist");
            return chain;
        }
        catch
        {
            chain.Dispose();
            throw;
        }
    }

    /// <summary>A grammar sampler for GBNF text whose start rule is "root".</summary>
    public static SafeLlamaSamplerHandle CreateGrammar(IntPtr vocab, string grammar)
    {
        LlamaLog.TakeLastError();
        var sampler = NativeMethods.llama_sampler_init_grammar(vocab, grammar, "root");
        if (sampler == IntPtr.Zero)
        {
            throw new GrammarRefusedException(LlamaLog.TakeLastError());
        }

        var handle = new SafeLlamaSamplerHandle();
        Marshal.InitHandle(handle, sampler);
        return handle;
    }

    private static void Add(SafeLlamaSamplerHandle chain, IntPtr sampler, string name)
    {
        if (sampler == IntPtr.Zero)
        {
            throw new InferenceException($"llama.cpp could not create the {name} sampler.");
        }

        NativeMethods.llama_sampler_chain_add(chain, sampler);
    }
}

/// <summary>llama.cpp's grammar parser refused a grammar derived from a request (left recursion, say).</summary>
internal sealed class GrammarRefusedException(string? reason)
    : InferenceException(reason is null ? "llama.cpp refused the grammar." : $"llama.cpp refused the grammar: {reason}")
{
    public string? Reason { get; } = reason;
}
