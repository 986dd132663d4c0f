namespace EdgeServer.Telemetry;

/// <summary>
/// Lets a repeated log line through at most once per interval and counts the occurrences in between, so a
/// client that provokes it in a loop cannot flood the log (an SD card, the journal).
/// </summary>
internal sealed class LogThrottle(TimeProvider clock, TimeSpan interval)
{
    private readonly Lock _lock = new();
    private DateTimeOffset _nextLine = DateTimeOffset.MinValue;
    private int _count;

    /// <summary>Counts one occurrence; true when a line is due, with the occurrences since the last line (this one included).</summary>
    public bool Due(out int count)
    {
        lock (_lock)
        {
            _count++;
            var now = clock.GetUtcNow();
            if (now < _nextLine)
            {
                count = 0;
                return false;
            }

            _nextLine = now + interval;
            count = _count;
            _count = 0;
            return true;
        }
    }
}
