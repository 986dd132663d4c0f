using System.Globalization;

namespace EdgeServer.Inference.Pool;

/// <summary>How many bytes the loaded models may take, and how that number was found (for the start-up log).</summary>
public sealed record MemoryBudget(long Bytes, string Derivation)
{
    /// <summary>
    /// What the system reports as available now, minus a reserve: the process's cgroup limit (memory.max less what
    /// the cgroup uses already) when there is one, and MemAvailable of /proc/meminfo, whichever is smaller.
    /// <paramref name="root"/> is "/" but for tests, which give a fake tree.
    /// </summary>
    public static MemoryBudget Detect(MemoryReserve reserve, string root = "/")
    {
        var parts = new List<string>();
        long? available = null;
        if (MemAvailable(root) is { } memAvailable)
        {
            available = memAvailable;
            parts.Add($"MemAvailable {Sizes.Describe(memAvailable)}");
        }

        if (CgroupRoom(root) is (var room, var limit, var used))
        {
            parts.Add($"cgroup memory.max {Sizes.Describe(limit)} with {Sizes.Describe(used)} in use");
            available = available is { } a ? Math.Min(a, room) : room;
        }

        if (available is not { } total)
        {
            throw new InferenceException("The memory available could not be read (/proc/meminfo has no MemAvailable and no cgroup limit was found); set EdgeServer:Memory:Budget to a size.");
        }

        var kept = reserve.Of(total);
        var bytes = Math.Max(0, total - kept);
        return new MemoryBudget(bytes, $"{Sizes.Describe(bytes)}: available {Sizes.Describe(total)} ({string.Join("; ", parts)}) less a reserve of {Sizes.Describe(kept)} ({reserve})");
    }

    private static long? MemAvailable(string root)
    {
        var path = Path.Combine(root, "proc", "meminfo");
        if (!File.Exists(path))
        {
            return null;
        }

        foreach (var line in File.ReadLines(path))
        {
            // "MemAvailable:    3940332 kB"
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
            {
                var fields = line["MemAvailable:".Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb * 1024 : null;
            }
        }

        return null;
    }

    /// <summary>cgroup v2: the limit of the process's own cgroup ("0::/path" in /proc/self/cgroup) and its usage; null without a limit.</summary>
    private static (long Room, long Limit, long Used)? CgroupRoom(string root)
    {
        var self = Path.Combine(root, "proc", "self", "cgroup");
        if (!File.Exists(self))
        {
            return null;
        }

        var line = File.ReadLines(self).FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal));
        if (line is null)
        {
            return null;
        }

        var folder = Path.Combine(root, "sys", "fs", "cgroup", line[3..].TrimStart('/'));
        var max = Read(Path.Combine(folder, "memory.max"));
        if (max is null or "max" || !long.TryParse(max, NumberStyles.None, CultureInfo.InvariantCulture, out var limit))
        {
            return null;
        }

        var used = long.TryParse(Read(Path.Combine(folder, "memory.current")), NumberStyles.None, CultureInfo.InvariantCulture, out var current) ? current : 0;
        return (Math.Max(0, limit - used), limit, used);

        static string? Read(string path) => File.Exists(path) ? File.ReadAllText(path).Trim() : null;
    }
}

/// <summary>Memory kept back from the budget: a share of what is available with a floor, or a fixed size.</summary>
public sealed record MemoryReserve(double Fraction, long MinimumBytes)
{
    public static MemoryReserve Default { get; } = new(0.10, 256L << 20);

    public long Of(long available) => Math.Max(MinimumBytes, (long)(available * Fraction));

    public override string ToString() => Fraction > 0
        ? string.Create(CultureInfo.InvariantCulture, $"{Fraction * 100:0.#}%, at least {Sizes.Describe(MinimumBytes)}")
        : Sizes.Describe(MinimumBytes);
}

/// <summary>Byte counts as people read them.</summary>
public static class Sizes
{
    /// <summary>"1.6 GiB", "735 MiB", "12 KiB".</summary>
    public static string Describe(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.##} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 10):0} KiB"),
        _ => $"{bytes} B",
    };
}
