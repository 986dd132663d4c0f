using Microsoft.Extensions.Logging;

namespace EdgeServer.Inference.Models;

/// <summary>
/// Calls for a rescan of the models folder when its *.gguf files change: after the folder has been quiet for
/// <see cref="Quiet"/> (a file being copied in changes on every write, and is read only once the copy has paused),
/// and every <see cref="Poll"/> besides, for file systems that report no changes (network shares, some bind mounts)
/// and for a folder that does not exist yet. A failed rescan is logged and tried again on the next change or poll.
/// </summary>
internal sealed partial class ModelsFolderWatcher : IDisposable
{
    public static readonly TimeSpan Quiet = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan Poll = TimeSpan.FromSeconds(30);

    private readonly string _folder;
    private readonly Action _rescan;
    private readonly ILogger _logger;
    private readonly ITimer _debounce;
    private readonly ITimer _poll;
    private readonly Lock _lock = new();
    private FileSystemWatcher? _watcher;
    private bool _disposed;
    private bool _toldNotWatched;
    private int _running;
    private int _again;

    public ModelsFolderWatcher(string folder, Action rescan, TimeProvider clock, ILogger logger)
    {
        _folder = folder;
        _rescan = rescan;
        _logger = logger;
        _debounce = clock.CreateTimer(_ => Rescan(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _poll = clock.CreateTimer(_ => OnPoll(), null, Poll, Poll);
        Watch();
    }

    private void OnPoll()
    {
        Watch();
        Rescan();
    }

    /// <summary>Starts watching once the folder exists; inotify may refuse (its watch limit), and polling covers that.</summary>
    private void Watch()
    {
        lock (_lock)
        {
            if (_disposed || _watcher is not null || !Directory.Exists(_folder))
            {
                return;
            }

            try
            {
                var watcher = new FileSystemWatcher(_folder, "*.gguf")
                {
                    NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size,
                    IncludeSubdirectories = false,
                };
                watcher.Created += OnChange;
                watcher.Changed += OnChange;
                watcher.Deleted += OnChange;
                watcher.Renamed += OnChange;
                watcher.Error += (_, e) => { LogNotWatched(_logger, e.GetException(), _folder, Poll.TotalSeconds); Changed(); };
                watcher.EnableRaisingEvents = true;
                _watcher = watcher;
            }
            catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException or PlatformNotSupportedException)
            {
                if (!_toldNotWatched)
                {
                    _toldNotWatched = true;
                    LogNotWatched(_logger, e, _folder, Poll.TotalSeconds);
                }
            }
        }
    }

    private void OnChange(object sender, FileSystemEventArgs e) => Changed();

    /// <summary>Restarts the quiet period.</summary>
    private void Changed()
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _debounce.Change(Quiet, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>One rescan at a time: a call during one (a poll during a long probe) asks for one more after it.</summary>
    private void Rescan()
    {
        if (Interlocked.Exchange(ref _running, 1) == 1)
        {
            Volatile.Write(ref _again, 1);
            return;
        }

        try
        {
            do
            {
                try
                {
                    _rescan();
                }
                catch (Exception e)
                {
                    // A file that vanished mid-read, a permission change: the next change or poll tries again.
                    LogRescanFailed(_logger, e, _folder);
                }
            }
            while (Interlocked.Exchange(ref _again, 0) == 1 && !Volatile.Read(ref _disposed));
        }
        finally
        {
            Volatile.Write(ref _running, 0);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _watcher?.Dispose();
        }

        _debounce.Dispose();
        _poll.Dispose();
    }

    [LoggerMessage(EventId = Diagnostics.EventIds.ModelsFolderRescanFailed, Level = LogLevel.Warning, Message = "Reading the models folder {Folder} failed; tried again on its next change")]
    private static partial void LogRescanFailed(ILogger logger, Exception exception, string folder);

    [LoggerMessage(EventId = Diagnostics.EventIds.ModelsFolderNotWatched, Level = LogLevel.Warning, Message = "The models folder {Folder} cannot be watched; new and removed files are seen every {Seconds} s instead")]
    private static partial void LogNotWatched(ILogger logger, Exception exception, string folder, double seconds);
}
