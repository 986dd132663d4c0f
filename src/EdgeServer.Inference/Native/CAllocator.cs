using System.Runtime.InteropServices;

namespace EdgeServer.Inference.Native;

/// <summary>
/// The C library's allocator, which llama.cpp's buffers come from. A freed model's KV cache, compute and (when read
/// rather than mapped) weight buffers below glibc's mmap threshold, which glibc raises to 32 MiB after the first large
/// free, go back to malloc's arenas, not to the system: each load and unload then leaves the process a little
/// larger. glibc's malloc_trim returns the free pages of every arena. Other C libraries (musl on Alpine, bionic on
/// Android) have no malloc_trim: there trimming does nothing.
/// </summary>
internal static unsafe class CAllocator
{
    private static readonly delegate* unmanaged[Cdecl]<nuint, int> s_trim = Resolve();

    /// <summary>Whether this C library can give free heap memory back (glibc).</summary>
    public static bool CanTrim => s_trim is not null;

    /// <summary>Gives the free pages of malloc's arenas back to the system; true when any were.</summary>
    public static bool Trim() => s_trim is not null && s_trim(0) == 1;

    private static delegate* unmanaged[Cdecl]<nuint, int> Resolve()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out var libc))
        {
            return null;
        }

        // The handle stays open for the process's life: libc is never unloaded anyway.
        return NativeLibrary.TryGetExport(libc, "malloc_trim", out var trim) ? (delegate* unmanaged[Cdecl]<nuint, int>)trim : null;
    }
}
