using System.Runtime.InteropServices;
using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Sampling;

/// <summary>Validates <see cref="SamplingParameters"/> and builds the matching llama_sampler chain.</summary>
internal static class SamplerChainFactory
{
    /// <summary>Throws <see cref="InvalidGenerationParameterException"/> for a value outside its range.</summary>
    public static void Validate(SamplingParameters p)
    {
        static void Check(bool ok, string name, string message)
        {
            if (!ok)
            {
                throw new InvalidGenerationParameterException(name, message);
            }
        }

        Check(float.IsFinite(p.Temperature) && p.Temperature is >= 0 and <= 2, "temperature", $"temperature must be between 0 and 2; got {p.Temperature}.");
        Check(float.IsFinite(p.TopP) && p.TopP is > 0 and <= 1, "top_p", $"top_p must be greater than 0 and at most 1; got {p.TopP}.");
        Check(p.TopK >= 0, "top_k", $"top_k must be 0 (off) or positive; got {p.TopK}.");
        Check(float.IsFinite(p.MinP) && p.MinP is >= 0 and <= 1, "min_p", $"min_p must be between 0 and 1; got {p.MinP}.");
        Check(float.IsFinite(p.PresencePenalty) && p.PresencePenalty is >= -2 and <= 2, "presence_penalty", $"presence_penalty must be between -2 and 2; got {p.PresencePenalty}.");
        Check(float.IsFinite(p.FrequencyPenalty) && p.FrequencyPenalty is >= -2 and <= 2, "frequency_penalty", $"frequency_penalty must be between -2 and 2; got {p.FrequencyPenalty}.");
        Check(float.IsFinite(p.RepeatPenalty) && p.RepeatPenalty is > 0 and <= 10, "repeat_penalty", $"repeat_penalty must be greater than 0 and at most 10; got {p.RepeatPenalty}.");
        Check(p.RepeatLastN >= -1, "repeat_last_n", $"repeat_last_n must be -1 (whole context), 0 (off) or positive; got {p.RepeatLastN}.");
    }

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
