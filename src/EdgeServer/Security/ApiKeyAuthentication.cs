using System.Security.Claims;
using System.Text.Encodings.Web;
using EdgeServer.OpenAi;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace EdgeServer.Security;

/// <summary>
/// "Authorization: Bearer &lt;key&gt;", or "x-api-key: &lt;key&gt;" as Anthropic's SDKs send it, against
/// <see cref="ApiKeyStore"/>. A missing or wrong key is a 401 in the route's error shape with <c>WWW-Authenticate: Bearer</c>.
/// Registered only when keys are configured. A request without a key is no result rather than a failure, so health
/// probes and other open routes are not logged or counted as failed authentications; a wrong key is one.
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ApiKeyStore keys)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    private const string ApiKeyHeader = "x-api-key";

    /// <summary>The claim naming which key authenticated a request (a digest, never the key), for what a key owns.</summary>
    private const string KeyClaim = "edgeserver:key";

    /// <summary>Which key made the request (stored responses belong to it); null without keys.</summary>
    public static string? KeyOf(ClaimsPrincipal user) => user.FindFirst(KeyClaim)?.Value;

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? header = Request.Headers.Authorization;
        string? apiKey = Request.Headers[ApiKeyHeader];
        if (string.IsNullOrEmpty(header) && string.IsNullOrEmpty(apiKey))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        const string bearer = "Bearer ";
        var presented = string.IsNullOrEmpty(header) ? apiKey.AsSpan().Trim()
            : header.StartsWith(bearer, StringComparison.OrdinalIgnoreCase) ? header.AsSpan(bearer.Length).Trim() : [];
        if (presented.IsEmpty || !keys.IsValid(presented))
        {
            return Task.FromResult(AuthenticateResult.Fail("invalid"));
        }

        var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "api-key"), new Claim(KeyClaim, ApiKeyStore.Identify(presented))], SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync();
        var missing = result.None;
        Response.Headers.WWWAuthenticate = "Bearer";
        var error = new OpenAiException(
            StatusCodes.Status401Unauthorized,
            missing
                ? "You didn't provide an API key. Provide it in an Authorization header as 'Bearer YOUR_KEY' (or in an x-api-key header)."
                : "Incorrect API key provided.",
            "invalid_request_error",
            null,
            missing ? "missing_api_key" : "invalid_api_key");
        await OpenAiResults.WriteErrorAsync(Context, error);
    }
}
