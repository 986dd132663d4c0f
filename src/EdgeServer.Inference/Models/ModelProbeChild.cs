using System.Globalization;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Scheduling;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Models;

/// <summary>
/// The probe child: <c>EdgeServer --probe-model PATH [--native-dir DIR] [--ctx-size N] [--slots N] [--batch N] [--kv-type F16|Q8_0|Q4_0] [--flash-attn Auto|On|Off]</c>
/// runs <see cref="LlamaModel.Probe"/> on one file and exits 0 when it can be served, <see cref="Refused"/> with
/// llama.cpp's reason on standard output when it refuses the file. If llama.cpp aborts, the child dies of a
/// signal; its last lines on standard error (llama.cpp's warnings and errors, the failed assertion) tell why.
/// </summary>
public static class ModelProbeChild
{
    public const string Switch = "--probe-model";

    /// <summary>Exit code: llama.cpp refused the file; the reason is on standard output.</summary>
    public const int Refused = 3;

    /// <summary>Exit code: the arguments are wrong.</summary>
    public const int Usage = 2;

    /// <summary>Exit code: the probe itself failed; the reason is the last line on standard error.</summary>
    public const int Failed = 1;

    /// <summary>The arguments after the probe command's own: what the child needs to probe as the engine serves.</summary>
    public static IReadOnlyList<string> Arguments(string path, SchedulerOptions s, string? nativeDirectory)
    {
        List<string> args =
        [
            Switch, path,
            "--ctx-size", s.ContextPerSlot.ToString(CultureInfo.InvariantCulture),
            "--slots", s.Slots.ToString(CultureInfo.InvariantCulture),
            "--batch", s.BatchSize.ToString(CultureInfo.InvariantCulture),
            "--kv-type", s.KvCacheType.ToString(),
            "--flash-attn", s.FlashAttention.ToString(),
        ];
        if (nativeDirectory is not null)
        {
            args.AddRange(["--native-dir", nativeDirectory]);
        }

        return args;
    }

    /// <summary>The child's entry point; <paramref name="args"/> start with <see cref="Switch"/>.</summary>
    public static int Run(string[] args)
    {
        string? path = null, nativeDirectory = null;
        var scheduler = new SchedulerOptions();
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            var value = args[i + 1];
            switch (args[i])
            {
                case Switch: path = value; break;
                case "--native-dir": nativeDirectory = value; break;
                case "--ctx-size" when int.TryParse(value, CultureInfo.InvariantCulture, out var n) && n > 0: scheduler = scheduler with { ContextPerSlot = n }; break;
                case "--slots" when int.TryParse(value, CultureInfo.InvariantCulture, out var n) && n > 0: scheduler = scheduler with { Slots = n }; break;
                case "--batch" when int.TryParse(value, CultureInfo.InvariantCulture, out var n) && n > 0: scheduler = scheduler with { BatchSize = n }; break;
                case "--kv-type" when Enum.TryParse<KvCacheType>(value, out var kv) && Enum.IsDefined(kv): scheduler = scheduler with { KvCacheType = kv }; break;
                case "--flash-attn" when Enum.TryParse<FlashAttention>(value, out var fa) && Enum.IsDefined(fa): scheduler = scheduler with { FlashAttention = fa }; break;
                default:
                    Console.Error.WriteLine($"{Switch}: unknown or invalid argument {args[i]} {value}");
                    return Usage;
            }
        }

        if (path is null || args.Length % 2 != 0)
        {
            Console.Error.WriteLine($"usage: EdgeServer {Switch} PATH [--native-dir DIR] [--ctx-size N] [--slots N] [--batch N] [--kv-type F16|Q8_0|Q4_0] [--flash-attn Auto|On|Off]");
            return Usage;
        }

        try
        {
            LlamaRuntime.Initialize(nativeDirectory, new StandardErrorLogger());
            LlamaModel.Probe(path, scheduler);
            return 0;
        }
        catch (InferenceException e)
        {
            Console.Out.WriteLine(e is ModelLoadException load ? load.Reason : e.Message);
            return Refused;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A fault of the probe itself: one line for the parent rather than a stack trace.
            Console.Error.WriteLine($"{e.GetType().Name}: {e.Message}");
            return Failed;
        }
    }

    /// <summary>Writes llama.cpp's warnings and errors, one per line, to standard error for the parent to read.</summary>
    private sealed class StandardErrorLogger : ILogger
    {
        private const string Prefix = "llama.cpp: ";

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                var line = formatter(state, exception);
                Console.Error.WriteLine(line.StartsWith(Prefix, StringComparison.Ordinal) ? line[Prefix.Length..] : line);
            }
        }
    }
}
