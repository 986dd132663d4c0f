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

    public BoxDirectory(IOptions<EdgeServerOptions> options, GatewayIdentity identity, TimeProvider clock, ILogger<BoxDirectory> logger)
    {
        _settings = options.Value.Gateway;
        _identity = identity;
        _clock = clock;
        _logger = logger;
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false })
        {
            Timeout = TimeSpan.FromSeconds(Math.Min(30, _settings.RefreshSeconds + 5)),
            MaxResponseContentBufferSize = MaxListingBytes,
        };
        _boxes = _settings.Enabled
            ? _settings.Boxes.ToDictionary(b => b.Name, b => new BoxState(b.Name, new Uri(b.Url), [], false, "not read yet"), StringComparer.Ordinal)
            : new Dictionary<string, BoxState>();
    }

    public IReadOnlyCollection<BoxState> Boxes => (IReadOnlyCollection<BoxState>)_boxes.Values;

    public BoxState? Find(string box) => _boxes.GetValueOrDefault(box);

    /// <summary>Whether any box lists the model, reachable or not.</summary>
    public bool Knows(string model) => _boxes.Values.Any(b => b.Models.Any(m => m.Answers(model)));

    /// <summary>Reads every box once now (also what each period does).</summary>
    public Task RefreshAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(_settings.Boxes.Select(b => RefreshAsync(b, cancellationToken)));

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
        var previous = _boxes[box.Name];
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

        var boxes = new Dictionary<string, BoxState>(_boxes, StringComparer.Ordinal) { [box.Name] = next };
        _boxes = boxes;
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
