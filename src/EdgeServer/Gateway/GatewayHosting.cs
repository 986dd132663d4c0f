using System.Text.Json;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.OpenAi;
using EdgeServer.Security;
using EdgeServer.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;
using Yarp.ReverseProxy.Transforms;

namespace EdgeServer.Gateway;

/// <summary>
/// Gateway mode on YARP: one cluster whose destinations are the configured boxes (active GET /health checks, passive
/// checks on failed forwards, least-requests balancing), and one internal route that <see cref="GatewayRouter"/>
/// sends a request to when this server does not have its model. Which boxes may take it is ours to say
/// (<see cref="ChooseBoxesAsync"/>); YARP forwards it whole, streams included.
/// </summary>
public static partial class GatewayHosting
{
    internal const string RouteId = "edgeserver-gateway";
    internal const string ClusterId = "edgeserver-boxes";

    /// <summary>The model a request names, kept for the proxy step.</summary>
    private const string ModelItem = "edgeserver.gateway.model";

    public static void AddEdgeServerGateway(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.TryAddSingleton<GatewayIdentity>();
        services.TryAddSingleton(sp => new Discovery.AnnouncedBoxes(sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<IOptions<EdgeServerOptions>>().Value.Gateway.Discovery.MaxBoxes));
        services.TryAddSingleton<BoxDirectory>();
        services.AddHostedService<Discovery.MdnsService>();
        var settings = builder.Configuration.GetSection($"{EdgeServerOptions.Section}:Gateway").Get<GatewaySettings>() ?? new();
        if (!settings.Enabled)
        {
            return;
        }

        services.AddHostedService(sp => sp.GetRequiredService<BoxDirectory>());
        services.TryAddSingleton<GatewayRouter>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPassiveHealthCheckPolicy, FailedForwardPolicy>());
        services.AddReverseProxy()
            .LoadFromMemory([Route()], [Cluster(settings, settings.Boxes.Where(b => b.Url.Length > 0))])
            .AddTransforms(transforms => transforms.AddRequestTransform(context =>
            {
                // The client's key is for this gateway only; each box gets its own.
                var headers = context.ProxyRequest.Headers;
                headers.Remove("Authorization");
                headers.Remove("x-api-key");
                var http = context.HttpContext;
                var box = http.GetReverseProxyFeature().ProxiedDestination?.DestinationId;
                if (settings.Boxes.FirstOrDefault(b => b.Name == box)?.ApiKey is { Length: > 0 } key)
                {
                    headers.Authorization = new("Bearer", key.Trim());
                }

                headers.Remove(GatewayIdentity.HopHeader);
                var identity = http.RequestServices.GetRequiredService<GatewayIdentity>();
                headers.TryAddWithoutValidation(GatewayIdentity.HopHeader, string.Join(',', http.Request.Headers[GatewayIdentity.HopHeader].Append(identity.Id)));
                return ValueTask.CompletedTask;
            }));
    }

    internal static RouteConfig Route() => new()
    {
        RouteId = RouteId,
        ClusterId = ClusterId,
        // Never matched by a URL a client sends: GatewayRouter hands requests to this route's endpoint itself.
        Match = new RouteMatch { Path = "/_edgeserver/gateway/{**rest}" },
        Order = int.MaxValue,
    };

    /// <summary>The boxes as YARP's one cluster: settings' boxes at start-up, then those BoxDirectory resolves (announced ones too).</summary>
    internal static ClusterConfig Cluster(GatewaySettings settings, IEnumerable<GatewayBox> boxes) => new()
    {
        ClusterId = ClusterId,
        LoadBalancingPolicy = LoadBalancingPolicies.LeastRequests,
        HealthCheck = new HealthCheckConfig
        {
            Active = new ActiveHealthCheckConfig
            {
                Enabled = true,
                Interval = TimeSpan.FromSeconds(settings.HealthCheckSeconds),
                // A busy board may answer slowly; a probe that is late is not yet a dead box.
                Timeout = TimeSpan.FromSeconds(10),
                Policy = HealthCheckConstants.ActivePolicy.ConsecutiveFailures,
                Path = "/health",
            },
            Passive = new PassiveHealthCheckConfig
            {
                Enabled = true,
                Policy = FailedForwardPolicy.PolicyName,
                ReactivationPeriod = TimeSpan.FromSeconds(settings.ReactivationSeconds),
            },
        },
        // Response buffering stays off (YARP's default), so server-sent events pass token by token.
        HttpRequest = new ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromSeconds(settings.ActivityTimeoutSeconds) },
        Destinations = boxes.ToDictionary(b => b.Name, b => new DestinationConfig { Address = b.Url }, StringComparer.Ordinal),
    };

    /// <summary>Refuses a request that came back to this gateway, then, after authentication, routes by model.</summary>
    public static void UseEdgeServerGateway(this WebApplication app)
    {
        var identity = app.Services.GetRequiredService<GatewayIdentity>();
        app.Use(async (context, next) =>
        {
            if (identity.HasSeen(context.Request))
            {
                LogLoop(app.Logger, context.Request.Method, context.Request.Path);
                await OpenAiResults.WriteErrorAsync(context, new OpenAiException(StatusCodes.Status508LoopDetected,
                    "The request came back to the gateway that forwarded it: a box's Url in EdgeServer:Gateway:Boxes points at the gateway itself.",
                    "server_error", null, "gateway_loop"));
                return;
            }

            await next(context);
        });
    }

    /// <summary>Where authentication has run and authorization has not: a request for a model found only on boxes goes to the proxy.</summary>
    public static void UseEdgeServerGatewayRouting(this WebApplication app)
    {
        if (app.Services.GetService<GatewayRouter>() is { } router)
        {
            app.Use(router.InvokeAsync);
        }
    }

    /// <summary>The proxy pipeline: choose the boxes that may take the request, then YARP's balancing and health steps.</summary>
    public static void MapEdgeServerGateway(this WebApplication app)
    {
        if (app.Services.GetService<GatewayRouter>() is null)
        {
            return;
        }

        app.MapReverseProxy(proxy =>
        {
            proxy.Use(ChooseBoxesAsync);
            proxy.UseSessionAffinity();
            proxy.UseLoadBalancing();
            proxy.UsePassiveHealthChecks();
        });
    }

    /// <summary>
    /// Of the healthy boxes that list the model: those with it loaded, then those with the shortest queue (the larger
    /// of what the box last reported and what this gateway has in flight to it); YARP's least-requests balancing
    /// picks among equals. None healthy: 503; none listing it (any more): the usual 404.
    /// </summary>
    private static async Task ChooseBoxesAsync(HttpContext context, Func<Task> next)
    {
        if (context.Items[ModelItem] is not string model)
        {
            await OpenAiResults.WriteErrorAsync(context, new OpenAiException(StatusCodes.Status404NotFound,
                $"Unknown request URL: {context.Request.Method} {context.Request.Path}.", "invalid_request_error", null, "unknown_url"));
            return;
        }

        var directory = context.RequestServices.GetRequiredService<BoxDirectory>();
        var feature = context.GetReverseProxyFeature();
        var holders = feature.AllDestinations.Where(d => directory.Find(d.DestinationId)?.Models.Any(m => m.Answers(model)) == true).ToList();
        var candidates = feature.AvailableDestinations
            .Select(d => (Destination: d, Box: directory.Find(d.DestinationId)))
            .Where(c => c.Box is { Reachable: true })
            .Select(c => (c.Destination, Model: c.Box!.Models.FirstOrDefault(m => m.Answers(model))))
            .Where(c => c.Model is not null)
            .ToList();
        if (candidates.Count == 0)
        {
            var error = holders.Count == 0
                ? OpenAiException.From(new ModelNotFoundException(model))
                : new OpenAiException(StatusCodes.Status503ServiceUnavailable,
                    $"The model '{model}' is on {string.Join(", ", holders.Select(h => h.DestinationId))}, and none of them answers now. Try again later.",
                    "server_error", "model", "boxes_unavailable") { RetryAfter = TimeSpan.FromSeconds(10) };
            await OpenAiResults.WriteErrorAsync(context, error);
            return;
        }

        // A box's queue as its last model list gave it is up to RefreshSeconds old; the requests this gateway has in
        // flight to it are exact. The larger of the two counts, so a burst does not all go to the box that looked
        // idle at the last read.
        static int Queue((DestinationState Destination, BoxModel? Model) c) => Math.Max(c.Model!.Requests, c.Destination.ConcurrentRequestCount);
        var loaded = candidates.Any(c => c.Model!.Loaded);
        var shortest = candidates.Where(c => c.Model!.Loaded == loaded).Min(Queue);
        feature.AvailableDestinations = candidates.Where(c => c.Model!.Loaded == loaded && Queue(c) == shortest).Select(c => c.Destination).ToList();
        await next();

        var box = feature.ProxiedDestination?.DestinationId ?? "none";
        var failure = context.Features.Get<IForwarderErrorFeature>();
        context.RequestServices.GetRequiredService<HostMetrics>().Forwarded(box, context.Response.StatusCode, failure?.Error.ToString());
        if (failure is not null && !context.Response.HasStarted)
        {
            await OpenAiResults.WriteErrorAsync(context, new OpenAiException(
                failure.Error == ForwarderError.RequestTimedOut ? StatusCodes.Status504GatewayTimeout : StatusCodes.Status502BadGateway,
                $"The box {box} did not answer ({failure.Error}); it is left out for now. Try again.",
                "server_error", null, "box_failed"));
        }
    }

    /// <summary>Sends a request for a model this server does not serve, but a box does, to the proxy route.</summary>
    internal sealed class GatewayRouter(BoxDirectory boxes, IInferenceEngine engine, ApiKeyStore keys, EndpointDataSource endpoints)
    {
        private Endpoint? _proxy;

        public async Task InvokeAsync(HttpContext context, RequestDelegate next)
        {
            var request = context.Request;
            if (!HttpMethods.IsPost(request.Method)
                || !EdgeServerHosting.IsApiPath(request.Path)
                || request.Path.StartsWithSegments("/v1/models")
                || context.GetEndpoint() is not RouteEndpoint
                || (keys.Enabled && context.User.Identity?.IsAuthenticated != true))
            {
                await next(context);
                return;
            }

            // Anything without a string model goes on to this server's own endpoint, which answers it as it always has.
            if (await ReadModelAsync(request, context.RequestAborted) is { } name
                && BoxModel(name, request.Path) is { } model)
            {
                context.Items[ModelItem] = model;
                context.SetEndpoint(_proxy ??= endpoints.Endpoints.First(e => e.Metadata.GetMetadata<RouteModel>()?.Config.RouteId == RouteId));
            }

            await next(context);
        }

        /// <summary>
        /// The box model a request names, or null when this server serves it (or nobody does). Ollama's clients name
        /// models as /api/tags shows them, "name:latest": on its API the name without the tag counts too, as each
        /// server resolves it itself.
        /// </summary>
        private string? BoxModel(string name, PathString path)
        {
            const string latest = ":latest";
            var untagged = path.StartsWithSegments("/api") && name.EndsWith(latest, StringComparison.Ordinal) ? name[..^latest.Length] : null;
            bool Local(string n) => engine.FindModel(n) is { Status: not ModelStatus.Unavailable };
            if (Local(name) || (untagged is not null && Local(untagged)))
            {
                return null;
            }

            return boxes.Knows(name) ? name : untagged is not null && boxes.Knows(untagged) ? untagged : null;
        }

        /// <summary>The body's "model", read within the server's body limit and left to be read again.</summary>
        internal static async Task<string?> ReadModelAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            var limit = request.HttpContext.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
            request.EnableBuffering(64 * 1024, limit ?? long.MaxValue);
            try
            {
                using var document = await JsonDocument.ParseAsync(request.Body, default, cancellationToken);
                return document.RootElement.ValueKind == JsonValueKind.Object
                    && document.RootElement.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.String
                    ? model.GetString()
                    : null;
            }
            catch (JsonException)
            {
                return null;
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                throw new OpenAiException(StatusCodes.Status413PayloadTooLarge,
                    $"The request body is larger than the limit of {limit} bytes (setting EdgeServer:Limits:MaxRequestBody).",
                    "invalid_request_error", null, "request_too_large");
            }
            finally
            {
                request.Body.Position = 0;
            }
        }
    }

    /// <summary>YARP's passive check: a box that failed a forward (refused, reset, silent past the timeout) is out until reactivation.</summary>
    internal sealed class FailedForwardPolicy(IDestinationHealthUpdater updater) : IPassiveHealthCheckPolicy
    {
        public const string PolicyName = "EdgeServerFailedForward";

        public string Name => PolicyName;

        public void RequestProxied(HttpContext context, ClusterState cluster, DestinationState destination)
        {
            var error = context.Features.Get<IForwarderErrorFeature>()?.Error;
            if (error is null or ForwarderError.None or ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled
                or ForwarderError.RequestBodyClient or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient)
            {
                return;
            }

            updater.SetPassive(cluster, destination, DestinationHealth.Unhealthy, cluster.Model.Config.HealthCheck?.Passive?.ReactivationPeriod ?? TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>GET /v1/models on a gateway: this server's models and every box's, each with the boxes that have it.</summary>
    internal static List<ModelDto> Union(IReadOnlyList<ModelDto> local, BoxDirectory directory)
    {
        var models = local.Select(m => m with { Details = m.Details with { Boxes = ["local"] } }).ToList();
        foreach (var box in directory.Boxes)
        {
            foreach (var model in box.Models)
            {
                var index = models.FindIndex(m => m.Id == model.Id);
                if (index >= 0)
                {
                    var known = models[index];
                    models[index] = known with { Details = known.Details with { Boxes = [.. known.Details.Boxes ?? [], box.Name] } };
                    continue;
                }

                ModelDto? dto;
                try
                {
                    dto = model.Entry.Deserialize(OpenAiJsonContext.Web.ModelDto);
                }
                catch (JsonException)
                {
                    dto = null;
                }

                if (dto is { Details: not null })
                {
                    models.Add(dto with { Details = dto.Details with { Boxes = [box.Name] } });
                }
            }
        }

        return models;
    }

    [LoggerMessage(EventId = EventIds.GatewayLoop, Level = LogLevel.Error, Message = "Gateway: {Method} {Path} came back to this gateway; a box's Url points at the gateway itself")]
    private static partial void LogLoop(ILogger logger, string method, string path);
}
