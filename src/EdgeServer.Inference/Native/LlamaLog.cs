using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
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
        if (line.Length > 0 && logger.IsEnabled(level))
        {
            LogNative(logger, level, line);
        }
    }

    [LoggerMessage(EventId = 1100, Message = "llama.cpp: {NativeMessage}")]
    private static partial void LogNative(ILogger logger, LogLevel level, string nativeMessage);
}
