using Microsoft.Playwright;

namespace EdgeServer.Tests.WebUi;

/// <summary>
/// The system's Chromium (Debian's <c>chromium</c> package, or the file named by EDGESERVER_TEST_CHROMIUM), driven by
/// Playwright; Playwright never downloads a browser here. Where none is installed, <see cref="SkipReason"/> says so
/// and the browser tests skip.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public const string Variable = "EDGESERVER_TEST_CHROMIUM";

    /// <summary>
    /// The name the browser knows the server by. Chromium maps it to 127.0.0.1, so traffic stays on loopback while
    /// the page runs as it does on a LAN address: http on a name that is not localhost is no secure context, and
    /// APIs such as crypto.randomUUID and the clipboard are missing there.
    /// </summary>
    public const string LanHost = "edgeserver.lan";
    private static readonly string[] s_names = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];
    private IPlaywright? _playwright;
    private IBrowser? _browser;

    /// <summary>Why the browser tests cannot run, or null.</summary>
    public string? SkipReason { get; private set; }

    public IBrowser Browser => _browser ?? throw new InvalidOperationException(SkipReason);

    public async Task InitializeAsync()
    {
        var configured = Environment.GetEnvironmentVariable(Variable);
        var executable = string.IsNullOrEmpty(configured) ? FindOnPath() : configured;
        if (executable is null || !File.Exists(executable))
        {
            SkipReason = string.IsNullOrEmpty(configured)
                ? $"Skipped: no Chromium found (looked for {string.Join(", ", s_names)} on PATH; {Variable} can name one). "
                    + "Install Debian's chromium (apt-get install chromium) to run the chat page's browser tests."
                : $"Skipped: {Variable} names {configured}, which does not exist.";
            return;
        }

        // A generous default: the page answers in milliseconds, but CI machines have two busy cores.
        Assertions.SetDefaultExpectTimeout(20_000);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = executable,
            Headless = true,
            Args = [$"--host-resolver-rules=MAP {LanHost} 127.0.0.1"],
        });
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }

        _playwright?.Dispose();
    }

    /// <summary>
    /// A fresh context (its own localStorage and sessionStorage) whose relative addresses go to the server as
    /// <see cref="LanHost"/>, and a page that records script errors.
    /// </summary>
    public async Task<(IBrowserContext Context, IPage Page, List<string> Errors)> OpenAsync(Uri address, ViewportSize? viewport = null)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = new UriBuilder(address) { Host = LanHost }.Uri.ToString(),
            ViewportSize = viewport ?? new ViewportSize { Width = 1000, Height = 720 },
        });
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                lock (errors)
                {
                    errors.Add(message.Text);
                }
            }
        };
        page.PageError += (_, error) =>
        {
            lock (errors)
            {
                errors.Add(error);
            }
        };
        return (context, page, errors);
    }

    private static string? FindOnPath()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        return s_names
            .SelectMany(name => path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Select(dir => Path.Combine(dir, name)))
            .FirstOrDefault(File.Exists);
    }
}

[CollectionDefinition(Name)]
public sealed class BrowserGroup : ICollectionFixture<BrowserFixture>
{
    public const string Name = "browser";
}
