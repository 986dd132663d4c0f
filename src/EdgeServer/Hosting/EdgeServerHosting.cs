using EdgeServer.Inference;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Scheduling;
using EdgeServer.Anthropic;
using EdgeServer.Gateway;
using EdgeServer.Ollama;
using EdgeServer.OpenAi;
using EdgeServer.Pull;
using EdgeServer.Security;
using EdgeServer.Telemetry;
using EdgeServer.WebUi;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace EdgeServer.Hosting;

/// <summary>Wires configuration, the inference engine and the HTTP surface.</summary>
public static class EdgeServerHosting
{
    /// <summary>Short command-line switches for the common settings.</summary>
    public static readonly IReadOnlyDictionary<string, string> SwitchMappings = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["--model"] = "EdgeServer:Model",
        ["--models-dir"] = "EdgeServer:ModelsDirectory",
        ["--native-dir"] = "EdgeServer:Runtime:NativeDirectory",
        ["--threads"] = "EdgeServer:Runtime:Threads",
        ["--slots"] = "EdgeServer:Scheduler:Slots",
        ["--ctx-size"] = "EdgeServer:Scheduler:ContextPerSlot",
    };

    public static WebApplicationBuilder CreateBuilder(string[] args)
    {
        // appsettings.json sits at the repository root and is copied beside the binary; prefer the working
        // directory's copy so `dotnet run` from the root and a published folder both find it.
        var contentRoot = File.Exists(Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json"))
            ? Directory.GetCurrentDirectory()
            : AppContext.BaseDirectory;
        // Every setting is taken at start-up, so the settings files are read once, not watched: a watch is recursive
        // over the content root (a repository with its node_modules when run from one), paid at start-up and in
        // memory. The host reads this switch from its own configuration, so it goes in last, over any given.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [.. args, "--hostBuilder:reloadConfigOnChange=false"],
            ContentRootPath = contentRoot,
        });
        builder.Configuration.AddCommandLine(args, SwitchMappings.ToDictionary());
        builder.AddEdgeServer();
        return builder;
    }

    private static void AddApiDocs(IServiceCollection services)
    {
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new Microsoft.OpenApi.OpenApiInfo
            {
                Title = "EdgeServer",
                Version = "v1",
                Description = "OpenAI-compatible API of a local LLM server. Point an OpenAI SDK at <this host>/v1.",
            });
            // An instance, not a type to activate: a trimmed (Native AOT) build keeps no constructor to find by reflection.
            c.OperationFilterDescriptors.Add(new FilterDescriptor { Type = typeof(ApiExamples), FilterInstance = new ApiExamples() });
        });
    }

    public static WebApplicationBuilder AddEdgeServer(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        builder.Host.UseSystemd();
        var grace = builder.Configuration.GetValue($"{EdgeServerOptions.Section}:ShutdownGraceSeconds", 30);
        services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(Math.Clamp(grace, 0, 3600) + 5));
        builder.AddEdgeServerTelemetry();
        builder.AddEdgeServerGateway();
        AddApiDocs(services);
        // A singleton, so its remembered success lasts: AddCheck<T> would otherwise create one per probe.
        services.TryAddSingleton<ReadinessCheck>();
        services.AddHealthChecks().AddCheck<ReadinessCheck>("ready");
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, OpenAiJsonContext.Web);
            // Swashbuckle describes types with these options: snake_case, as on the wire.
            o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
        });
        services.AddOptions<EdgeServerOptions>()
            .BindConfiguration(EdgeServerOptions.Section)
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EdgeServerOptions>, EdgeServerOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EdgeServerOptions>, EdgeServerOptionsFileValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EdgeServerOptions>, ModelEntriesBindingCheck>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<RequestDeadline>();
        services.TryAddSingleton<GenerationRunner>();
        services.TryAddSingleton<ResponseStore>();
        services.TryAddSingleton<Pull.PullSlots>();
        services.TryAddScoped<GenerationOutcome>();
        // Registered by its interface only; the container still disposes it, as it does every IDisposable it creates.
        services.TryAddSingleton<IInferenceEngine>(CreateEngine);
        services.AddHostedService<EngineStartup>();
        services.TryAddSingleton<InFlightRequests>();
        services.AddHostedService<GracefulShutdown>();
        services.AddHostedService<SystemdWatchdog>();
        services.TryAddSingleton<Device.ThermalMonitor>();
        services.AddHostedService(sp => sp.GetRequiredService<Device.ThermalMonitor>());
        services.TryAddSingleton<Device.EnergyMonitor>();
        services.AddHostedService(sp => sp.GetRequiredService<Device.EnergyMonitor>());

        services.TryAddSingleton(sp => new ApiKeyStore(sp.GetRequiredService<IOptions<EdgeServerOptions>>().Value.Security));
        // The key scheme exists only with keys: without any, no request is authenticated at all, so none is logged
        // or counted (aspnetcore.authentication metrics) as an authentication failure.
        services.AddAuthentication();
        services.AddOptions<AuthenticationOptions>().Configure<ApiKeyStore>((authentication, keys) =>
        {
            if (keys.Enabled)
            {
                authentication.AddScheme<ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
                authentication.DefaultScheme = ApiKeyAuthenticationHandler.SchemeName;
            }
        });
        // With keys, every request needs one unless its endpoint allows anonymous callers (health) or a setting
        // opens it: the fallback policy also covers middleware without endpoints (Swagger) and unknown paths.
        services.AddAuthorization();
        services.AddOptions<AuthorizationOptions>().Configure<ApiKeyStore>((authorization, keys) =>
        {
            if (keys.Enabled)
            {
                authorization.FallbackPolicy = new AuthorizationPolicyBuilder(ApiKeyAuthenticationHandler.SchemeName).RequireAuthenticatedUser().Build();
            }
        });
        services.AddCors();
        // Also picks the default address (loopback without keys) when none is configured.
        services.AddHostedService<NetworkExposureCheck>();
        services.TryAddSingleton<ConnectionLimits>();
        // Registered after Kestrel's socket transport, so Kestrel binds TCP endpoints with this one.
        services.AddSingleton<IConnectionListenerFactory, SocketListenerFactory>();
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<EdgeServerOptions>, ConnectionLimits>((kestrel, options, connections) =>
        {
            var settings = options.Value;
            kestrel.Limits.MaxRequestBodySize = settings.Limits.MaxRequestBodyBytes;
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(settings.Connections.KeepAliveTimeoutSeconds);
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(settings.Connections.RequestHeadersTimeoutSeconds);
            kestrel.ConfigureEndpointDefaults(listen => listen.Use(connections.Apply));
        });
        return builder;
    }

    /// <summary>The API routes (OpenAI's and Anthropic's under /v1, Ollama's under /api, tokenize): logged, counted, traced.</summary>
    internal static bool IsApiPath(PathString path) =>
        path.StartsWithSegments("/v1") || path.StartsWithSegments("/api") || path.StartsWithSegments("/tokenize") || path.StartsWithSegments("/detokenize");

    public static WebApplication MapEdgeServer(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<EdgeServerOptions>>().Value;
        app.Use(app.Services.GetRequiredService<InFlightRequests>().TrackAsync);
        if (options.Gateway.Enabled)
        {
            app.UseEdgeServerGateway();
        }

        if (options.Security.CorsOrigins.Count > 0)
        {
            app.UseCors(policy => policy.WithOrigins([.. options.Security.CorsOrigins]).AllowAnyHeader().AllowAnyMethod());
        }

        app.UseWhen(c => IsApiPath(c.Request.Path), v1 => v1.UseMiddleware<RequestLogMiddleware>().UseMiddleware<OpenAiErrorMiddleware>());
        // Swagger is middleware, not endpoints: before authorization it is open, after it the key is needed.
        if (options.Security.ApiDocsWithoutKey)
        {
            UseApiDocs(app);
        }

        app.UseAuthentication();
        app.UseEdgeServerGatewayRouting();
        app.UseAuthorization();
        if (!options.Security.ApiDocsWithoutKey)
        {
            UseApiDocs(app);
        }

        // Health stays open with keys set: container and load-balancer probes carry none.
        app.MapGet("/health", (IInferenceEngine engine) => engine.CheckHealth() is { Healthy: false } health
                ? OpenAiResults.Json(new HealthResponse("unhealthy") { Problems = health.Problems }, OpenAiJsonContext.Web.HealthResponse, StatusCodes.Status503ServiceUnavailable)
                : OpenAiResults.Json(new HealthResponse("ok"), OpenAiJsonContext.Web.HealthResponse))
            .WithTags("Health").WithSummary("Alive: the process answers and every loaded model's decode loop runs (503 with the problems if not).").AllowAnonymous();
        app.MapHealthChecks("/health/ready", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions { ResponseWriter = ReadinessCheck.WriteAsync })
            .WithTags("Health").WithSummary("Ready: a model is loaded and a decode works.").AllowAnonymous();
        app.MapEdgeServerTelemetry();
        if (options.WebUi.Enabled)
        {
            app.MapWebUi();
        }

        var v1 = app.MapOpenAiApi();
        v1.MapModelPull();
        var tokenizer = app.MapTokenizer();
        var ollama = app.MapOllamaApi();
        var anthropic = app.MapAnthropicApi();
        app.MapEdgeServerGateway();
        if (app.Services.GetRequiredService<ApiKeyStore>().Enabled)
        {
            foreach (var group in new[] { v1, tokenizer, ollama, anthropic })
            {
                group.RequireAuthorization(policy => policy.AddAuthenticationSchemes(ApiKeyAuthenticationHandler.SchemeName).RequireAuthenticatedUser());
            }
        }

        return app;
    }

    private static void UseApiDocs(WebApplication app)
    {
        app.UseSwagger();
        app.UseSwaggerUI(o => o.DocumentTitle = "EdgeServer API");
    }

    private static IInferenceEngine CreateEngine(IServiceProvider services)
    {
        var options = services.GetRequiredService<IOptions<EdgeServerOptions>>().Value;
        static string Resolve(string path) => EdgeServerOptionsFileValidator.Resolve(path);

        var configured = new List<ModelSource>();
        if (!string.IsNullOrWhiteSpace(options.Model))
        {
            configured.Add(new ModelSource(ModelCatalog.IdFromPath(options.Model), Resolve(options.Model)));
        }

        configured.AddRange(options.Models.Select(m => new ModelSource(m.Id, Resolve(m.Path)) { Settings = m.ToSettings() }));
        var engineOptions = new EngineOptions
        {
            NativeDirectory = string.IsNullOrWhiteSpace(options.Runtime.NativeDirectory) ? null : Resolve(options.Runtime.NativeDirectory),
            Models = configured,
            ModelsDirectory = Resolve(options.ModelsDirectory),
            UseMmap = options.Runtime.UseMmap,
            Repack = options.Runtime.Repack,
            Limits = options.Limits.ToGenerationLimits(),
            MemoryBudget = options.Memory.ToBudget(),
            KeepAlive = options.Memory.KeepAliveTime,
            ProbeCommand = ProbeChild.Command(),
            ProbeTimeout = TimeSpan.FromSeconds(options.Runtime.ProbeTimeoutSeconds),
            ProbeCacheFile = options.Runtime.ProbeCacheFile(),
            Scheduler = options.ToSchedulerOptions(),
        };
        return new InferenceEngine(engineOptions, services.GetRequiredService<ILoggerFactory>(), services.GetService<System.Diagnostics.Metrics.IMeterFactory>(), services.GetRequiredService<TimeProvider>());
    }
}

/// <summary>Starts the engine with the host, so a missing native library or bad model folder fails start-up loudly.</summary>
internal sealed partial class EngineStartup(IInferenceEngine engine, IOptions<EdgeServerOptions> options, ILogger<EngineStartup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var models = engine.ListModels();
        if (models.Count == 0)
        {
            LogNoModels(logger, options.Value.ModelsDirectory);
        }

        var available = models.Where(m => m.Status != ModelStatus.Unavailable).ToList();
        if (options.Value.Preload ?? available.Count == 1)
        {
            foreach (var model in available)
            {
                _ = engine.LoadAsync(model.Id, cancellationToken: CancellationToken.None).ContinueWith(
                    t => LogPreloadFailed(logger, t.Exception!.GetBaseException(), model.Id),
                    CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = EventIds.NoModels, Level = LogLevel.Warning, Message = "No models found. Put .gguf files in '{ModelsDirectory}' or start with --model path/to/model.gguf")]
    private static partial void LogNoModels(ILogger logger, string modelsDirectory);

    [LoggerMessage(EventId = EventIds.PreloadFailed, Level = LogLevel.Error, Message = "Preloading model {Model} failed")]
    private static partial void LogPreloadFailed(ILogger logger, Exception exception, string model);
}
