using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using EdgeServer.Hosting;

namespace EdgeServer.Device;

/// <summary>
/// Where the box's energy comes from. <see cref="Read"/> gives the joules used since the first reading, or null when
/// the sensor could not be read this time (then the interval up to the next good reading is unknown, never guessed).
/// </summary>
internal abstract class EnergySource
{
    /// <summary>What is measured, for the log and the metric tag: "rapl", "power_supply", "file", "command".</summary>
    public abstract string Name { get; }

    /// <summary>Which files or command, for the log line at start-up.</summary>
    public abstract string Detail { get; }

    /// <summary>
    /// Joules since the first reading, at <paramref name="now"/>. <paramref name="fresh"/> is false for the readings
    /// taken when a generation starts or ends: sources that are costly to ask (a command) then carry their last power
    /// forward instead of asking again.
    /// </summary>
    public abstract double? Read(TimeSpan now, bool fresh);

    /// <summary>
    /// Asks the sensor now, outside the monitor's lock, for the next fresh <see cref="Read"/> to use: a slow source
    /// (a command) then never holds up the generations that begin or end meanwhile. Fast sources need not.
    /// </summary>
    public virtual void Prepare()
    {
    }

    /// <summary>
    /// The source the settings ask for: the power file or command when one is set, else the RAPL packages, else the
    /// power supplies that report power; null when the box has none of them.
    /// </summary>
    public static EnergySource? Detect(EnergySettings settings)
    {
        if (settings.PowerFile is { Length: > 0 } file)
        {
            return new PowerFileSource(EdgeServerOptionsFileValidator.Resolve(file));
        }

        if (settings.PowerCommand is { Length: > 0 } command)
        {
            return new PowerCommandSource(command, TimeSpan.FromMilliseconds(Math.Max(settings.IntervalMilliseconds, 5000)));
        }

        return RaplSource.Detect(settings.SysfsRoot) ?? (EnergySource?)PowerSupplySource.Detect(settings.SysfsRoot);
    }


    internal static long? ReadLong(string path) =>
        Sysfs.ReadSmall(path) is { } text && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) ? value : null;
}

/// <summary>
/// Intel and AMD RAPL: each top-level package (<c>class/powercap/intel-rapl:N/energy_uj</c>, µJ since boot; its
/// sub-domains such as <c>intel-rapl:0:0</c> are parts of it and not added) is a counter that wraps at
/// <c>max_energy_range_uj</c>. Deltas are added up, so a wrap between two readings counts once.
/// </summary>
internal sealed partial class RaplSource : EnergySource
{
    private readonly Package[] _packages;
    private double _joules;

    private RaplSource(Package[] packages) => _packages = packages;

    public override string Name => "rapl";

    public override string Detail => string.Join(", ", _packages.Select(p => p.Path));

    public static RaplSource? Detect(string root)
    {
        var folder = Path.Combine(root, "class", "powercap");
        string[] domains;
        try
        {
            domains = Directory.Exists(folder) ? Directory.GetDirectories(folder, "intel-rapl:*") : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        // The top-level domains: the packages, and on some machines psys, the whole platform, packages included.
        // With psys it alone is read (adding the packages to it would count them twice); without, the packages.
        // A domain without a name (older kernels) counts as a package.
        var top = domains.Where(d => TopLevel().IsMatch(Path.GetFileName(d))).Order(StringComparer.Ordinal)
            .Select(d => (Path: d, Name: Sysfs.ReadSmall(Path.Combine(d, "name"))?.Trim())).ToList();
        var platform = top.Where(d => d.Name == "psys").Select(d => d.Path).ToList();
        var chosen = platform.Count > 0 ? platform : top.Where(d => d.Name is null || d.Name.StartsWith("package", StringComparison.Ordinal)).Select(d => d.Path).ToList();
        var packages = chosen
            .Select(d => new Package(Path.Combine(d, "energy_uj"), ReadLong(Path.Combine(d, "max_energy_range_uj")) is > 0 and var range ? range : null, ReadLong(Path.Combine(d, "energy_uj"))))
            .Where(p => p.Last is not null).ToArray();
        return packages.Length == 0 ? null : new RaplSource(packages);
    }

    public override double? Read(TimeSpan now, bool fresh)
    {
        var values = new long[_packages.Length];
        for (var i = 0; i < _packages.Length; i++)
        {
            if (ReadLong(_packages[i].Path) is not { } value || value < 0)
            {
                return null;
            }

            values[i] = value;
        }

        for (var i = 0; i < _packages.Length; i++)
        {
            var package = _packages[i];
            var delta = values[i] - package.Last!.Value;
            if (delta < 0)
            {
                // Wrapped: the counter went past its range and began again at 0. Without a range the step is unknown: none.
                delta = package.Range is { } range ? delta + range : 0;
            }

            _joules += delta / 1e6;
            package.Last = values[i];
        }

        return _joules;
    }

    [GeneratedRegex(@"^intel-rapl:\d+$")]
    private static partial Regex TopLevel();

    private sealed class Package(string path, long? range, long? last)
    {
        public string Path { get; } = path;

        public long? Range { get; } = range;

        public long? Last { get; set; } = last;
    }
}

/// <summary>A source that gives power (watts), integrated over time: the trapezoid between two readings.</summary>
internal abstract class PowerSource : EnergySource
{
    private double _joules;
    private (TimeSpan At, double Watts)? _last;

    /// <summary>The power now, or null when it cannot be read.</summary>
    protected abstract double? Watts();

    /// <summary>The last power read, for the metric.</summary>
    public double? LastWatts => _last?.Watts;

    /// <summary>The power asked for by <see cref="Prepare"/>, taken by the next fresh reading.</summary>
    private (bool Taken, double? Watts) _prepared = (true, null);

    public override void Prepare() => _prepared = (false, Watts());

    public override double? Read(TimeSpan now, bool fresh)
    {
        if (!fresh)
        {
            if (_last is not { } held)
            {
                return null;
            }

            // Carry the last power forward to now; the next fresh reading integrates from here.
            _joules += held.Watts * Math.Max(0, (now - held.At).TotalSeconds);
            _last = (now, held.Watts);
            return _joules;
        }

        var read = _prepared.Taken ? Watts() : _prepared.Watts;
        _prepared = (true, null);
        if (read is not { } watts || !double.IsFinite(watts) || watts < 0)
        {
            // No integration across a gap: the next good reading starts again.
            _last = null;
            return null;
        }

        if (_last is { } previous)
        {
            _joules += (previous.Watts + watts) / 2 * Math.Max(0, (now - previous.At).TotalSeconds);
        }

        _last = (now, watts);
        return _joules;
    }
}

/// <summary>
/// Batteries and PMICs under <c>class/power_supply</c>: <c>power_now</c> (µW), or <c>current_now</c> (µA) times
/// <c>voltage_now</c> (µV). A battery counts only while it discharges: while it charges it measures what flows in,
/// not what the box uses (a laptop on its charger has no reading). Several supplies are added up.
/// </summary>
internal sealed class PowerSupplySource : PowerSource
{
    private readonly string[] _supplies;

    private PowerSupplySource(string[] supplies) => _supplies = supplies;

    public override string Name => "power_supply";

    public override string Detail => string.Join(", ", _supplies);

    public static PowerSupplySource? Detect(string root)
    {
        var folder = Path.Combine(root, "class", "power_supply");
        string[] supplies;
        try
        {
            supplies = Directory.Exists(folder) ? Directory.GetDirectories(folder) : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        var measured = supplies.Order(StringComparer.Ordinal).Where(s => SupplyWatts(s, requireDischarging: false) is not null).ToArray();
        return measured.Length == 0 ? null : new PowerSupplySource(measured);
    }

    protected override double? Watts()
    {
        double? total = null;
        foreach (var supply in _supplies)
        {
            if (SupplyWatts(supply, requireDischarging: true) is { } watts)
            {
                total = (total ?? 0) + watts;
            }
        }

        return total;
    }

    /// <summary>
    /// The supply's power, or null. A battery that is not discharging is null when asked for the reading: what it
    /// reports then is its charge, not the box's use, and the box's own supply is not measured (unavailable, not 0 W).
    /// </summary>
    private static double? SupplyWatts(string supply, bool requireDischarging)
    {
        double? watts = ReadLong(Path.Combine(supply, "power_now")) is { } microWatts
            ? Math.Abs(microWatts) / 1e6
            : ReadLong(Path.Combine(supply, "current_now")) is { } microAmps && ReadLong(Path.Combine(supply, "voltage_now")) is { } microVolts
                ? Math.Abs(microAmps / 1e6 * (microVolts / 1e6))
                : null;
        if (watts is not null && requireDischarging
            && string.Equals(Sysfs.ReadSmall(Path.Combine(supply, "type")), "Battery", StringComparison.OrdinalIgnoreCase)
            && !string.Equals(Sysfs.ReadSmall(Path.Combine(supply, "status")), "Discharging", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        return watts;
    }
}

/// <summary>A file that holds watts (a number on its first line), kept current by a power meter's reader.</summary>
internal sealed class PowerFileSource(string path) : PowerSource
{
    public override string Name => "file";

    public override string Detail => path;

    protected override double? Watts() => ParseWatts(Sysfs.ReadSmall(path));

    internal static double? ParseWatts(string? text) =>
        text is not null && double.TryParse(text.Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var watts) ? watts : null;
}

/// <summary>A command that prints watts (the first number of its output), run by <c>sh -c</c> at each timed reading.</summary>
internal sealed class PowerCommandSource(string command, TimeSpan timeout) : PowerSource
{
    public override string Name => "command";

    public override string Detail => command;

    protected override double? Watts()
    {
        var start = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        try
        {
            using var process = Process.Start(start);
            if (process is null)
            {
                return null;
            }

            var output = process.StandardOutput.ReadLineAsync();
            _ = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                return null;
            }

            return process.ExitCode == 0 && output.Wait(timeout) ? PowerFileSource.ParseWatts(output.Result) : null;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            return null;
        }
    }
}
