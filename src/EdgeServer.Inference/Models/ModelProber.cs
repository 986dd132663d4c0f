using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Text.RegularExpressions;
using EdgeServer.Inference.Diagnostics;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Scheduling;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Models;

/// <summary>
/// Decides whether a model file can be served: <see cref="ModelCatalog.Describe"/> (the GGUF header and the
/// hyper-parameters llama.cpp asserts on), then <see cref="LlamaModel.Probe"/> in a child process, so that
/// llama.cpp aborting on a file it was not foreseen to abort on ends the child and the model is unavailable with
/// the child's last lines, while this process serves on. A verdict is kept per file version (path, size, time):
/// each file is probed once per run unless it changes.
/// </summary>
internal sealed partial class ModelProber(EngineOptions options, ILogger logger)
{
    private const int KeptLines = 4;

    // Reading the output to its end after the child exits; bounded in case something else holds its pipes.
    private static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(5);

    // In-process probes run one at a time, as loads did before probing moved to a child.
    private static readonly Lock InProcess = new();
    private readonly ConcurrentDictionary<(string Path, long Length, DateTime Time, ModelSettings Settings), Lazy<ModelDescriptor>> _verdicts = new();
    private int _notedInProcess;
    private readonly ProbeVerdictStore _store = new(options.ProbeCacheFile);

    /// <summary>The llama.cpp build a verdict holds for: the binding's release and the libraries' folder.</summary>
    private static string Build => $"{LlamaRuntime.BindingVersion} {LlamaRuntime.Current?.LibraryDirectory}";

    /// <summary>The model's descriptor, Unavailable with the reason when it cannot be served.</summary>
    public ModelDescriptor Check(ModelSource source)
    {
        var file = new FileInfo(source.Path);
        if (!file.Exists)
        {
            return ModelCatalog.Describe(source);
        }

        var verdict = _verdicts.GetOrAdd((file.FullName, file.Length, file.LastWriteTimeUtc, source.Settings), _ => new(() => Decide(source))).Value;
        return verdict with { Id = source.Id };
    }

    private ModelDescriptor Decide(ModelSource source)
    {
        var descriptor = ModelCatalog.Describe(source);
        if (descriptor.Status == ModelStatus.Unavailable)
        {
            return descriptor;
        }

        var started = Stopwatch.GetTimestamp();
        var scheduler = source.Settings.Apply(options.Scheduler);
        var key = ProbeVerdictStore.Key(new FileInfo(source.Path), scheduler.ToString(), Build);
        if (key is not null && _store.Contains(key))
        {
            LogProbeRemembered(logger, source.Path);
            return descriptor;
        }

        var refusal = options.ProbeCommand is { } command ? ProbeInChild(command, source.Path, scheduler) : ProbeHere(source.Path, scheduler);
        var elapsedMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        LogProbed(logger, source.Path, elapsedMs, refusal ?? "servable");
        if (refusal is null && key is not null)
        {
            _store.Add(key);
        }

        return refusal is null ? descriptor : descriptor with { Status = ModelStatus.Unavailable, Error = refusal };
    }

    private string? ProbeHere(string path, SchedulerOptions scheduler)
    {
        if (Interlocked.Exchange(ref _notedInProcess, 1) == 0)
        {
            LogProbingInProcess(logger);
        }

        try
        {
            lock (InProcess)
            {
                LlamaModel.Probe(path, scheduler);
            }

            return null;
        }
        catch (ModelLoadException e)
        {
            return e.Message;
        }
    }

    private string? ProbeInChild(ProbeCommand command, string path, SchedulerOptions scheduler)
    {
        var start = new ProcessStartInfo(command.FileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in command.Arguments.Concat(ModelProbeChild.Arguments(path, scheduler, LlamaRuntime.Current?.LibraryDirectory)))
        {
            start.ArgumentList.Add(arg);
        }

        // ggml's abort would otherwise attach gdb to print a backtrace.
        start.Environment["GGML_NO_BACKTRACE"] = "1";
        var arguments = string.Join(' ', start.ArgumentList);
        LogChildStarting(logger, path, command.FileName, arguments);
        var output = new Queue<string>();
        var errors = new Queue<string>();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Keep(output, e.Data);
        process.ErrorDataReceived += (_, e) => Keep(errors, e.Data);
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            LogChildNotStarted(logger, e, command.FileName, path);
            return ProbeHere(path, scheduler);
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(options.ProbeTimeout))
        {
            process.Kill(entireProcessTree: true);
            Drain(process);
            LogChildTimedOut(logger, path, options.ProbeTimeout.TotalSeconds);
            return new ModelLoadException(path, $"checking it took longer than {options.ProbeTimeout.TotalSeconds:0} s, so the check was stopped; if the machine is only slow, raise EdgeServer:Runtime:ProbeTimeoutSeconds").Message;
        }

        Drain(process);
        var code = process.ExitCode;
        if (code == 0)
        {
            return null;
        }

        string Lines(Queue<string> lines)
        {
            lock (lines)
            {
                return lines.Count == 0 ? "it printed nothing" : string.Join(" | ", lines.Select(Shorten));
            }
        }

        LogChildFailed(logger, path, code, Lines(errors));
        var reason = code switch
        {
            ModelProbeChild.Refused => Lines(output),
            > 128 => $"llama.cpp crashed while checking it ({SignalName(code - 128)}): {Lines(errors)}",
            _ => $"the model check failed (exit code {code}): {Lines(errors)}",
        };
        return new ModelLoadException(path, reason).Message;
    }

    /// <summary>Waits for the output to be read to its end (WaitForExit() alone could wait forever).</summary>
    private static void Drain(Process process)
    {
        using var drained = new CancellationTokenSource(DrainTime);
        try
        {
            process.WaitForExitAsync(drained.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            // Something else holds the child's pipes; what was read so far has to do.
        }
    }

    private static void Keep(Queue<string> lines, string? line)
    {
        if (string.IsNullOrWhiteSpace(line))
        {
            return;
        }

        lock (lines)
        {
            lines.Enqueue(line.Trim());
            if (lines.Count > KeptLines)
            {
                lines.Dequeue();
            }
        }
    }

    /// <summary>Source paths of the machine llama.cpp was built on say nothing; the file and line do.</summary>
    private static string Shorten(string line) => Spaces().Replace(BuildPath().Replace(line, "$1"), " ");

    private static string SignalName(int signal) => signal switch
    {
        6 => "SIGABRT",
        4 => "SIGILL",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL, perhaps out of memory",
        11 => "SIGSEGV",
        _ => $"signal {signal}",
    };

    [GeneratedRegex(@"(?:/[^\s/:]+)+/([^\s/:]+\.(?:c|cc|cpp|h|hpp):\d+)")]
    private static partial Regex BuildPath();

    [GeneratedRegex(@"\s{2,}")]
    private static partial Regex Spaces();

    [LoggerMessage(EventId = EventIds.ModelProbed, Level = LogLevel.Debug, Message = "Model file {Path} probed in {ElapsedMs:0} ms: {Verdict}")]
    private static partial void LogProbed(ILogger logger, string path, double elapsedMs, string verdict);

    [LoggerMessage(EventId = EventIds.ProbeRemembered, Level = LogLevel.Debug, Message = "Model file {Path} was found servable in an earlier run and is not probed again")]
    private static partial void LogProbeRemembered(ILogger logger, string path);

    [LoggerMessage(EventId = EventIds.ProbeChildFailed, Level = LogLevel.Warning, Message = "The probe child for model file {Path} exited with code {ExitCode}; its last lines: {Lines}")]
    private static partial void LogChildFailed(ILogger logger, string path, int exitCode, string lines);

    [LoggerMessage(EventId = EventIds.ProbeChildTimedOut, Level = LogLevel.Warning, Message = "The probe child for model file {Path} ran longer than {TimeoutSeconds} s and was killed")]
    private static partial void LogChildTimedOut(ILogger logger, string path, double timeoutSeconds);

    [LoggerMessage(EventId = EventIds.ProbeChildNotStarted, Level = LogLevel.Warning, Message = "The probe child ({Command}) could not be started, so model file {Path} is probed in this process")]
    private static partial void LogChildNotStarted(ILogger logger, Exception exception, string command, string path);

    [LoggerMessage(EventId = EventIds.ProbeChildStarting, Level = LogLevel.Debug, Message = "Probing model file {Path}: {Command} {Arguments}")]
    private static partial void LogChildStarting(ILogger logger, string path, string command, string arguments);

    [LoggerMessage(EventId = EventIds.ProbingInProcess, Level = LogLevel.Warning, Message = "Model files are probed in this process (no probe command): a file that makes llama.cpp abort would end it")]
    private static partial void LogProbingInProcess(ILogger logger);
}
