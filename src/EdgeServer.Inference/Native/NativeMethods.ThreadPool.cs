using System.Runtime.InteropServices;

namespace EdgeServer.Inference.Native;

internal static unsafe partial class NativeMethods
{
    [LibraryImport(Ggml, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial IntPtr ggml_backend_reg_by_name(string name);

    [LibraryImport(Ggml, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial IntPtr ggml_backend_reg_get_proc_address(IntPtr reg, string name);

    /// <summary>In libggml-base, reached through libggml's handle (its dependency).</summary>
    [LibraryImport(Ggml)]
    internal static partial void ggml_threadpool_params_init(GgmlThreadPoolParams* parameters, int nThreads);

    [LibraryImport(Llama)]
    internal static partial void llama_attach_threadpool(SafeLlamaContextHandle context, SafeGgmlThreadPoolHandle threadpool, SafeGgmlThreadPoolHandle threadpoolBatch);

    [LibraryImport(Llama)]
    internal static partial void llama_detach_threadpool(SafeLlamaContextHandle context);

    [LibraryImport(Llama)]
    internal static partial void llama_set_n_threads(SafeLlamaContextHandle context, int nThreads, int nThreadsBatch);

    [LibraryImport(Llama)]
    internal static partial int llama_n_threads(SafeLlamaContextHandle context);

    [LibraryImport(Llama)]
    internal static partial int llama_n_threads_batch(SafeLlamaContextHandle context);
}

/// <summary>
/// ggml_threadpool_new and ggml_threadpool_free live in the CPU backend variant ggml loaded for this processor
/// (libggml-cpu-*.so), not in a library the binding links against: they are found through the backend
/// registry, as llama.cpp's own tools find them.
/// </summary>
internal static unsafe class GgmlThreadPoolApi
{
    private static readonly Lock s_gate = new();
    private static IntPtr s_new;
    private static IntPtr s_free;

    /// <summary>Makes a pool; IntPtr.Zero when ggml could not.</summary>
    public static IntPtr New(GgmlThreadPoolParams* parameters)
    {
        Resolve();
        return ((delegate* unmanaged[Cdecl]<GgmlThreadPoolParams*, IntPtr>)Volatile.Read(ref s_new))(parameters);
    }

    /// <summary>Resolved, since the pool was made by <see cref="New"/>.</summary>
    public static void Free(IntPtr pool) => ((delegate* unmanaged[Cdecl]<IntPtr, void>)Volatile.Read(ref s_free))(pool);

    private static void Resolve()
    {
        if (Volatile.Read(ref s_new) != IntPtr.Zero)
        {
            return;
        }

        lock (s_gate)
        {
            if (s_new != IntPtr.Zero)
            {
                return;
            }

            var directory = LlamaRuntime.Current?.LibraryDirectory ?? "(not loaded)";
            var reg = NativeMethods.ggml_backend_reg_by_name("CPU");
            if (reg == IntPtr.Zero)
            {
                throw new NativeLibraryException($"The llama.cpp libraries in '{directory}' registered no CPU backend, which EdgeServer's thread pools need. Use a build with the CPU backend (a libggml-cpu*.so beside libggml.so), or remove EdgeServer:Runtime:NativeDirectory to use the bundled one.");
            }

            var create = NativeMethods.ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
            var free = NativeMethods.ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
            if (create == IntPtr.Zero || free == IntPtr.Zero)
            {
                throw new NativeLibraryException($"The CPU backend of the llama.cpp libraries in '{directory}' does not offer ggml_threadpool_new/ggml_threadpool_free. Use a llama.cpp {LlamaRuntime.BindingVersion} build, or remove EdgeServer:Runtime:NativeDirectory to use the bundled one.");
            }

            Volatile.Write(ref s_free, free);
            Volatile.Write(ref s_new, create);
        }
    }
}
