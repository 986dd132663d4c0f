using System.Runtime.InteropServices;
using System.Text;
using EdgeServer.Inference.Native;

namespace EdgeServer.Inference.Models;

/// <summary>A loaded llama.cpp model: weights, vocabulary, tokenizer and chat template.</summary>
public sealed class LlamaModel : IDisposable
{
    /// <summary>What a model without a chat template is served with, as shown in its info.</summary>
    public const string NoTemplateFallback = "chatml (fallback: the model has no chat template)";
    private readonly SafeLlamaModelHandle _handle;
    private readonly IntPtr _vocab;
    private readonly int[] _prefix;
    private readonly int[] _suffix;

    private LlamaModel(SafeLlamaModelHandle handle, string path)
    {
        _handle = handle;
        Path = path;
        _vocab = NativeMethods.llama_model_get_vocab(handle);
        if (_vocab == IntPtr.Zero)
        {
            throw new ModelLoadException(path, "the model has no vocabulary");
        }

        VocabularySize = NativeMethods.llama_vocab_n_tokens(_vocab);
        TrainingContextLength = NativeMethods.llama_model_n_ctx_train(handle);
        SizeBytes = NativeMethods.llama_model_size(handle);
        ParameterCount = NativeMethods.llama_model_n_params(handle);
        Description = ReadDescription(handle);
        Template = CreateTemplate(handle, _vocab);
        SpecialTokens = ReadSpecialTokens(_vocab, VocabularySize);
        var affixes = Tokenize(string.Empty, addSpecial: true, parseSpecial: false);
        var eosAdded = NativeMethods.llama_vocab_get_add_eos(_vocab) && affixes.Length > 0 && affixes[^1] == NativeMethods.llama_vocab_eos(_vocab);
        _prefix = eosAdded ? affixes[..^1] : affixes;
        _suffix = eosAdded ? affixes[^1..] : [];
    }

    public string Path { get; }

    public int VocabularySize { get; }

    public int TrainingContextLength { get; }

    public ulong SizeBytes { get; }

    public ulong ParameterCount { get; }

    public string Description { get; }

    /// <summary>"model" when the GGUF's own template is used; otherwise the fallback and why.</summary>
    public string ChatTemplateName => Template.Name;

    /// <summary>Renders conversations, tools included, into prompts.</summary>
    public Chat.ChatTemplate Template { get; }

    /// <summary>The vocabulary's control, user-defined and unknown tokens, read once at load.</summary>
    internal Text.SpecialTokens SpecialTokens { get; }

    internal SafeLlamaModelHandle Handle => _handle;

    internal IntPtr Vocab => _vocab;

    /// <summary>How its weights were loaded: mapped or read, repacked or not.</summary>
    public WeightLoading Loading { get; private set; } = new(Mmap: false, Repack: false, RepackedTensors: 0);

    /// <summary>
    /// Loads a GGUF file on the CPU, mapped or read as <see cref="WeightLoading.Plan"/> decides for the settings.
    /// Throws <see cref="ModelLoadException"/> with llama.cpp's verdict.
    /// </summary>
    public static LlamaModel Load(string path, MmapMode mmap = MmapMode.Auto, bool repack = true)
    {
        var runtime = LlamaRuntime.Current ?? throw new InvalidOperationException("LlamaRuntime.Initialize must be called before loading a model.");
        WeightLoading loading;
        try
        {
            loading = WeightLoading.Plan(path, mmap, repack, runtime.CpuFeatures);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelLoadException(path, e.Message);
        }

        var model = Open(path, loading.Mmap ? LlamaLoadMode.Mmap : LlamaLoadMode.None, withoutWeights: false, loading.Repack);
        model.Loading = loading;
        return model;
    }

    /// <summary>
    /// Puts a model file through what serving it does, short of reading its weights: llama.cpp reads the metadata,
    /// vocabulary and tensor table (no_alloc), the vocabulary tokenizes and renders every kind of text and every
    /// token, and the generation and embedding contexts the server would create are planned (their compute graphs
    /// are built; nothing is allocated). This is where llama.cpp asserts on a file, so the server runs it in a
    /// child process (<see cref="ModelProbeChild"/>). Throws <see cref="ModelLoadException"/> when llama.cpp refuses.
    /// </summary>
    public static void Probe(string path, Scheduling.SchedulerOptions scheduler)
    {
        // llama.cpp plans without allocating only when it does not map the file (it asserts otherwise).
        using var model = Open(path, LlamaLoadMode.None, withoutWeights: true, repack: true);
        model.ExerciseVocabulary();
        model.PlanContexts(scheduler);
    }

    private static LlamaModel Open(string path, LlamaLoadMode mode, bool withoutWeights, bool repack)
    {
        var handle = LoadHandle(path, mode, withoutWeights, repack);
        try
        {
            if (!NativeMethods.llama_model_has_decoder(handle))
            {
                throw new ModelLoadException(path, "the model has no decoder, so it cannot generate text");
            }

            return new LlamaModel(handle, path);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static SafeLlamaModelHandle LoadHandle(string path, LlamaLoadMode mode, bool withoutWeights, bool repack)
    {
        if (LlamaRuntime.Current is null)
        {
            throw new InvalidOperationException("LlamaRuntime.Initialize must be called before loading a model.");
        }

        var parameters = NativeMethods.llama_model_default_params();
        parameters.NGpuLayers = 0;
        parameters.NoAlloc = (byte)(withoutWeights ? 1 : 0);
        parameters.LoadMode = (int)mode;
        parameters.UseExtraBufts = (byte)(repack ? 1 : 0);
        LlamaLog.TakeLastError();
        var handle = NativeMethods.llama_model_load_from_file(path, parameters);
        if (handle.IsInvalid)
        {
            handle.Dispose();
            var reason = LlamaLog.TakeLastError();
            throw new ModelLoadException(path, reason is null
                ? "llama.cpp refused the file (unsupported architecture, missing tensors or not enough memory)"
                : $"llama.cpp refused it: {reason}");
        }

        return handle;
    }

    /// <summary>Text of every kind a client can send, then each token alone, as prompts and replies use them.</summary>
    private unsafe void ExerciseVocabulary()
    {
        var sample = string.Concat(Enumerable.Range(1, 255).Select(c => (char)c))
            + " € 中文 ελληνικά 🙂 \u200b <s></s><|im_start|>user<|im_end|> [INST] <unk>";
        foreach (var special in new[] { false, true })
        {
            Detokenize(Tokenize(sample, addSpecial: true, parseSpecial: special));
        }

        var buffer = new byte[256];
        for (var token = 0; token < VocabularySize; token++)
        {
            Render(token, special: false, ref buffer);
            Render(token, special: true, ref buffer);
        }

        void Render(int token, bool special, ref byte[] buffer)
        {
            while (true)
            {
                int n;
                fixed (byte* p = buffer)
                {
                    n = NativeMethods.llama_token_to_piece(_vocab, token, p, buffer.Length, 0, special);
                }

                if (n >= 0)
                {
                    return;
                }

                buffer = new byte[-n];
            }
        }
    }

    /// <summary>Builds the contexts <see cref="Scheduling.ModelScheduler"/> and <see cref="Embedder"/> create, without memory.</summary>
    private void PlanContexts(Scheduling.SchedulerOptions scheduler)
    {
        var generation = Scheduling.ContextParameters.Generation(scheduler, TrainingContextLength, threads: 1);
        using (var context = NativeMethods.llama_init_from_model(_handle, generation))
        {
            if (context.IsInvalid)
            {
                throw new ModelLoadException(Path, $"llama.cpp could not plan a context of {generation.NCtx} tokens for {scheduler.Slots} slots: {LlamaLog.TakeLastError() ?? "no reason given"}");
            }
        }

        // Embeddings are optional: a model whose embedding context llama.cpp refuses still generates.
        foreach (var pooling in new[] { -1, (int)EmbeddingPooling.Mean })
        {
            var embedding = Scheduling.ContextParameters.Embedding(Scheduling.ContextParameters.ContextPerSlot(scheduler, TrainingContextLength), threads: 1, pooling);
            using var context = NativeMethods.llama_init_from_model(_handle, embedding);
            if (context.IsInvalid || (EmbeddingPooling)NativeMethods.llama_pooling_type(context) is not (EmbeddingPooling.None or EmbeddingPooling.Rank))
            {
                break; // the Embedder falls back to mean pooling only for these
            }
        }

        LlamaLog.TakeLastError();
    }

    public bool IsEndOfGeneration(int token) => NativeMethods.llama_vocab_is_eog(_vocab, token);

    /// <summary>Tokenizes UTF-8 text. <paramref name="addSpecial"/> adds BOS where the model wants it.</summary>
    public unsafe int[] Tokenize(string text, bool addSpecial, bool parseSpecial)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var (tokens, n) = CallWithGrowingBuffer<byte, int>(bytes, bytes.Length + 8,
            (p, length, t, capacity) => NativeMethods.llama_tokenize(_vocab, p, length, t, capacity, addSpecial, parseSpecial),
            "The text is too long to tokenize.");
        return n == tokens.Length ? tokens : tokens[..n];
    }

    /// <summary>
    /// Tokenizes <paramref name="text"/> as <see cref="Tokenize"/> with BOS and special-token parsing does, except that
    /// each raw stretch between special tokens goes through <paramref name="rawText"/> first and is then tokenized
    /// without special-token parsing. llama.cpp tokenizes each such stretch on its own too (an SPM vocabulary
    /// prefixes it with a space as it follows a special token), so with <paramref name="rawText"/> the identity the
    /// tokens are the same as <see cref="Tokenize"/>'s.
    /// </summary>
    internal int[] TokenizeAtSpecialTokens(string text, Func<string, string> rawText)
    {
        var tokens = new List<int>(text.Length / 2 + 8);
        tokens.AddRange(_prefix);
        foreach (var fragment in SpecialTokens.Partition(text))
        {
            if (fragment.IsToken)
            {
                tokens.Add(fragment.Token);
            }
            else
            {
                tokens.AddRange(Tokenize(rawText(text.Substring(fragment.Start, fragment.Length)), addSpecial: false, parseSpecial: false));
            }
        }

        tokens.AddRange(_suffix);
        return [.. tokens];
    }

    /// <summary>The bytes a token stands for (may be part of a UTF-8 character). Control tokens give nothing.</summary>
    public unsafe int TokenToPiece(int token, Span<byte> buffer, bool special = false)
    {
        fixed (byte* p = buffer)
        {
            var n = NativeMethods.llama_token_to_piece(_vocab, token, p, buffer.Length, 0, special);
            if (n < 0)
            {
                throw new InferenceException($"Token {token} needs {-n} bytes; the buffer has {buffer.Length}.");
            }

            return n;
        }
    }

    public unsafe string Detokenize(ReadOnlySpan<int> tokens)
    {
        var (buffer, n) = CallWithGrowingBuffer<int, byte>(tokens, Math.Max(16, tokens.Length * 8),
            (t, count, b, capacity) => NativeMethods.llama_detokenize(_vocab, t, count, b, capacity, false, false),
            "The tokens are too long to detokenize.");
        return Encoding.UTF8.GetString(buffer, 0, n);
    }

    public void Dispose() => _handle.Dispose();

    /// <summary>
    /// llama.cpp's contract for llama_tokenize and llama_detokenize: the call returns how many elements it wrote, or
    /// minus how many it needs (int.MinValue when that is more than an int counts). Calls again with a buffer of
    /// the size asked for until one is large enough.
    /// </summary>
    private static unsafe (TOut[] Buffer, int Length) CallWithGrowingBuffer<TIn, TOut>(ReadOnlySpan<TIn> input, int capacity,
        SizedCall<TIn, TOut> call, string tooLong)
        where TIn : unmanaged
        where TOut : unmanaged
    {
        fixed (TIn* i = input)
        {
            while (true)
            {
                var buffer = new TOut[capacity];
                int n;
                fixed (TOut* o = buffer)
                {
                    n = call(i, input.Length, o, capacity);
                }

                if (n >= 0)
                {
                    return (buffer, n);
                }

                if (n == int.MinValue)
                {
                    throw new InferenceException(tooLong);
                }

                capacity = -n;
            }
        }
    }

    private static unsafe string? TryApplyTemplate(byte[] templateUtf8, IReadOnlyList<ChatMessage> messages, bool addAssistant)
    {
        var handles = new List<GCHandle>(messages.Count * 2);
        try
        {
            var chat = new LlamaChatMessage[messages.Count];
            var totalLength = 0;
            for (var i = 0; i < messages.Count; i++)
            {
                var role = Utf8Z(messages[i].Role);
                var content = Utf8Z(messages[i].Content ?? string.Empty);
                totalLength += role.Length + content.Length;
                var hr = GCHandle.Alloc(role, GCHandleType.Pinned);
                handles.Add(hr);
                var hc = GCHandle.Alloc(content, GCHandleType.Pinned);
                handles.Add(hc);
                chat[i] = new LlamaChatMessage { Role = (byte*)hr.AddrOfPinnedObject(), Content = (byte*)hc.AddrOfPinnedObject() };
            }

            var capacity = Math.Max(256, totalLength * 2 + 256);
            while (true)
            {
                var buffer = new byte[capacity];
                int n;
                fixed (byte* tmpl = templateUtf8)
                fixed (LlamaChatMessage* c = chat)
                fixed (byte* b = buffer)
                {
                    n = NativeMethods.llama_chat_apply_template(tmpl, c, (nuint)chat.Length, addAssistant, b, capacity);
                }

                if (n < 0)
                {
                    return null;
                }

                if (n <= capacity)
                {
                    return Encoding.UTF8.GetString(buffer, 0, n);
                }

                capacity = n;
            }
        }
        finally
        {
            foreach (var h in handles)
            {
                h.Free();
            }
        }
    }

    private static unsafe Chat.ChatTemplate CreateTemplate(SafeLlamaModelHandle handle, IntPtr vocab)
    {
        var source = NativeMethods.PtrToString(NativeMethods.llama_model_chat_template(handle, null));
        string TokenText(int token) => token < 0 ? string.Empty : NativeMethods.PtrToString(NativeMethods.llama_vocab_get_text(vocab, token)) ?? string.Empty;
        Func<IReadOnlyList<ChatMessage>, string?>? builtin = null;
        if (!string.IsNullOrEmpty(source))
        {
            var utf8 = Utf8Z(source);
            builtin = messages => TryApplyTemplate(utf8, messages, addAssistant: true);
        }

        return Chat.ChatTemplate.Create(source, builtin, TokenText(NativeMethods.llama_vocab_bos(vocab)), TokenText(NativeMethods.llama_vocab_eos(vocab)),
            NativeMethods.llama_vocab_get_add_bos(vocab));
    }

    private static unsafe Text.SpecialTokens ReadSpecialTokens(IntPtr vocab, int count)
    {
        const LlamaTokenAttr special = LlamaTokenAttr.Control | LlamaTokenAttr.UserDefined | LlamaTokenAttr.Unknown;
        var tokens = new List<(int, string, LlamaTokenAttr)>();
        for (var id = 0; id < count; id++)
        {
            var attr = NativeMethods.llama_vocab_get_attr(vocab, id);
            if ((attr & special) != 0)
            {
                tokens.Add((id, NativeMethods.PtrToString(NativeMethods.llama_vocab_get_text(vocab, id)) ?? string.Empty, attr));
            }
        }

        return new Text.SpecialTokens(tokens);
    }

    private static unsafe string ReadDescription(SafeLlamaModelHandle handle)
    {
        var buffer = stackalloc byte[256];
        var n = NativeMethods.llama_model_desc(handle, buffer, 256);
        return n > 0 ? Encoding.UTF8.GetString(buffer, Math.Min(n, 255)) : "unknown";
    }

    private unsafe delegate int SizedCall<TIn, TOut>(TIn* input, int inputLength, TOut* output, int capacity)
        where TIn : unmanaged
        where TOut : unmanaged;

    private static byte[] Utf8Z(string s)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }
}
