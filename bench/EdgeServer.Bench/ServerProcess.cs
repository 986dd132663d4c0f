using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace EdgeServer.Bench;

/// <summary>One server under test, started as its own process on 127.0.0.1.</summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;

    private ServerProcess(string name, Process process, int port)
    {
        Name = name;
        _process = process;
        Port = port;
        BaseAddress = new Uri($"http://127.0.0.1:{port}");
    }

    public string Name { get; }

    public int Port { get; }

    public Uri BaseAddress { get; }

    /// <summary>The process id, to show the process that answers at the end is the one started.</summary>
    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>EdgeServer from a framework-dependent publish (EdgeServer.dll, run with dotnet) or a Native AOT
    /// publish (the EdgeServer executable, run as it is).</summary>
    /// <param name="cpus">When set, the process runs on these cores only (taskset -c), as a smaller box would.</param>
    public static ServerProcess StartEdge(string name, string edge, IEnumerable<string> arguments, int port, string? cpus = null)
    {
        string[] command = edge.EndsWith(".dll", StringComparison.Ordinal) ? ["dotnet", edge, .. arguments] : [edge, .. arguments];
        return cpus is null ? Start(name, command[0], command[1..], port) : Start(name, "taskset", ["-c", cpus, .. command], port);
    }

    public static ServerProcess Start(string name, string fileName, IEnumerable<string> arguments, int port)
    {
        var info = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        var process = Process.Start(info)!;
        var server = new ServerProcess(name, process, port);
        process.OutputDataReceived += (_, e) => server.Remember(e.Data);
        process.ErrorDataReceived += (_, e) => server.Remember(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return server;
    }

    private readonly Queue<string> _lastLines = new();

    /// <summary>The server's last lines of output, and whether it has exited (with its code), for a failure report.</summary>
    public string Describe()
    {
        lock (_lastLines)
        {
            var state = _process.HasExited ? $"exited with code {_process.ExitCode}" : "still running";
            return $"{Name} {state}; its last output:\n  " + string.Join("\n  ", _lastLines);
        }
    }

    private void Remember(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lastLines)
        {
            _lastLines.Enqueue(line);
            while (_lastLines.Count > 30)
            {
                _lastLines.Dequeue();
            }
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Resident memory now (VmRSS) and the peak so far (VmHWM), in bytes.</summary>
    public (long Rss, long Peak) Memory() => Memory(_process.Id);

    /// <summary>Resident memory of any process now (VmRSS) and its peak so far (VmHWM), in bytes, from /proc/PID/status.</summary>
    public static (long Rss, long Peak) Memory(int pid)
    {
        long rss = 0, peak = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                rss = Kb(line);
            }
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                peak = Kb(line);
            }
        }

        return (rss, peak);

        static long Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>Resident memory now and its anonymous part (the rest is file-backed), in MiB, from /proc/PID/smaps_rollup.</summary>
    public (double Rss, double Anonymous) Residency() => Residency(_process.Id);

    /// <summary>Resident memory of any process now and its anonymous part, in MiB, from /proc/PID/smaps_rollup.</summary>
    public static (double Rss, double Anonymous) Residency(int pid)
    {
        double rss = 0, anonymous = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/smaps_rollup"))
        {
            if (line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                rss = Kb(line);
            }
            else if (line.StartsWith("Anonymous:", StringComparison.Ordinal))
            {
                anonymous = Kb(line);
            }
        }

        return (rss, anonymous);

        static double Kb(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    /// <summary>
    /// The server's process and every process it started, transitively, from the parent ids in /proc/*/stat:
    /// llama-server's router runs each model in a child process of its own, and EdgeServer probes model files in
    /// children.
    /// </summary>
    public IReadOnlyList<int> Tree()
    {
        var children = new Dictionary<int, List<int>>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(entry, "stat"));
            }
            catch (IOException)
            {
                continue; // gone meanwhile
            }

            // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count from the last ')'.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ', 3);
            var parent = int.Parse(fields[1], CultureInfo.InvariantCulture);
            if (!children.TryGetValue(parent, out var list))
            {
                children[parent] = list = [];
            }

            list.Add(pid);
        }

        var tree = new List<int> { _process.Id };
        for (var i = 0; i < tree.Count; i++)
        {
            if (children.TryGetValue(tree[i], out var list))
            {
                tree.AddRange(list);
            }
        }

        return tree;
    }

    /// <summary>How the process ended (its exit code, 128 + the signal when a signal ended it), or null while it runs.</summary>
    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    public async Task WaitHealthyAsync(HttpClient http, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{Name} exited with code {_process.ExitCode} while starting.");
            }

            try
            {
                using var response = await http.GetAsync(new Uri(BaseAddress, "/health"));
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"{Name} was not healthy within {timeout.TotalSeconds:0} s.");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
