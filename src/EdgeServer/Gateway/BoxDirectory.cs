using System.Text.Json;
using EdgeServer.Hosting;
using Microsoft.Extensions.Options;

namespace EdgeServer.Gateway;

/// <summary>A model as a box lists it: its names, whether it is loaded, and the requests it holds.</summary>
public sealed record BoxModel(string Id, IReadOnlyList<string> Aliases, string Status, int Requests, JsonElement Entry)
{
    public bool Loaded => Status == "loaded";

    public bool Answers(string name) => Id == name || Aliases.Contains(name, StringComparer.Ordinal);
}

/// <summary>What the gateway last read from one box. <see cref="Reachable"/> false keeps the last listing, so a model
/// that lives only on a box that went down is answered with 503 rather than "does not exist".</summary>
public sealed record BoxState(string Name, Uri Url, IReadOnlyList<BoxModel> Models, bool Reachable, string? Problem);

/// <summary>
/// Reads every box's GET /v1/models every <see cref="GatewaySettings.RefreshSeconds"/>: which models it has, loaded or
/// not, and how many requests each holds. A box that does not answer, or answers with anything but a model list, is
/// not chosen until it does.
/// </summary>
public sealed partial class BoxDirectory : BackgroundService
{
    /// <summary>The largest /v1/models answer read from a box.</summary>
    private const int MaxListingBytes = 4 * 1024 * 1024;
    private readonly GatewaySettings _settings;
    private readonly GatewayIdentity _identity;
    private readonly TimeProvider _clock;
    private readonly ILogger<BoxDirectory> _logger;
    private readonly HttpClient _http;
    private volatile IReadOnlyDictionary<string, BoxState> _boxes;

    private readonly Discovery.AnnouncedBoxes _announced;
    private readonly IServiceProvider _services;
    private readonly string? _ownName;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _told = new(StringComparer.Ordinal);
    private readonly Lock _swap = new();
    private volatile IReadOnlyList<GatewayBox> _current;

    public BoxDirectory(IOptions<EdgeServerOptions> options, GatewayIdentity identity, Discovery.AnnouncedBoxes announced, IServiceProvider services, TimeProvider clock,
        ILogger<BoxDirectory> logger)
    {
        _settings = options.Value.Gateway;
        _announced = announced;
        _services = services;
        _ownName = options.Value.Discovery.Announce ? options.Value.Discovery.Name() : null;
        _current = _settings.Boxes.Where(b => b.Url.Length > 0).ToList();
        _identity = identity;
        _clock = clock;
        _logger = logger;
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false })
        {
            Timeout = TimeSpan.FromSeconds(Math.Min(30, _settings.RefreshSeconds + 5)),
            MaxResponseContentBufferSize = MaxListingBytes,
        };
        _boxes = _settings.Enabled
            ? _current.ToDictionary(b => b.Name, b => new BoxState(b.Name, new Uri(b.Url), [], false, "not read yet"), StringComparer.Ordinal)
            : new Dictionary<string, BoxState>();
    }

    public IReadOnlyCollection<BoxState> Boxes => (IReadOnlyCollection<BoxState>)_boxes.Values;

    public BoxState? Find(string box) => _boxes.GetValueOrDefault(box);

    /// <summary>Whether any box lists the model, reachable or not.</summary>
    public bool Knows(string model) => _boxes.Values.Any(b => b.Models.Any(m => m.Answers(model)));

    /// <summary>Takes in the boxes announced since, then reads every box once now (also what each period does).</summary>
    public Task RefreshAsync(CancellationToken cancellationToken)
    {
        Sync();
        return Task.WhenAll(_current.Select(b => RefreshAsync(b, cancellationToken)));
    }

    /// <summary>
    /// The boxes to use: those with a Url in settings; those named in settings without one, at the address they
    /// announce (with the key the settings give); and, with AcceptKeyless, announced boxes that need no key. An
    /// announced box that needs a key no entry gives, or that is announced at two addresses at once (one may be an
    /// impostor), is logged and left out.
    /// </summary>
    internal List<GatewayBox> Resolve()
    {
        var boxes = _settings.Boxes.Where(b => b.Url.Length > 0).ToList();
        if (!_settings.Discovery.Enabled)
        {
            return boxes;
        }

        var announced = _announced.Current().Where(a => !string.Equals(a.Name, _ownName, StringComparison.OrdinalIgnoreCase)).ToList();
        foreach (var a in announced)
        {
            var entry = _settings.Boxes.FirstOrDefault(b => string.Equals(b.Name, a.Name, StringComparison.OrdinalIgnoreCase));
            string? ignored = null;
            if (a.Conflicted)
            {
                ignored = "it is announced at two addresses at once (is another device using its name?)";
            }
            else if (entry is { Url.Length: 0 })
            {
                boxes.Add(new GatewayBox { Name = entry.Name, Url = a.Url.ToString(), ApiKey = entry.ApiKey });
            }
            else if (entry is not null)
            {
                continue; // its Url in settings wins
            }
            else if (a.KeyRequired)
            {
                ignored = "it requires a key, and no EdgeServer:Gateway:Boxes entry of that name gives one";
            }
            else if (!_settings.Discovery.AcceptKeyless)
            {
                ignored = "boxes without keys are used only with EdgeServer:Gateway:Discovery:AcceptKeyless";
            }
            else
            {
                boxes.Add(new GatewayBox { Name = a.Name, Url = a.Url.ToString() });
            }

            if (ignored is not null && _told.TryAdd($"{a.Name} {a.Url} {ignored}", true))
            {
                LogIgnored(_logger, a.Name, a.Url, ignored);
            }
            else if (ignored is null && _told.TryAdd($"{a.Name} {a.Url}", true))
            {
                LogAnnounced(_logger, a.Name, a.Url);
            }
        }

        return boxes;
    }

    /// <summary>Brings the table and the proxy's destinations in line with <see cref="Resolve"/>.</summary>
    private void Sync()
    {
        var wanted = Resolve();
        var before = _current;
        if (wanted.Count == before.Count && wanted.All(w => before.Any(b => b.Name == w.Name && b.Url == w.Url)))
        {
            return;
        }

        var boxes = new Dictionary<string, BoxState>(StringComparer.Ordinal);
        foreach (var box in wanted)
        {
            boxes[box.Name] = _boxes.TryGetValue(box.Name, out var known) && known.Url == new Uri(box.Url)
                ? known
                : new BoxState(box.Name, new Uri(box.Url), [], false, "not read yet");
        }

        lock (_swap)
        {
            _boxes = boxes;
        }

        _current = wanted;
        _services.GetService<Yarp.ReverseProxy.Configuration.InMemoryConfigProvider>()?.Update(
            [GatewayHosting.Route()], [GatewayHosting.Cluster(_settings, wanted)]);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_settings.Enabled)
        {
            return;
        }

        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_settings.RefreshSeconds), _clock);
        do
        {
            await RefreshAsync(stoppingToken);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    private async Task RefreshAsync(GatewayBox box, CancellationToken cancellationToken)
    {
        if (!_boxes.TryGetValue(box.Name, out var previous))
        {
            return; // no longer announced
        }

        BoxState next;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(previous.Url, "v1/models"));
            request.Headers.TryAddWithoutValidation(GatewayIdentity.HopHeader, _identity.Id);
            if (!string.IsNullOrWhiteSpace(box.ApiKey))
            {
                request.Headers.Authorization = new("Bearer", box.ApiKey.Trim());
            }

            using var response = await _http.SendAsync(request, cancellationToken);
            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            if (response.StatusCode == System.Net.HttpStatusCode.LoopDetected)
            {
                next = previous with { Models = [], Reachable = false, Problem = "its address is this gateway itself" };
            }
            else if (!response.IsSuccessStatusCode)
            {
                next = previous with { Reachable = false, Problem = $"GET /v1/models answered {(int)response.StatusCode}" };
            }
            else
            {
                next = Parse(body) is { } models
                    ? previous with { Models = models, Reachable = true, Problem = null }
                    : previous with { Models = [], Reachable = false, Problem = "its GET /v1/models is not a model list" };
            }
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            next = previous with { Reachable = false, Problem = e.Message };
        }

        if (next.Problem != previous.Problem && (next.Problem is not null || previous.Problem != "not read yet"))
        {
            if (next.Problem is null)
            {
                LogBoxBack(_logger, box.Name, next.Models.Count);
            }
            else
            {
                LogBoxProblem(_logger, box.Name, next.Problem);
            }
        }

        lock (_swap)
        {
            // Only while the box is still the one read: an announcement may have moved or removed it meanwhile.
            if (_boxes.TryGetValue(box.Name, out var still) && still.Url == previous.Url)
            {
                _boxes = new Dictionary<string, BoxState>(_boxes, StringComparer.Ordinal) { [box.Name] = next };
            }
        }
    }

    /// <summary>The models of an EdgeServer /v1/models answer; null for anything else.</summary>
    internal static IReadOnlyList<BoxModel>? Parse(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.Array)
            {
                return null;
            }

            var models = new List<BoxModel>();
            foreach (var entry in data.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String)
                {
                    return null;
                }

                var details = entry.TryGetProperty("details", out var d) && d.ValueKind == JsonValueKind.Object ? d : default;
                string status = details.ValueKind == JsonValueKind.Object && details.TryGetProperty("status", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString()! : "available";
                var requests = details.ValueKind == JsonValueKind.Object && details.TryGetProperty("requests", out var r) && r.TryGetInt32(out var count) ? count : 0;
                var aliases = details.ValueKind == JsonValueKind.Object && details.TryGetProperty("aliases", out var a) && a.ValueKind == JsonValueKind.Array
                    ? a.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToArray()
                    : [];
                if (status != "unavailable")
                {
                    models.Add(new BoxModel(id.GetString()!, aliases, status, Math.Max(0, requests), entry.Clone()));
                }
            }

            return models;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = EventIds.BoxAnnounced, Level = LogLevel.Information, Message = "Gateway: box {Box} found by its announcement at {Url}")]
    private static partial void LogAnnounced(ILogger logger, string box, Uri url);

    [LoggerMessage(EventId = EventIds.BoxAnnouncementIgnored, Level = LogLevel.Warning, Message = "Gateway: the box {Box} announced at {Url} is not used: {Why}")]
    private static partial void LogIgnored(ILogger logger, string box, Uri url, string why);

    [LoggerMessage(EventId = EventIds.BoxProblem, Level = LogLevel.Warning, Message = "Gateway: box {Box} is left out: {Problem}")]
    private static partial void LogBoxProblem(ILogger logger, string box, string problem);

    [LoggerMessage(EventId = EventIds.BoxBack, Level = LogLevel.Information, Message = "Gateway: box {Box} answers, with {Models} models")]
    private static partial void LogBoxBack(ILogger logger, string box, int models);
}

/// <summary>This gateway's id in the hop header, so a request that comes back to it (a box address that is the gateway itself) is refused.</summary>
public sealed class GatewayIdentity
{
    /// <summary>The gateways a request has passed, comma-separated.</summary>
    public const string HopHeader = "X-EdgeServer-Gateway";

    public string Id { get; } = Guid.NewGuid().ToString("N")[..12];

    public bool HasSeen(HttpRequest request) =>
        request.Headers[HopHeader].SelectMany(v => (v ?? string.Empty).Split(',', StringSplitOptions.TrimEntries)).Contains(Id, StringComparer.Ordinal);
}
