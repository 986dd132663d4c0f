using System.Runtime.InteropServices;

namespace EdgeServer.Inference.Native;

internal static unsafe partial class NativeMethods
{
    [LibraryImport(Llama)]
    internal static partial SafeLlamaContextHandle llama_init_from_model(SafeLlamaModelHandle model, LlamaContextParams parameters);

    [LibraryImport(Llama)]
    internal static partial void llama_free(IntPtr context);

    [LibraryImport(Llama)]
    internal static partial uint llama_n_ctx_seq(SafeLlamaContextHandle context);

    [LibraryImport(Llama)]
    internal static partial uint llama_n_batch(SafeLlamaContextHandle context);

    [LibraryImport(Llama)]
    internal static partial LlamaBatch llama_batch_init(int nTokens, int embd, int nSeqMax);

    [LibraryImport(Llama)]
    internal static partial void llama_batch_free(LlamaBatch batch);

    [LibraryImport(Llama)]
    internal static partial int llama_decode(SafeLlamaContextHandle context, LlamaBatch batch);

    [LibraryImport(Llama)]
    internal static partial void llama_set_abort_callback(SafeLlamaContextHandle context, delegate* unmanaged[Cdecl]<IntPtr, byte> callback, IntPtr data);

    [LibraryImport(Llama)]
    internal static partial float* llama_get_logits_ith(SafeLlamaContextHandle context, int i);

    [LibraryImport(Llama)]
    internal static partial IntPtr llama_get_memory(SafeLlamaContextHandle context);

    [LibraryImport(Llama)]
    internal static partial void llama_memory_clear(IntPtr memory, [MarshalAs(UnmanagedType.U1)] bool data);

    [LibraryImport(Llama)]
    [return: MarshalAs(UnmanagedType.U1)]
    internal static partial bool llama_memory_seq_rm(IntPtr memory, int seqId, int p0, int p1);

    [LibraryImport(Llama)]
    internal static partial float* llama_get_embeddings_seq(SafeLlamaContextHandle context, int seqId);

    [LibraryImport(Llama)]
    internal static partial int llama_pooling_type(SafeLlamaContextHandle context);
}
