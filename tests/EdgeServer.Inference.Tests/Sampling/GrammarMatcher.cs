using System.Text;
using System.Text.Json;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Sampling;
using EdgeServer.TestSupport;

namespace EdgeServer.Inference.Tests.Sampling;

/// <summary>
/// Asks llama.cpp's own grammar engine whether a text is a sentence of a grammar: the text is fed byte by byte as
/// the successor model's byte tokens, each checked before it is accepted (accepting a refused token would abort),
/// and the end of text must be allowed at the end. So tests see what sampling would allow, not what a converter
/// meant to write.
/// </summary>
public sealed class GrammarMatcher : IDisposable
{
    private readonly LlamaModel _model;

    public GrammarMatcher()
    {
        TestRuntime.Ensure();
        _model = LlamaModel.Load(SuccessorModel.SharedPath);
    }

    public void Dispose() => _model.Dispose();

    public static string Grammar(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema);
    }

    public static UnsupportedSchemaException Refused(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        return Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaGrammar.FromSchema(doc.RootElement, GenerationField.ResponseFormatSchema));
    }

    /// <summary>A compiled grammar, to check many texts against.</summary>
    public Compiled Compile(string grammar) => new(_model.Vocab, grammar);

    public bool Accepts(string grammar, string text)
    {
        var compiled = Compile(grammar);
        return compiled.Accepts(text);
    }

    public sealed class Compiled(IntPtr vocab, string grammar)
    {
        public string Text { get; } = grammar;

        public unsafe bool Accepts(string text)
        {
            using var sampler = SamplerChainFactory.CreateGrammar(vocab, Text);
            foreach (var b in Encoding.UTF8.GetBytes(text))
            {
                var token = SpmVocabulary.ByteToken(b);
                if (!Allowed(sampler, token))
                {
                    return false;
                }

                NativeMethods.llama_sampler_accept(sampler, token);
            }

            return Allowed(sampler, SpmVocabulary.Eos);
        }

        private static unsafe bool Allowed(SafeLlamaSamplerHandle sampler, int token)
        {
            var probe = new LlamaTokenData { Id = token, Logit = 1f };
            var array = new LlamaTokenDataArray { Data = &probe, Size = 1, Selected = -1 };
            NativeMethods.llama_sampler_apply(sampler, &array);
            return !float.IsNegativeInfinity(array.Data[0].Logit);
        }
    }
}
