namespace EdgeServer.Inference.Tests.Text.Templates;

/// <summary>A clock stopped at one instant in UTC, for strftime_now in rendered templates.</summary>
internal sealed class FixedClock(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
}
