using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;
using EdgeServer.WebUi;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace EdgeServer.Tests.WebUi;

/// <summary>
/// The chat page: how it is served (over HTTP), and what a person on the LAN does with it in a real Chromium against the
/// real server (these skip where no Chromium is installed).
/// </summary>
[Collection(BrowserGroup.Name)]
public class WebUiTests(BrowserFixture browser, WebUiServerFixture server) : IClassFixture<WebUiServerFixture>
{
    private const string Busy = """edgeserver_slots_busy{otel_scope_name="EdgeServer.Inference",model="endless"}""";
    private const string Cancelled = """edgeserver_requests_total{otel_scope_name="EdgeServer",endpoint="/v1/chat/completions",model="endless",status="499"}""";

    [Fact]
    public async Task ThePageIsServedAtTheRootWithAStrictContentSecurityPolicy()
    {
        using var response = await server.Http.GetAsync("/");
        var html = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        var csp = string.Join(";", response.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("script-src 'self'", csp, StringComparison.Ordinal);
        Assert.Contains("default-src 'none'", csp, StringComparison.Ordinal);
        Assert.Contains("require-trusted-types-for 'script'", csp, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe", csp, StringComparison.Ordinal);
        Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Equal("no-referrer", response.Headers.GetValues("Referrer-Policy").Single());

        // No inline script or style, nothing from another host: every script and stylesheet is one of the page's files.
        foreach (Match tag in Regex.Matches(html, "<script[^>]*>", RegexOptions.IgnoreCase))
        {
            Assert.Matches("src=\"/webui/[a-z]+\\.js\"", tag.Value);
        }

        Assert.DoesNotMatch("<style|style=|https?://", html);
        foreach (Match link in Regex.Matches(html, "(?:src|href)=\"(?<path>[^\"]+)\""))
        {
            using var asset = await server.Http.GetAsync(link.Groups["path"].Value);
            Assert.True(asset.StatusCode == HttpStatusCode.OK, link.Groups["path"].Value);
        }
    }

    [Fact]
    public async Task ThePageScriptsNeverParseHtml()
    {
        // Model text reaches the page as text nodes only; the CSP's Trusted Types would throw on these anyway.
        foreach (var name in WebUiEndpoints.Assets.Keys.Where(n => n.EndsWith(".js", StringComparison.Ordinal)))
        {
            var script = Encoding.UTF8.GetString(WebUiEndpoints.Assets[name].Content);
            Assert.DoesNotMatch(@"innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment|\beval\(|new Function", script);
            using var response = await server.Http.GetAsync("/webui/" + name);
            Assert.Equal("text/javascript", response.Content.Headers.ContentType?.MediaType);
        }
    }

    [Fact]
    public async Task AnUnchangedFileIsNotSentAgain()
    {
        using var first = await server.Http.GetAsync("/webui/app.js");
        var tag = first.Headers.ETag;
        Assert.NotNull(tag);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/webui/app.js");
        request.Headers.IfNoneMatch.Add(tag);
        using var again = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotModified, again.StatusCode);
        using var missing = await server.Http.GetAsync("/webui/nothing.js");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task WithTheSettingOffTheRootIsNotFoundAndTheApiWorks()
    {
        var builder = EdgeServerHosting.CreateBuilder(
        [
            "--urls", "http://127.0.0.1:0",
            "--model", SuccessorModel.SharedPath,
            "--models-dir", Path.Combine(Path.GetTempPath(), "edgeserver-tests", "no-models-here"),
            "--threads", "2",
            "--EdgeServer:WebUi:Enabled=false",
            "--Logging:LogLevel:Default=None",
        ]);
        await using var app = builder.Build();
        app.MapEdgeServer();
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()) };

        foreach (var path in new[] { "/", "/webui/app.js" })
        {
            using var page = await http.GetAsync(path);
            Assert.True(page.StatusCode == HttpStatusCode.NotFound, $"{path}: {(int)page.StatusCode}");
        }

        using var chat = await http.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"successor","messages":[{"role":"user","content":"go"}],"temperature":0,"max_tokens":3}""", Encoding.UTF8, "application/json"));
        var body = await chat.Content.ReadAsStringAsync();
        Assert.True(chat.StatusCode == HttpStatusCode.OK, body);
        Assert.Contains("\"content\":\"abc\"", body, StringComparison.Ordinal);
        await app.StopAsync();
    }

    [Fact]
    public async Task AStopMidStreamIsNotLoggedAsAServerError()
    {
        // The stop button closes the connection while tokens are being written; whatever the write then throws, that
        // is the client's choice, not a failure. Some clients leave between two writes, some in the middle of one.
        var inFlight = server.App.Services.GetRequiredService<InFlightRequests>();
        var earlier = server.Logs.Entries.Count;
        for (var i = 0; i < 24; i++)
        {
            using var leave = new CancellationTokenSource();
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = new StringContent($$"""{"model":"endless","messages":[{"role":"user","content":"story {{i}}"}],"stream":true}""", Encoding.UTF8, "application/json"),
            };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, leave.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = await response.Content.ReadAsStreamAsync(leave.Token);
            var buffer = new byte[97];
            for (int read = 0, got = -1; read < 200 + (i * 23) && got != 0; read += got)
            {
                got = await body.ReadAsync(buffer, leave.Token);
            }

            await leave.CancelAsync();
        }

        for (var i = 0; i < 200 && inFlight.Count > 0; i++)
        {
            await Task.Delay(25);
        }

        Assert.Equal(0, inFlight.Count);
        var failures = server.Logs.Entries.Skip(earlier).Where(e => e.Level >= LogLevel.Error).ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} errors, the first: {failures.FirstOrDefault()?.EventId} {failures.FirstOrDefault()?.Message}");
    }

    [SkippableFact]
    public async Task AMessageTypedAndSentWithEnterStreamsTheModelsReply()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");
        await Expect(page.Locator("#prompt")).ToBeFocusedAsync();
        // As on the LAN: plain http on a host name, no secure context.
        Assert.False(await page.EvaluateAsync<bool>("window.isSecureContext"));

        // The picker lists every model with its state and memory; the budget is shown beside it.
        await Expect(page.Locator("#model option[value=successor]")).ToHaveTextAsync(MemoryLabel("successor"));
        await Expect(page.Locator("#model option[value=endless]")).ToHaveTextAsync(MemoryLabel("endless"));
        await Expect(page.Locator("#memory")).ToHaveTextAsync(new Regex(@"^Memory: [\d.]+ (B|KiB|MiB|GiB) of [\d.]+ (MiB|GiB|TiB)$"));
        await page.SelectOptionAsync("#model", WebUiServerFixture.Successor);

        // Type and press Enter.
        await page.Locator("#prompt").PressSequentiallyAsync("go");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.Locator(".msg.user .content")).ToHaveTextAsync("go");
        var reply = page.Locator(".msg.assistant");
        await Expect(reply.Locator(".content")).ToHaveTextAsync(SuccessorModel.ChatReply);
        await Expect(reply.Locator(".role")).ToHaveTextAsync(WebUiServerFixture.Successor);
        // Under the reply: time to first token, speed (when the text came over time rather than in one read) and the
        // tokens, from the usage chunk the page asks for.
        await Expect(reply.Locator(".stats")).ToHaveTextAsync(Finished);
        await Expect(reply.Locator(".reasoning")).ToBeHiddenAsync();
        await Expect(page.Locator("#prompt")).ToBeFocusedAsync();
        // The model is loaded now, and the picker says so after the reply.
        await Expect(page.Locator("#model option[value=successor]")).ToHaveTextAsync(new Regex("^successor · loaded · "));
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task StopEndsTheGenerationOnTheServer()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var before = await Scrape();
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;

        // Each decode step of the endless model is slowed down, so that a fast box does not reach the reply's token
        // cap before the stop.
        var engine = (EdgeServer.Inference.InferenceEngine)server.App.Services.GetRequiredService<EdgeServer.Inference.IInferenceEngine>();
        await engine.LoadAsync(WebUiServerFixture.Endless);
        var scheduler = engine.GetLoadedScheduler(WebUiServerFixture.Endless)!;
        scheduler.LoopHook = () => Thread.Sleep(20);
        var content = page.Locator(".msg.assistant .content");
        try
        {
            await page.GotoAsync("/");
            await page.SelectOptionAsync("#model", WebUiServerFixture.Endless);
            await page.FillAsync("#prompt", "Tell me a story");
            await page.ClickAsync("#send");

            // Text streams in: the reply is seen growing while the stop button is up.
            await Expect(content).ToContainTextAsync("Once upon a time");
            var first = (await content.TextContentAsync())!.Length;
            await Expect(content).Not.ToHaveTextAsync(new Regex($"^[\\s\\S]{{0,{first}}}$"));
            await Expect(page.Locator("#stop")).ToBeVisibleAsync();

            await page.ClickAsync("#stop");
            await Expect(page.Locator("#stop")).ToBeHiddenAsync();
            await Expect(page.Locator("#send")).ToBeVisibleAsync();
            // The text came in several reads, so there is a speed; the tokens are counted from the deltas, as no usage came.
            await Expect(page.Locator(".msg.assistant .stats")).ToHaveTextAsync(new Regex(@"^[\d.]+ s to first token · [\d.]+ tokens/s · ~\d+ tokens · stopped$"));

            // The server saw the client go (499) and freed the slot: the generation ended.
            var after = await Scrape();
            for (var i = 0; i < 100 && (Value(after, Cancelled) == Value(before, Cancelled) || Value(after, Busy) != 0); i++)
            {
                await Task.Delay(100);
                after = await Scrape();
            }

            Assert.Equal(Value(before, Cancelled) + 1, Value(after, Cancelled));
            Assert.Equal(0, Value(after, Busy));
        }
        finally
        {
            scheduler.LoopHook = null;
        }

        // What was written before the stop stays, in the page and in storage.
        var kept = await content.TextContentAsync();
        Assert.StartsWith("Once upon a time", kept, StringComparison.Ordinal);
        await page.ReloadAsync();
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync(kept!);
        await Expect(page.Locator(".msg.assistant .stats")).ToContainTextAsync("stopped");
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task EscapeStopsAReplyToo()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");
        await page.SelectOptionAsync("#model", WebUiServerFixture.Endless);
        await page.Locator("#prompt").PressSequentiallyAsync("Another story");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.Locator(".msg.assistant .content")).ToContainTextAsync("Once upon a time");
        await page.Keyboard.PressAsync("Escape");
        await Expect(page.Locator(".msg.assistant .stats")).ToContainTextAsync("stopped");
        await Expect(page.Locator("#stop")).ToBeHiddenAsync();
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task ConversationsOutliveAReloadAndCanBeDeleted()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");
        await page.SelectOptionAsync("#model", WebUiServerFixture.Successor);
        await Send(page, "first chat");
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync(SuccessorModel.ChatReply);
        await page.ClickAsync("#new-chat");
        await Expect(page.Locator(".msg")).ToHaveCountAsync(0);
        await Send(page, "second chat");
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync(SuccessorModel.ChatReply);

        await page.ReloadAsync();
        var titles = page.Locator("#conversations .open");
        await Expect(titles).ToHaveTextAsync(["second chat", "first chat"]);
        await Expect(page.Locator(".msg.user .content")).ToHaveTextAsync("second chat");
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync(SuccessorModel.ChatReply);

        await titles.Filter(new LocatorFilterOptions { HasText = "first chat" }).ClickAsync();
        await Expect(page.Locator(".msg.user .content")).ToHaveTextAsync("first chat");
        await page.GetByRole(AriaRole.Button, new PageGetByRoleOptions { Name = "Delete conversation: first chat" }).ClickAsync();
        await Expect(titles).ToHaveTextAsync(["second chat"]);
        await page.ReloadAsync();
        await Expect(titles).ToHaveTextAsync(["second chat"]);
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task SettingsGoIntoTheRequestAndAreKept()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");
        await page.SelectOptionAsync("#model", WebUiServerFixture.Successor);
        await page.ClickAsync("#toggle-settings");
        await page.FillAsync("#system-prompt", "Answer in three letters.");
        await page.FillAsync("#temperature", "0");
        await page.FillAsync("#max-tokens", "3");
        await page.FillAsync("#prompt", "go");

        var request = await page.RunAndWaitForRequestAsync(() => page.ClickAsync("#send"), "**/v1/chat/completions");
        using var body = JsonDocument.Parse(request.PostData!);
        var root = body.RootElement;
        Assert.Equal("successor", root.GetProperty("model").GetString());
        Assert.Equal("""[{"role":"system","content":"Answer in three letters."},{"role":"user","content":"go"}]""", root.GetProperty("messages").GetRawText());
        Assert.Equal(0, root.GetProperty("temperature").GetDouble());
        Assert.Equal(3, root.GetProperty("max_tokens").GetInt32());
        Assert.True(root.GetProperty("stream").GetBoolean());
        Assert.True(root.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync("abc");
        await Expect(page.Locator(".msg.assistant .stats")).ToContainTextAsync(" · 3 tokens");

        // The next turn carries the whole conversation.
        await page.FillAsync("#prompt", "again");
        var second = await page.RunAndWaitForRequestAsync(() => page.ClickAsync("#send"), "**/v1/chat/completions");
        using var secondBody = JsonDocument.Parse(second.PostData!);
        Assert.Equal(
            """[{"role":"system","content":"Answer in three letters."},{"role":"user","content":"go"},{"role":"assistant","content":"abc"},{"role":"user","content":"again"}]""",
            secondBody.RootElement.GetProperty("messages").GetRawText());
        await Expect(page.Locator(".msg.assistant .content").Last).ToHaveTextAsync("abc");

        await page.ReloadAsync();
        await page.ClickAsync("#toggle-settings");
        await Expect(page.Locator("#system-prompt")).ToHaveValueAsync("Answer in three letters.");
        await Expect(page.Locator("#temperature")).ToHaveValueAsync("0");
        await Expect(page.Locator("#max-tokens")).ToHaveValueAsync("3");
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task ReasoningIsFoldedAndMarkdownIsRendered()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");
        await page.SelectOptionAsync("#model", WebUiServerFixture.Thinker);
        await Send(page, "How do I read the temperature of my Pi?");

        var reply = page.Locator(".msg.assistant").First;
        await Expect(reply.Locator(".stats")).ToHaveTextAsync(Finished);
        var reasoning = reply.Locator("details.reasoning");
        await Expect(reasoning).ToBeVisibleAsync();
        await Expect(reasoning).Not.ToHaveAttributeAsync("open", string.Empty);
        await Expect(reasoning.Locator("summary")).ToHaveTextAsync("Reasoning");
        await Expect(reasoning.Locator(".reasoning-body")).ToBeHiddenAsync();
        await reasoning.Locator("summary").ClickAsync();
        await Expect(reasoning.Locator(".reasoning-body")).ToHaveTextAsync(WebUiServerFixture.ThinkerReasoning);

        var content = reply.Locator(".content");
        await Expect(content).Not.ToContainTextAsync("think>");
        await Expect(content.Locator("strong")).ToHaveTextAsync("SoC temperature");
        await Expect(content.Locator("pre code.language-sh")).ToHaveTextAsync("vcgencmd measure_temp");
        await Expect(content.Locator(".code-head")).ToContainTextAsync("sh");
        await Expect(content.Locator("li")).ToHaveCountAsync(2);
        await Expect(content.Locator("li code")).ToHaveTextAsync("cat /sys/class/thermal/thermal_zone0/temp");
        await Expect(content.Locator("li em")).ToHaveTextAsync("80 °C");
        await SaveScreenshotAsync(page);

        // Only reasoning's answer goes back to the model on the next turn.
        await page.FillAsync("#prompt", "thanks");
        var next = await page.RunAndWaitForRequestAsync(() => page.ClickAsync("#send"), "**/v1/chat/completions");
        using var body = JsonDocument.Parse(next.PostData!);
        var history = body.RootElement.GetProperty("messages");
        Assert.StartsWith("Read the **SoC temperature**", history[1].GetProperty("content").GetString(), StringComparison.Ordinal);
        await Expect(page.Locator(".msg.assistant .stats").Last).ToHaveTextAsync(Finished);
        // The earlier reply's reasoning, opened by the reader, stays open.
        await Expect(reasoning).ToHaveAttributeAsync("open", string.Empty);
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task HtmlInModelOutputAndInMessagesIsShownAsText()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");
        await page.SelectOptionAsync("#model", WebUiServerFixture.Injector);
        await Send(page, "Say <b>hello</b> <img src=x onerror=\"document.title='pwned'\">");

        var reply = page.Locator(".msg.assistant .content");
        await Expect(page.Locator(".msg.assistant .stats")).ToHaveTextAsync(Finished);
        await Expect(reply).ToContainTextAsync("<img src=x onerror=\"document.title='pwned'\">");
        await Expect(reply).ToContainTextAsync("<script>document.title='pwned'</script>");
        await Expect(page.Locator(".msg.user .content")).ToHaveTextAsync("Say <b>hello</b> <img src=x onerror=\"document.title='pwned'\">");
        await Expect(page.Locator(".messages img, .messages script, .messages b")).ToHaveCountAsync(0);
        await Expect(reply.Locator("strong")).ToHaveTextAsync("bold");
        // A javascript: link stays text; an https link is a link that opens elsewhere without a referrer.
        await Expect(reply).ToContainTextAsync("[a link](javascript:alert(1))");
        var link = reply.Locator("a");
        await Expect(link).ToHaveCountAsync(1);
        await Expect(link).ToHaveAttributeAsync("href", "https://example.org/docs");
        await Expect(link).ToHaveAttributeAsync("rel", "noopener noreferrer");
        Assert.Equal("EdgeServer", await page.TitleAsync());
        Assert.Empty(errors);
    }

    [SkippableFact]
    public async Task OnAPhoneTheConversationsOpenFromTheBar()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress, new ViewportSize { Width = 390, Height = 800 });
        await using var _ = context;
        await page.GotoAsync("/");
        await page.SelectOptionAsync("#model", WebUiServerFixture.Successor);
        await Send(page, "from my phone");
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync(SuccessorModel.ChatReply);

        // Nothing is wider than the screen; the list is out of the way (and out of the tab order) until asked for.
        Assert.True(await page.EvaluateAsync<bool>("document.documentElement.scrollWidth <= window.innerWidth"));
        await Expect(page.Locator("#sidebar")).Not.ToBeInViewportAsync();
        await page.ClickAsync("#toggle-sidebar");
        await Expect(page.Locator("#toggle-sidebar")).ToHaveAttributeAsync("aria-expanded", "true");
        await Expect(page.Locator("#new-chat")).ToBeFocusedAsync();
        await Expect(page.Locator("#conversations .open")).ToHaveTextAsync(["from my phone"]);
        await page.Keyboard.PressAsync("Escape");
        await Expect(page.Locator("#toggle-sidebar")).ToHaveAttributeAsync("aria-expanded", "false");
        await Expect(page.Locator("#toggle-sidebar")).ToBeFocusedAsync();
        // A tap beside the open list (it covers 80% of the width) closes it too.
        await page.ClickAsync("#toggle-sidebar");
        await Expect(page.Locator("#sidebar")).ToBeInViewportAsync();
        await page.Mouse.ClickAsync(380, 400);
        await Expect(page.Locator("#toggle-sidebar")).ToHaveAttributeAsync("aria-expanded", "false");
        Assert.Empty(errors);
    }

    /// <summary>The line under a finished reply.</summary>
    private static readonly Regex Finished = new(@"^[\d.]+ s to first token( · [\d.]+ tokens/s)? · \d+ tokens$");

    private static Regex MemoryLabel(string model) => new($@"^{model} · (available|loaded) · [\d.]+ (KiB|MiB|GiB)$");

    private static async Task Send(IPage page, string text)
    {
        await page.FillAsync("#prompt", text);
        await page.ClickAsync("#send");
    }

    /// <summary>
    /// The README's picture of the page: always taken (into the test output), and written to docs/webui.png when
    /// EDGESERVER_UPDATE_SCREENSHOT=1.
    /// </summary>
    private static async Task SaveScreenshotAsync(IPage page)
    {
        await page.Locator("#prompt").BlurAsync();
        var png = await page.ScreenshotAsync();
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        await File.WriteAllBytesAsync(Path.Combine(AppContext.BaseDirectory, "webui.png"), png);
        if (Environment.GetEnvironmentVariable("EDGESERVER_UPDATE_SCREENSHOT") == "1")
        {
            await File.WriteAllBytesAsync(Path.Combine(SharedPaths.RepositoryRoot, "docs", "webui.png"), png);
        }
    }

    private async Task<string> Scrape() => await server.Http.GetStringAsync("/metrics");

    private static double Value(string exposition, string series)
    {
        foreach (var line in exposition.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(series.Length + 1)..].Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}
