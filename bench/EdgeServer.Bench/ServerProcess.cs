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
    public (long Rss, long Peak) Memory()
    {
        long rss = 0, peak = 0;
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
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
    public (double Rss, double Anonymous) Residency()
    {
        double rss = 0, anonymous = 0;
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/smaps_rollup"))
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
