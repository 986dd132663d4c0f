namespace EdgeServer.Device;

/// <summary>Reading the kernel's sensor files (thermal zones, RAPL counters, power supplies).</summary>
internal static class Sysfs
{
    /// <summary>The first line of a small file, trimmed, or null; at most 64 bytes are read (sysfs gives EIO for some sensors).</summary>
    public static string? ReadSmall(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1);
            Span<byte> buffer = stackalloc byte[64];
            var read = stream.Read(buffer);
            var text = System.Text.Encoding.ASCII.GetString(buffer[..read]);
            var end = text.IndexOf('\n');
            return (end >= 0 ? text[..end] : text).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
