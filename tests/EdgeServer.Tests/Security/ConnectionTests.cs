using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using EdgeServer.Hosting;
using EdgeServer.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.Security;

/// <summary>
/// Hostile connections on a LAN: many idle ones from one address, more than the server may hold, slow ones, and
/// a process out of file descriptors. Clients are raw sockets; one bound to 127.0.0.2 is a second machine.
/// </summary>
public partial class ConnectionTests
{
    private static readonly IPAddress First = IPAddress.Loopback;
    private static readonly IPAddress Second = IPAddress.Parse("127.0.0.2");

    [Fact]
    public async Task ManyIdleConnectionsFromOneAddressLeaveASecondAddressServed()
    {
        // The default limit: 64 per address.
        await using var server = await Server.StartAsync();
        var limit = server.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EdgeServerOptions>>().Value.Connections.MaxPerClientAddress;
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < limit; i++)
            {
                held.Add(await server.ConnectAsync(First));
                Assert.Equal(200, await GetHealthAsync(held[^1]));
            }

            for (var i = 0; i < 3; i++)
            {
                Assert.True(await server.IsRefusedAsync(First), "a connection over the per-address limit stays open");
            }

            using (var other = await server.ConnectAsync(Second))
            {
                Assert.Equal(200, await GetHealthAsync(other));
            }

            // The connections already held are not dropped.
            foreach (var socket in held)
            {
                Assert.Equal(200, await GetHealthAsync(socket));
            }

            // One line for the three refusals (the clock stands still, so the log limiter never reopens).
            var line = Assert.Single(server.Logs.Entries, e => e.EventId == 6100);
            Assert.Contains("127.0.0.1", line.Message, StringComparison.Ordinal);
            Assert.Contains("EdgeServer:Connections:MaxPerClientAddress", line.Message, StringComparison.Ordinal);
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task BeyondMaxConnectionsANewConnectionIsClosedAtOnceAndServedOnceOneCloses()
    {
        await using var server = await Server.StartAsync("--EdgeServer:Connections:MaxConnections=3", "--EdgeServer:Connections:MaxPerClientAddress=0");
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                held.Add(await server.ConnectAsync(First));
                Assert.Equal(200, await GetHealthAsync(held[^1]));
            }

            Assert.True(await server.IsRefusedAsync(Second), "a connection over MaxConnections stays open");

            var line = Assert.Single(server.Logs.Entries, e => e.EventId == 6101);
            Assert.Contains("EdgeServer:Connections:MaxConnections", line.Message, StringComparison.Ordinal);

            held[0].Dispose();
            var served = false;
            for (var attempt = 0; attempt < 50 && !served; attempt++)
            {
                try
                {
                    using var again = await server.ConnectAsync(Second);
                    served = await TryGetHealthAsync(again) == 200;
                }
                catch (SocketException)
                {
                    // Refused while the server had not yet seen the close.
                }

                if (!served)
                {
                    await Task.Delay(100);
                }
            }

            Assert.True(served, "no connection was served after one of the held ones closed");
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task IdleConnectionsAndSlowHeadersAreClosedByTheirTimeouts()
    {
        await using var server = await Server.StartAsync("--EdgeServer:Connections:KeepAliveTimeoutSeconds=1", "--EdgeServer:Connections:RequestHeadersTimeoutSeconds=1");
        using var silent = await server.ConnectAsync(First);
        using var afterRequest = await server.ConnectAsync(First);
        Assert.Equal(200, await GetHealthAsync(afterRequest));
        using var slow = await server.ConnectAsync(First);
        await slow.SendAsync(Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: x\r\n"));

        var closed = await Task.WhenAll(IsClosedByServerAsync(silent), IsClosedByServerAsync(afterRequest), IsClosedByServerAsync(slow));
        Assert.Equal([true, true, true], closed);
    }

    [Fact]
    public async Task AtStartUpMaxConnectionsIsKeptBelowTheOpenFileLimit()
    {
        using var lowered = OpenFileLimit.LowerTo(Directory.GetFiles("/proc/self/fd").Length + 1000);
        await using var server = await Server.StartAsync("--EdgeServer:Connections:MaxConnections=5000");
        var limits = server.App.Services.GetRequiredService<ConnectionLimits>();
        Assert.InRange(limits.MaxConnections, 1, lowered.Limit - Directory.GetFiles("/proc/self/fd").Length);
        var warning = Assert.Single(server.Logs.Entries, e => e.EventId == 6102);
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains($"{lowered.Limit}", warning.Message, StringComparison.Ordinal);
        Assert.Contains($"{limits.MaxConnections}", warning.Message, StringComparison.Ordinal);
        Assert.Contains("LimitNOFILE", warning.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Max processes             96365                96365                processes\nMax open files            1024                 524288               files\n", 1024L)]
    [InlineData("Max open files            unlimited            unlimited            files\n", null)]
    [InlineData("Max stack size            8388608              unlimited            bytes\n", null)]
    public void TheSoftOpenFileLimitIsReadFromProcLimits(string limits, long? expected) => Assert.Equal(expected, OpenFiles.ParseLimit(limits));

    [Fact]
    public async Task AcceptFailingForWantOfFileDescriptorsIsLogged()
    {
        // In its own process: out of descriptors the .NET runtime cannot start threads and may end the process.
        using var child = new System.Diagnostics.Process
        {
            StartInfo = new System.Diagnostics.ProcessStartInfo(
                Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet",
                [
                    Path.Combine(AppContext.BaseDirectory, "EdgeServer.dll"),
                    "--urls", "http://127.0.0.1:0",
                    "--models-dir", "/nonexistent",
                    "--Logging:LogLevel:Default=Warning",
                    "--Logging:LogLevel:Microsoft.Hosting.Lifetime=Information",
                ])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = AppContext.BaseDirectory,
            },
        };
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var listening = new TaskCompletionSource<IPEndPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
        child.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                output.Enqueue(line);
                if (line.Contains("Now listening on: http://", StringComparison.Ordinal))
                {
                    listening.TrySetResult(IPEndPoint.Parse(new Uri(line[line.IndexOf("http://", StringComparison.Ordinal)..].Trim()).Authority));
                }
            }
        };
        child.ErrorDataReceived += (_, e) => output.Enqueue(e.Data ?? string.Empty);
        child.Start();
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        var sockets = new List<Socket>();
        try
        {
            var endpoint = await listening.Task.WaitAsync(TimeSpan.FromSeconds(60));
            using (OpenFileLimit.LowerTo(Directory.GetFiles($"/proc/{child.Id}/fd").Length + 8, child.Id))
            {
                // The kernel completes each connection into the backlog; the server runs out while accepting them.
                for (var i = 0; i < 30 && !output.Any(l => l.Contains("[6103]", StringComparison.Ordinal)); i++)
                {
                    var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    sockets.Add(socket);
                    await socket.ConnectAsync(endpoint);
                    await Task.Delay(20);
                }

                for (var i = 0; i < 100 && !output.Any(l => l.Contains("[6103]", StringComparison.Ordinal)); i++)
                {
                    await Task.Delay(50);
                }
            }

            var lines = output.ToList();
            var at = lines.FindIndex(l => l.Contains("[6103]", StringComparison.Ordinal));
            Assert.True(at >= 0, string.Join(Environment.NewLine, lines));
            Assert.StartsWith("fail:", lines[at], StringComparison.Ordinal);
            Assert.Contains("out of file descriptors", lines[at + 1], StringComparison.Ordinal);
        }
        finally
        {
            sockets.ForEach(s => s.Dispose());
            if (!child.HasExited)
            {
                child.Kill();
            }

            await child.WaitForExitAsync();
        }
    }

    /// <summary>Sends GET /health and returns the status; the connection stays open (keep-alive).</summary>
    private static async Task<int> GetHealthAsync(Socket socket) =>
        await TryGetHealthAsync(socket) ?? throw new InvalidOperationException("The server closed the connection.");

    private static async Task<int?> TryGetHealthAsync(Socket socket)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await socket.SendAsync(Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: edge\r\n\r\n"), timeout.Token);
            var received = new List<byte>();
            var buffer = new byte[4096];
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, timeout.Token);
                if (n == 0)
                {
                    return null;
                }

                received.AddRange(buffer.AsSpan(0, n));
                var text = Encoding.ASCII.GetString([.. received]);
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end < 0)
                {
                    continue;
                }

                var headers = text[..end].Split("\r\n").Select(h => h.Split(':', 2)).Where(h => h.Length == 2).ToDictionary(h => h[0].Trim(), h => h[1].Trim(), StringComparer.OrdinalIgnoreCase);
                var complete = headers.TryGetValue("Content-Length", out var length)
                    ? received.Count >= end + 4 + int.Parse(length, System.Globalization.CultureInfo.InvariantCulture)
                    : text.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal);
                if (complete)
                {
                    return int.Parse(text.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
                }
            }
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <summary>True when the server closes the connection (EOF or reset) within a generous bound; data before that is ignored.</summary>
    private static async Task<bool> IsClosedByServerAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var buffer = new byte[4096];
        try
        {
            while (await socket.ReceiveAsync(buffer, timeout.Token) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>A server without models (start-up in a moment), its log, and raw client sockets to it.</summary>
    private sealed class Server : IAsyncDisposable
    {
        private Server(WebApplication app, CapturingLoggerProvider logs)
        {
            App = app;
            Logs = logs;
            EndPoint = IPEndPoint.Parse(new Uri(app.Urls.Single()).Authority);
        }

        public WebApplication App { get; }

        public CapturingLoggerProvider Logs { get; }

        public IPEndPoint EndPoint { get; }

        public static async Task<Server> StartAsync(params string[] settings)
        {
            var logs = new CapturingLoggerProvider();
            var builder = EdgeServerHosting.CreateBuilder(
            [
                "--urls", "http://127.0.0.1:0",
                "--models-dir", "/nonexistent",
                "--Logging:LogLevel:Default=None",
                "--Logging:LogLevel:EdgeServer=Information",
                .. settings,
            ]);
            builder.Logging.AddProvider(logs);
            // The log limiter's clock stands still: each kind of refusal is logged once per test.
            builder.Services.AddSingleton<TimeProvider>(new FakeTimeProvider(DateTimeOffset.UtcNow));
            var app = builder.Build();
            app.MapEdgeServer();
            await app.StartAsync();
            return new Server(app, logs);
        }

        public async Task<Socket> ConnectAsync(IPAddress from)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(from, 0));
                await socket.ConnectAsync(EndPoint);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        /// <summary>True when a new connection is closed by the server at once; it may be reset before connect returns.</summary>
        public async Task<bool> IsRefusedAsync(IPAddress from)
        {
            Socket socket;
            try
            {
                socket = await ConnectAsync(from);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused)
            {
                return true;
            }

            using (socket)
            {
                return await IsClosedByServerAsync(socket);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await App.StopAsync();
            await App.DisposeAsync();
        }
    }

    /// <summary>Lowers the soft RLIMIT_NOFILE of this process (or another) for a test and restores it on dispose.</summary>
    private sealed partial class OpenFileLimit : IDisposable
    {
        private const int RlimitNofile = 7;
        private readonly int _pid;
        private readonly RLimit _saved;

        private OpenFileLimit(int pid, RLimit saved, long limit)
        {
            _pid = pid;
            _saved = saved;
            Limit = limit;
        }

        public long Limit { get; }

        public static OpenFileLimit LowerTo(long soft, int pid = 0)
        {
            Check(prlimit(pid, RlimitNofile, IntPtr.Zero, out var saved));
            var lowered = new RLimit { Current = (ulong)Math.Min(soft, (long)saved.Current), Maximum = saved.Maximum };
            Check(prlimit(pid, RlimitNofile, ref lowered, IntPtr.Zero));
            return new OpenFileLimit(pid, saved, (long)lowered.Current);
        }

        public void Dispose()
        {
            var saved = _saved;
            // A process that has ended has no limit to restore.
            if (prlimit(_pid, RlimitNofile, ref saved, IntPtr.Zero) != 0 && _pid == 0)
            {
                throw new InvalidOperationException($"prlimit failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }

        private static void Check(int result)
        {
            if (result != 0)
            {
                throw new InvalidOperationException($"prlimit failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }

        [LibraryImport("libc", SetLastError = true)]
        private static partial int prlimit(int pid, int resource, IntPtr newLimit, out RLimit oldLimit);

        [LibraryImport("libc", SetLastError = true)]
        private static partial int prlimit(int pid, int resource, ref RLimit newLimit, IntPtr oldLimit);

        [StructLayout(LayoutKind.Sequential)]
        private struct RLimit
        {
            public ulong Current;
            public ulong Maximum;
        }
    }
}
