using System.Globalization;

namespace EdgeServer.Hosting;

/// <summary>
/// The process's open-file limit (RLIMIT_NOFILE, from /proc/self/limits) and how many files it has open
/// (/proc/self/fd); Linux only, unknown elsewhere. Every connection holds a descriptor, and the .NET runtime
/// needs a few of its own to start a thread or load an assembly: out of descriptors it cannot, and it may stop.
/// </summary>
internal static class OpenFiles
{
    public static long? Limit()
    {
        try
        {
            return ParseLimit(File.ReadAllText("/proc/self/limits"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public static int? Count()
    {
        try
        {
            return Directory.GetFileSystemEntries("/proc/self/fd").Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The soft limit on the "Max open files" line; null when unlimited or absent.</summary>
    internal static long? ParseLimit(string limits)
    {
        foreach (var line in limits.Split('\n'))
        {
            if (line.StartsWith("Max open files", StringComparison.Ordinal))
            {
                var soft = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
                return long.TryParse(soft, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : null;
            }
        }

        return null;
    }

    /// <summary>Connections that fit: the descriptors still free, less a reserve for everything else (a quarter, at least 64).</summary>
    internal static int ConnectionBudget(long limit, int open)
    {
        var free = limit - open;
        return (int)Math.Clamp(free - Math.Max(64, free / 4), 1, int.MaxValue);
    }
}
