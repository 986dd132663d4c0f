using System.Globalization;
using EdgeServer.Inference.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Native;

/// <summary>What was loaded at start-up.</summary>
public sealed record LlamaRuntimeInfo(string Version, string LibraryDirectory, string SystemInfo, IReadOnlyList<string> Devices)
{
    /// <summary>The CPU backend's features from <see cref="SystemInfo"/>: "AVX2" for "AVX2 = 1", "SVE_CNT=32" for other values.</summary>
    public IReadOnlySet<string> CpuFeatures { get; } = ParseCpuFeatures(SystemInfo);

    /// <summary>Reads the "CPU : A = 1 | B = 1 | " part of llama_print_system_info (other backends follow as "NAME : ...").</summary>
    internal static IReadOnlySet<string> ParseCpuFeatures(string systemInfo)
    {
        var features = new HashSet<string>(StringComparer.Ordinal);
        var start = systemInfo.IndexOf("CPU : ", StringComparison.Ordinal);
        if (start < 0)
        {
            return features;
        }

        foreach (var item in systemInfo[(start + 6)..].Split('|', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = item.Split('=', 2, StringSplitOptions.TrimEntries);
            if (parts.Length != 2 || parts[0].Contains(' ', StringComparison.Ordinal))
            {
                break; // "NEXT : X" begins another backend's list
            }

            features.Add(parts[1] == "1" ? parts[0] : $"{parts[0]}={parts[1]}");
        }

        return features;
    }
}

/// <summary>
/// The process-wide llama.cpp runtime: loads the libraries, checks their version against the binding,
/// loads the CPU backends and initialises llama.cpp. Call <see cref="Initialize"/> once at start-up.
/// </summary>
public static partial class LlamaRuntime
{
    /// <summary>The llama.cpp release whose llama.h the binding mirrors.</summary>
    public const string BindingVersion = "0.5.0";

    private static readonly Lock s_gate = new();
    private static LlamaRuntimeInfo? s_info;

    public static LlamaRuntimeInfo? Current => s_info;

    /// <param name="nativeDirectory">A folder with libllama/libggml, or null for the bundled one.</param>
    public static LlamaRuntimeInfo Initialize(string? nativeDirectory, ILogger logger)
    {
        lock (s_gate)
        {
            var directory = Path.GetFullPath(string.IsNullOrWhiteSpace(nativeDirectory) ? NativeLibraryLoader.BundledDirectory : nativeDirectory);
            if (s_info is not null)
            {
                if (!string.Equals(s_info.LibraryDirectory, directory, StringComparison.Ordinal))
                {
                    throw new NativeLibraryException($"llama.cpp is already loaded from '{s_info.LibraryDirectory}' in this process; it cannot also be loaded from '{directory}'.");
                }

                return s_info;
            }

            NativeLibraryLoader.Load(directory, logger);
            var version = ReadVersion(directory);
            CheckVersion(version, directory);
            LlamaLog.Install(logger);

            // Backends first (the CPU variant best for this processor is picked by ggml), then llama.cpp.
            NativeMethods.ggml_backend_load_all_from_path(directory);
            var devices = ListDevices();
            if (devices.Count == 0)
            {
                throw new NativeLibraryException($"llama.cpp {version} in '{directory}' loaded no compute backend: no libggml-cpu-*.so suits this CPU or none is present.");
            }

            NativeMethods.llama_backend_init();
            string systemInfo;
            unsafe
            {
                systemInfo = NativeMethods.PtrToString(NativeMethods.llama_print_system_info())?.Trim() ?? string.Empty;
            }

            s_info = new LlamaRuntimeInfo(version, directory, systemInfo, devices);
            var deviceList = string.Join(", ", devices);
            LogLoaded(logger, version, directory, deviceList);
            return s_info;
        }
    }

    private static unsafe string ReadVersion(string directory)
    {
        try
        {
            return NativeMethods.PtrToString(NativeMethods.llama_version()) ?? "unknown";
        }
        catch (EntryPointNotFoundException e)
        {
            throw new NativeLibraryException($"The llama.cpp library in '{directory}' has no llama_version(): it is older than {BindingVersion}, which EdgeServer's binding requires.", e);
        }
    }

    internal static void CheckVersion(string version, string directory)
    {
        if (!SameRelease(version, BindingVersion))
        {
            throw new NativeLibraryException($"The llama.cpp library in '{directory}' is version {version}, but EdgeServer's binding is for {BindingVersion}. Their structures differ, so it is not used. Point EdgeServer:Runtime:NativeDirectory at a {BindingVersion} build, or remove the setting to use the bundled one.");
        }
    }

    /// <summary>Same major.minor: "0.5.0-dev" matches "0.5.0"; "0.4.2" does not.</summary>
    internal static bool SameRelease(string version, string expected)
    {
        static (int, int)? Parse(string v)
        {
            var parts = v.Split('.', '-');
            return parts.Length >= 2
                && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var minor)
                ? (major, minor) : null;
        }

        var a = Parse(version);
        return a is not null && a == Parse(expected);
    }

    private static unsafe List<string> ListDevices()
    {
        var list = new List<string>();
        var count = NativeMethods.ggml_backend_dev_count();
        for (nuint i = 0; i < count; i++)
        {
            var device = NativeMethods.ggml_backend_dev_get(i);
            var name = NativeMethods.PtrToString(NativeMethods.ggml_backend_dev_name(device));
            var description = NativeMethods.PtrToString(NativeMethods.ggml_backend_dev_description(device));
            list.Add($"{name} ({description})");
        }

        return list;
    }

    [LoggerMessage(EventId = EventIds.NativeRuntimeLoaded, Level = LogLevel.Information, Message = "llama.cpp {Version} loaded from {Directory}; devices: {Devices}")]
    private static partial void LogLoaded(ILogger logger, string version, string directory, string devices);
}
