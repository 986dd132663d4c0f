using System.Net;
using System.Net.Http.Headers;

namespace EdgeServer.Pull;

/// <summary>
/// HTTP for pulls: redirects followed here rather than by the handler, so that each hop is checked (http and https
/// only, never from https down to http, at most <see cref="MaxRedirects"/>, no URL twice), the bearer token goes
/// only to the hub's own origin (never to the CDN it redirects to, nor to any other host), and the headers of the
/// hub's first answer (<c>x-linked-size</c>, <c>x-linked-etag</c>, given on the redirect) are kept.
/// </summary>
public sealed class PullHttp : IDisposable
{
    public const int MaxRedirects = 10;

    private readonly HttpClient _client;
    private readonly Uri _hub;
    private readonly string? _token;
    private readonly TimeSpan _headersTimeout;

    /// <param name="publicOnly">
    /// Connect only to public addresses (and to the hub's own address and port): what a pull asked for over the
    /// network may reach. The address is checked as connected, after name resolution, so a name that resolves to
    /// a local address (or changes its answer between two lookups) is refused too.
    /// </param>
    /// <param name="headersTimeout">The longest wait for a server's answer to start (its headers), per hop; 60 s when not given.</param>
    public PullHttp(Uri hub, string? token, HttpMessageHandler? handler = null, bool publicOnly = false, TimeSpan? headersTimeout = null)
    {
        _hub = hub;
        _headersTimeout = headersTimeout ?? TimeSpan.FromSeconds(60);
        _token = string.IsNullOrWhiteSpace(token) ? null : token.Trim();
        var sockets = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(30),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        if (publicOnly)
        {
            sockets.ConnectCallback = ConnectPublicAsync;
        }

        _client = new HttpClient(handler ?? sockets)
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _client.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("EdgeServer", typeof(PullHttp).Assembly.GetName().Version?.ToString(3) ?? "1"));
    }

    public Uri Hub => _hub;

    public bool HasToken => _token is not null;

    /// <summary>
    /// Sends a request built by <paramref name="create"/> for each hop and answers with the last response (headers
    /// read, body not) and the linked size and ETag any hop named.
    /// </summary>
    public async Task<PullResponse> SendAsync(HttpMethod method, Uri url, Action<HttpRequestMessage>? configure, CancellationToken cancellationToken)
    {
        var visited = new HashSet<string>(StringComparer.Ordinal);
        long? linkedSize = null;
        string? linkedEtag = null;
        var current = url;
        for (var hop = 0; ; hop++)
        {
            if (!visited.Add(current.AbsoluteUri))
            {
                throw PullException.Upstream($"{Describe(url)} redirects in a loop (back to {Describe(current)}).");
            }

            if (hop > MaxRedirects)
            {
                throw PullException.Upstream($"{Describe(url)} redirects more than {MaxRedirects} times.");
            }

            using var request = new HttpRequestMessage(method, current);
            configure?.Invoke(request);
            if (_token is not null && SameOrigin(current, _hub))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
            }

            HttpResponseMessage response;
            // Only the wait for the headers is bounded here; the body is read under the download's own stall timeout.
            using var headers = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            headers.CancelAfter(_headersTimeout);
            try
            {
                response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, headers.Token);
            }
            catch (HttpRequestException e) when (e.InnerException is LocalAddressException)
            {
                throw PullException.InvalidSource(
                    $"{Describe(current)} is on the local network ({e.InnerException.Message}); a pull asked for over the API fetches from public addresses and the hub only. Allow it with EdgeServer:Pull:AllowPrivateAddresses, or pull on the box with `EdgeServer pull`.");
            }
            catch (HttpRequestException e)
            {
                throw PullException.Upstream($"{Describe(current)} could not be reached ({e.Message}).", transient: true, e);
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                throw PullException.Upstream($"{Describe(current)} did not answer within {_headersTimeout.TotalSeconds:0} s.", transient: true, e);
            }

            linkedSize ??= Header(response, "x-linked-size") is { } size && long.TryParse(size, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : null;
            linkedEtag ??= Header(response, "x-linked-etag");
            if ((int)response.StatusCode is 301 or 302 or 303 or 307 or 308)
            {
                var location = response.Headers.Location;
                response.Dispose();
                if (location is null)
                {
                    throw PullException.Upstream($"{Describe(current)} redirects without saying where to.");
                }

                var next = location.IsAbsoluteUri ? location : new Uri(current, location);
                if (next.Scheme is not ("http" or "https"))
                {
                    throw PullException.Upstream($"{Describe(current)} redirects to a {next.Scheme}: address, which is not followed.");
                }

                if (current.Scheme == "https" && next.Scheme == "http")
                {
                    throw PullException.Upstream($"{Describe(current)} redirects from https to plain http ({Describe(next)}), which is not followed.");
                }

                current = next;
                continue;
            }

            return new PullResponse(response, current, linkedSize, linkedEtag);
        }
    }

    /// <summary>
    /// Turns an unsuccessful status into the error a user can act on. The hub refusing its token is a 502, not a 401
    /// or 403 of this server's own, which a client would take for a wrong API key.
    /// </summary>
    public PullException Failure(HttpResponseMessage response, Uri url, string what) => (int)response.StatusCode switch
    {
        401 => new PullException(_token is null
                ? $"{what} needs a Hugging Face token (a gated or private repository): set the HF_TOKEN environment variable."
                : $"{what}: the hub refused the token in HF_TOKEN (401).", StatusCodes.Status502BadGateway, "upstream_unauthorized"),
        403 => new PullException($"{what}: access refused (403). A gated repository: accept its terms on the hub with the account whose token is in HF_TOKEN.",
            StatusCodes.Status502BadGateway, "upstream_forbidden"),
        404 => PullException.NotFound($"{what} was not found ({Describe(url)} answered 404).{(_token is null && SameOrigin(url, _hub) ? " A private repository needs HF_TOKEN." : string.Empty)}"),
        408 or 425 or 429 or >= 500 => PullException.Upstream($"{Describe(url)} answered {(int)response.StatusCode} {response.ReasonPhrase}.", transient: true),
        var status => PullException.Upstream($"{Describe(url)} answered {status} {response.ReasonPhrase} for {what}."),
    };

    private sealed class LocalAddressException(string message) : IOException(message);

    private IPAddress[]? _hubAddresses;

    private async ValueTask<Stream> ConnectPublicAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host.Trim('[', ']'), out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
        _hubAddresses ??= IPAddress.TryParse(_hub.Host.Trim('[', ']'), out var hubLiteral) ? [hubLiteral] : await Dns.GetHostAddressesAsync(_hub.Host, cancellationToken);
        var allowed = addresses.Where(a => IsPublic(a) || (context.DnsEndPoint.Port == _hub.Port && _hubAddresses.Contains(a))).ToArray();
        if (allowed.Length == 0)
        {
            throw new LocalAddressException($"{host} is {(addresses.Length == 0 ? "not resolved" : string.Join(", ", addresses.Select(a => a.ToString())))}");
        }

        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken);
            return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Whether an address is on the public internet: not loopback, private, link-local, shared (CGNAT), multicast or reserved.</summary>
    public static bool IsPublic(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.IPv6None))
        {
            return false;
        }

        var b = address.GetAddressBytes();
        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
        {
            return !(b[0] is 0 or 10 or 127 or >= 224
                || (b[0] == 100 && b[1] is >= 64 and <= 127)
                || (b[0] == 169 && b[1] == 254)
                || (b[0] == 172 && b[1] is >= 16 and <= 31)
                || (b[0] == 192 && b[1] == 168)
                || (b[0] == 192 && b[1] == 0 && b[2] == 0));
        }

        return !(address.IsIPv6LinkLocal || address.IsIPv6SiteLocal || address.IsIPv6Multicast || address.IsIPv6UniqueLocal
            || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8));
    }

    /// <summary>An address as it may be shown and logged: without its query (a CDN's signature) or user info.</summary>
    public static string Describe(Uri url) => $"{url.Scheme}://{url.Authority}{url.AbsolutePath}";

    private static bool SameOrigin(Uri a, Uri b) =>
        a.Scheme == b.Scheme && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values) ? values.FirstOrDefault() : null;

    public void Dispose() => _client.Dispose();
}

/// <summary>The last response of a request and its redirects; disposing it disposes the response.</summary>
public sealed record PullResponse(HttpResponseMessage Response, Uri Url, long? LinkedSize, string? LinkedEtag) : IDisposable
{
    public void Dispose() => Response.Dispose();
}
