namespace EdgeServer.Inference.Models;

/// <summary>
/// Model files found servable in an earlier run, so a restart does not probe them again in a child process (a
/// second or more of start-up per model on a small board). A file is known by its full path, size and modification
/// time, with the settings it was probed with and the llama.cpp build that probed it; any change probes again.
/// Only servable verdicts are kept: a refused file is probed again at each start. One key per line, at most
/// <see cref="MaxEntries"/>, the newest last. The file is only a hint: unreadable, it is ignored; unwritable, nothing
/// is kept. Whoever can write it could mark a hostile file as probed, but could as well replace the model itself.
/// </summary>
internal sealed class ProbeVerdictStore(string? path)
{
    public const int MaxEntries = 256;
    private readonly Lock _lock = new();
    private List<string>? _keys;

    /// <summary>The key of a file as it is now, or null when it cannot be kept (no file, or a path with a line break).</summary>
    public static string? Key(FileInfo file, string settings, string build) =>
        file.FullName.Contains('\n', StringComparison.Ordinal) || file.FullName.Contains('\r', StringComparison.Ordinal)
            ? null
            : string.Join('|', file.FullName, file.Length, file.LastWriteTimeUtc.Ticks, settings.ReplaceLineEndings(" "), build.ReplaceLineEndings(" "));

    public bool Contains(string key)
    {
        lock (_lock)
        {
            return Load().Contains(key, StringComparer.Ordinal);
        }
    }

    /// <summary>Keeps a servable verdict; false when it could not be written.</summary>
    public bool Add(string key)
    {
        if (path is null)
        {
            return false;
        }

        lock (_lock)
        {
            var keys = Load();
            keys.Remove(key);
            keys.Add(key);
            if (keys.Count > MaxEntries)
            {
                keys.RemoveRange(0, keys.Count - MaxEntries);
            }

            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
                var temporary = $"{path}.{Environment.ProcessId}.tmp";
                File.WriteAllLines(temporary, keys);
                File.Move(temporary, path, overwrite: true);
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return false;
            }
        }
    }

    /// <summary>Under the lock: the keys on disk, read once; a file too large to be one of ours is ignored.</summary>
    private List<string> Load()
    {
        if (_keys is not null)
        {
            return _keys;
        }

        _keys = [];
        try
        {
            if (path is not null && new FileInfo(path) is { Exists: true, Length: < 4 * 1024 * 1024 })
            {
                _keys.AddRange(File.ReadLines(path).Where(l => l.Length > 0).TakeLast(MaxEntries));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _keys.Clear();
        }

        return _keys;
    }
}
