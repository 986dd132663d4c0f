using System.Globalization;

namespace EdgeServer.Soak;

/// <summary>Requests counted by outcome, with how long they took, so a kind that holds the server up shows.</summary>
internal sealed class Outcomes
{
    private readonly Dictionary<string, List<double>> _byName = new(StringComparer.Ordinal);

    public void Add(string outcome, double milliseconds)
    {
        lock (_byName)
        {
            if (!_byName.TryGetValue(outcome, out var times))
            {
                _byName[outcome] = times = [];
            }

            times.Add(milliseconds);
        }
    }

    public int Unexpected
    {
        get
        {
            lock (_byName)
            {
                return _byName.Where(o => o.Key.StartsWith("UNEXPECTED", StringComparison.Ordinal)).Sum(o => o.Value.Count);
            }
        }
    }

    public void Print(string title)
    {
        Console.WriteLine($"| {title} | requests | p50 ms | max ms |");
        Console.WriteLine("|---|---|---|---|");
        lock (_byName)
        {
            foreach (var (name, times) in _byName.OrderBy(o => o.Key, StringComparer.Ordinal))
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {times.Count} | {LatencyProbe.Percentile(times, 50):0} | {times.Max():0} |"));
            }
        }
    }
}
