using System.Runtime.InteropServices;

namespace EdgeServer.Inference.Native;

/// <summary>
/// Bindings to llama.cpp's C API (include/llama.h, release v0.5.0). Split by area into partial files.
/// Library names are logical ("llama", "ggml"); <see cref="NativeLibraryLoader"/> maps them to files.
/// </summary>
internal static unsafe partial class NativeMethods
{
    internal const string Llama = "llama";
    internal const string Ggml = "ggml";

    [LibraryImport(Llama)]
    internal static partial byte* llama_version();

    [LibraryImport(Llama)]
    internal static partial byte* llama_print_system_info();

    [LibraryImport(Llama)]
    internal static partial void llama_backend_init();

    [LibraryImport(Llama)]
    internal static partial LlamaModelParams llama_model_default_params();

    [LibraryImport(Llama)]
    internal static partial LlamaContextParams llama_context_default_params();

    [LibraryImport(Llama)]
    internal static partial LlamaSamplerChainParams llama_sampler_chain_default_params();

    [LibraryImport(Llama)]
    internal static partial void llama_log_set(delegate* unmanaged[Cdecl]<GgmlLogLevel, byte*, IntPtr, void> callback, IntPtr userData);

    [LibraryImport(Ggml, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial void ggml_backend_load_all_from_path(string dirPath);

    [LibraryImport(Ggml)]
    internal static partial nuint ggml_backend_dev_count();

    [LibraryImport(Ggml)]
    internal static partial IntPtr ggml_backend_dev_get(nuint index);

    [LibraryImport(Ggml)]
    internal static partial byte* ggml_backend_dev_name(IntPtr device);

    [LibraryImport(Ggml)]
    internal static partial byte* ggml_backend_dev_description(IntPtr device);

    [LibraryImport(Ggml)]
    internal static partial void ggml_log_set(delegate* unmanaged[Cdecl]<GgmlLogLevel, byte*, IntPtr, void> callback, IntPtr userData);

    internal static string? PtrToString(byte* p) => p == null ? null : Marshal.PtrToStringUTF8((IntPtr)p);
}
