using System.Reflection;
using System.Runtime.InteropServices;
using EdgeServer.Inference.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Native;

/// <summary>
/// Finds and loads llama.cpp's shared libraries explicitly (never from a static constructor) and
/// resolves the binding's logical library names to them.
/// </summary>
internal static partial class NativeLibraryLoader
{
    private static readonly string[] LlamaFileNames = ["libllama.v0.5.0.so", "libllama.so", "libllama.so.0"];
    private static readonly string[] GgmlFileNames = ["libggml.v0.5.0.so", "libggml.so", "libggml.so.0"];

    private static IntPtr s_llama;
    private static IntPtr s_ggml;

    /// <summary>The bundled directory for this process's architecture: runtimes/&lt;rid&gt;/native beside the app.</summary>
    public static string BundledDirectory
    {
        get
        {
            var rid = RuntimeInformation.ProcessArchitecture switch
            {
                Architecture.X64 => "linux-x64",
                Architecture.Arm64 => "linux-arm64",
                var other => $"linux-{other.ToString().ToLowerInvariant()}",
            };
            return Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native");
        }
    }

    /// <summary>Loads libllama and libggml from <paramref name="directory"/> and installs the resolver.</summary>
    public static void Load(string directory, ILogger logger)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new NativeLibraryException($"EdgeServer's bundled llama.cpp libraries are for Linux; this is {RuntimeInformation.OSDescription}. Set EdgeServer:Runtime:NativeDirectory to a llama.cpp build for this system.");
        }

        if (!Directory.Exists(directory))
        {
            throw new NativeLibraryException($"The llama.cpp native directory '{directory}' does not exist. Build the project (dotnet build) so the bundled libraries are installed, or set EdgeServer:Runtime:NativeDirectory to a folder holding libllama.so and libggml.so.");
        }

        s_ggml = LoadFirst(directory, GgmlFileNames, logger);
        s_llama = LoadFirst(directory, LlamaFileNames, logger);
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryLoader).Assembly, Resolve);
    }

    private static IntPtr LoadFirst(string directory, string[] names, ILogger logger)
    {
        var errors = new List<string>();
        foreach (var name in names)
        {
            var path = Path.Combine(directory, name);
            if (!File.Exists(path))
            {
                LogProbe(logger, path, "absent");
                continue;
            }

            if (NativeLibrary.TryLoad(path, out var handle))
            {
                LogProbe(logger, path, "loaded");
                return handle;
            }

            // TryLoad hides dlerror(); Load reports it.
            try
            {
                return NativeLibrary.Load(path);
            }
            catch (DllNotFoundException e)
            {
                LogProbe(logger, path, e.Message);
                errors.Add($"{path}: {e.Message}");
            }
        }

        var tried = string.Join(", ", names.Select(n => Path.Combine(directory, n)));
        throw new NativeLibraryException(errors.Count == 0
            ? $"No llama.cpp library found; tried {tried}."
            : $"A llama.cpp library was found but could not be loaded: {string.Join("; ", errors)}");
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) => libraryName switch
    {
        NativeMethods.Llama => s_llama,
        NativeMethods.Ggml => s_ggml,
        _ => IntPtr.Zero,
    };

    [LoggerMessage(EventId = EventIds.NativeLibraryProbe, Level = LogLevel.Debug, Message = "Native library probe {Path}: {Outcome}")]
    private static partial void LogProbe(ILogger logger, string path, string outcome);
}
