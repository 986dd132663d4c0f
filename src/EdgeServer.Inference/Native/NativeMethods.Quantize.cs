using System.Runtime.InteropServices;

namespace EdgeServer.Inference.Native;

internal static unsafe partial class NativeMethods
{
    [LibraryImport(Llama)]
    internal static partial LlamaModelQuantizeParams llama_model_quantize_default_params();

    /// <summary>Returns 0 on success; on failure llama.cpp logs the reason (an error line) on the calling thread.</summary>
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial uint llama_model_quantize(string fnameInp, string fnameOut, LlamaModelQuantizeParams* parameters);
}

/// <summary>llama_model_quantize_params (llama.h, release v0.5.0).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LlamaModelQuantizeParams
{
    public int NThread;
    public int FType;
    public int OutputTensorType;
    public int TokenEmbeddingType;
    public byte AllowRequantize;
    public byte QuantizeOutputTensor;
    public byte OnlyCopy;
    public byte Pure;
    public byte KeepSplit;
    public byte DryRun;
    /// <summary>An array of <see cref="LlamaModelImatrixData"/> ended by one whose name is null.</summary>
    public IntPtr Imatrix;
    public IntPtr KvOverrides;
    public IntPtr TtOverrides;
    public IntPtr PruneLayers;
    public nuint MaxBufSize;
}

/// <summary>llama_model_imatrix_data: one tensor's importance values.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LlamaModelImatrixData
{
    public byte* Name;
    public float* Data;
    public nuint Size;
}
