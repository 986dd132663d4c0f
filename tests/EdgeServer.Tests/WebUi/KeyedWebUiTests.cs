using System.Net;
using EdgeServer.TestSupport;
using static Microsoft.Playwright.Assertions;

namespace EdgeServer.Tests.WebUi;

/// <summary>With API keys, the page is served without one, asks for one and calls the API with it.</summary>
[Collection(BrowserGroup.Name)]
public class KeyedWebUiTests(BrowserFixture browser, KeyedWebUiServerFixture server) : IClassFixture<KeyedWebUiServerFixture>
{
    [Fact]
    public async Task ThePageNeedsNoKeyButTheApiDoes()
    {
        foreach (var path in new[] { "/", "/webui/app.js", "/webui/markdown.js", "/webui/app.css", "/webui/icon.svg" })
        {
            using var page = await server.Http.GetAsync(path);
            Assert.True(page.StatusCode == HttpStatusCode.OK, $"{path}: {(int)page.StatusCode}");
        }

        using var models = await server.Http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
        using var other = await server.Http.GetAsync("/webui-not-the-page");
        Assert.Equal(HttpStatusCode.Unauthorized, other.StatusCode);
    }

    [SkippableFact]
    public async Task ThePageAsksForAKeyKeepsItForTheTabAndCallsTheApiWithIt()
    {
        Skip.If(browser.SkipReason is not null, browser.SkipReason);
        var (context, page, errors) = await browser.OpenAsync(server.BaseAddress);
        await using var _ = context;
        await page.GotoAsync("/");

        var dialog = page.Locator("#key-dialog");
        await Expect(dialog).ToBeVisibleAsync();
        await Expect(page.Locator("#key-message")).ToHaveTextAsync("This server asks for an API key.");
        await Expect(page.Locator("#key")).ToBeFocusedAsync();
        await page.Keyboard.TypeAsync("sk-wrong");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page.Locator("#key-message")).ToHaveTextAsync("The server refused this key. Enter a valid API key.");
        await page.Keyboard.PressAsync("Escape");
        await Expect(dialog).ToBeVisibleAsync();
        await page.FillAsync("#key", KeyedWebUiServerFixture.Key);
        await page.Keyboard.PressAsync("Enter");
        await Expect(dialog).ToBeHiddenAsync();

        await Expect(page.Locator("#model option[value=successor]")).ToHaveCountAsync(1);
        await page.SelectOptionAsync("#model", WebUiServerFixture.Successor);
        await page.FillAsync("#prompt", "go");
        var request = await page.RunAndWaitForRequestAsync(() => page.ClickAsync("#send"), "**/v1/chat/completions");
        Assert.Equal("Bearer " + KeyedWebUiServerFixture.Key, await request.HeaderValueAsync("authorization"));
        await Expect(page.Locator(".msg.assistant .content")).ToHaveTextAsync(SuccessorModel.ChatReply);

        // Kept for this tab: a reload asks no more. Only the session holds it, never localStorage.
        await page.ReloadAsync();
        await Expect(page.Locator("#model option[value=successor]")).ToHaveCountAsync(1);
        await Expect(dialog).ToBeHiddenAsync();
        Assert.Equal(KeyedWebUiServerFixture.Key, await page.EvaluateAsync<string>("sessionStorage.getItem('edgeserver.apiKey')"));
        Assert.DoesNotContain(KeyedWebUiServerFixture.Key, await page.EvaluateAsync<string>("JSON.stringify(localStorage)"), StringComparison.Ordinal);
        // The 401s before a key was given are the browser's own log lines; nothing else went wrong.
        Assert.All(errors, e => Assert.Contains("401", e, StringComparison.Ordinal));
    }
}
