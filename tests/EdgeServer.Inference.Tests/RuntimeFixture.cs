using EdgeServer.Inference;
using EdgeServer.Inference.Native;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests;

/// <summary>Initialises the process-wide llama.cpp runtime from the bundled libraries.</summary>
public static class TestRuntime
{
    private static readonly Lazy<LlamaRuntimeInfo> s_info = new(() => LlamaRuntime.Initialize(null, NullLogger.Instance));

    public static LlamaRuntimeInfo Ensure() => s_info.Value;
}
