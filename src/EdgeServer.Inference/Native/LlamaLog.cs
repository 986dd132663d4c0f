using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using EdgeServer.Inference.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Native;

/// <summary>
/// Routes llama.cpp's and ggml's log output to an <see cref="ILogger"/>. Native messages arrive in pieces
/// (GGML_LOG_LEVEL_CONT continues the previous one); whole lines are logged. llama.cpp's INFO level is a
/// detailed trace of loading (every metadata key, every buffer) and maps to Debug; warnings and errors keep
/// their level.
/// </summary>
internal static unsafe partial class LlamaLog
{
    private static ILogger? s_logger;

    [ThreadStatic]
    private static StringBuilder? t_pending;

    [ThreadStatic]
    private static GgmlLogLevel t_pendingLevel;

    private const int KeptErrors = 4;

    [ThreadStatic]
    private static List<string>? t_errors;

    [ThreadStatic]
    private static List<string>? t_captured;

    /// <summary>
    /// The error lines (at most the last four) llama.cpp logged on this thread since the previous call, joined with
    /// "; ", or null. The cause usually comes a line before llama.cpp's summary ("failed to load model").
    /// </summary>
    public static string? TakeLastError()
    {
        FlushPending();
        if (t_errors is not { Count: > 0 } errors)
        {
            return null;
        }

        var text = string.Join("; ", errors);
        errors.Clear();
        return text;
    }

    private static void FlushPending()
    {
        if (t_pending is { Length: > 0 } pending && s_logger is { } logger)
        {
            Flush(logger, pending);
        }
    }

    /// <summary>
    /// Collects every line llama.cpp logs on this thread, at any level, until the returned scope is disposed. Some
    /// figures exist only as log lines (the KV, compute and model buffer sizes it reports while loading a model and
    /// creating a context). Needs <see cref="Install"/> first; scopes do not nest.
    /// </summary>
    public static LogCapture Capture()
    {
        FlushPending();
        var lines = new List<string>();
        t_captured = lines;
        return new LogCapture(lines);
    }

    /// <summary>The lines of one <see cref="Capture"/> scope.</summary>
    public sealed class LogCapture(List<string> lines) : IDisposable
    {
        public IReadOnlyList<string> Lines
        {
            get
            {
                FlushPending();
                return lines;
            }
        }

        public void Dispose()
        {
            FlushPending();
            if (ReferenceEquals(t_captured, lines))
            {
                t_captured = null;
            }
        }
    }

    public static void Install(ILogger logger)
    {
        s_logger = logger;
        NativeMethods.llama_log_set(&OnLog, IntPtr.Zero);
        NativeMethods.ggml_log_set(&OnLog, IntPtr.Zero);
    }

    internal static LogLevel Map(GgmlLogLevel level) => level switch
    {
        GgmlLogLevel.Error => LogLevel.Error,
        GgmlLogLevel.Warn => LogLevel.Warning,
        GgmlLogLevel.Info => LogLevel.Debug,
        _ => LogLevel.Trace,
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void OnLog(GgmlLogLevel level, byte* text, IntPtr userData)
    {
        try
        {
            var logger = s_logger;
            if (logger is null || text == null)
            {
                return;
            }

            var piece = Marshal.PtrToStringUTF8((IntPtr)text) ?? string.Empty;
            var pending = t_pending ??= new StringBuilder();
            if (level != GgmlLogLevel.Cont)
            {
                if (pending.Length > 0)
                {
                    Flush(logger, pending);
                }

                t_pendingLevel = level;
            }

            pending.Append(piece);
            if (piece.EndsWith('\n'))
            {
                Flush(logger, pending);
            }
        }
        catch
        {
            // An exception must never unwind into native code.
        }
    }

    private static void Flush(ILogger logger, StringBuilder pending)
    {
        var line = pending.ToString().TrimEnd('\n', '\r');
        pending.Clear();
        var level = Map(t_pendingLevel);
        if (t_pendingLevel == GgmlLogLevel.Error && line.Length > 0)
        {
            var errors = t_errors ??= [];
            if (errors.Count == KeptErrors)
            {
                errors.RemoveAt(0);
            }

            errors.Add(line.Trim());
        }

        if (line.Length > 0)
        {
            t_captured?.Add(line);
        }

        if (line.Length > 0 && logger.IsEnabled(level))
        {
            LogNative(logger, level, line);
        }
    }

    [LoggerMessage(EventId = EventIds.NativeLog, Message = "llama.cpp: {NativeMessage}")]
    private static partial void LogNative(ILogger logger, LogLevel level, string nativeMessage);
}
