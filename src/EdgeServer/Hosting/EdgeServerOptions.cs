using System.ComponentModel.DataAnnotations;
using EdgeServer.Inference;
using EdgeServer.Inference.Scheduling;
using Microsoft.Extensions.Options;

namespace EdgeServer.Hosting;

/// <summary>The "EdgeServer" section of configuration (appsettings.json, EDGESERVER__* variables, command line).</summary>
public sealed class EdgeServerOptions
{
    public const string Section = "EdgeServer";

    /// <summary>One model file to serve (the --model switch). Its name is the file name without .gguf.</summary>
    public string? Model { get; set; }

    /// <summary>Every *.gguf here is served, named by file name. Relative paths are from the working directory.</summary>
    public string ModelsDirectory { get; set; } = "models";

    /// <summary>Models with explicit names.</summary>
    [ValidateEnumeratedItems]
    public List<ModelEntry> Models { get; set; } = [];

    [ValidateObjectMembers]
    public RuntimeOptions Runtime { get; set; } = new();

    [ValidateObjectMembers]
    public SchedulerSettings Scheduler { get; set; } = new();

    /// <summary>
    /// Load every available model at start-up rather than on its first request. Unset: preload when exactly one model
    /// is available (the common single-model box, whose first request would otherwise wait for the load).
    /// </summary>
    public bool? Preload { get; set; }

    public SecurityOptions Security { get; set; } = new();

    [ValidateObjectMembers]
    public LimitsOptions Limits { get; set; } = new();

    [ValidateObjectMembers]
    public ConnectionSettings Connections { get; set; } = new();

    [ValidateObjectMembers]
    public MemorySettings Memory { get; set; } = new();

    [ValidateObjectMembers]
    public ThermalSettings Thermal { get; set; } = new();

    [ValidateObjectMembers]
    public EnergySettings Energy { get; set; } = new();

    /// <summary>
    /// On shutdown (SIGTERM, Ctrl+C), running generations may finish within this many seconds; new ones get 503.
    /// Those still running then end with a shutting-down error event.
    /// </summary>
    [Range(0, 3600)]
    public int ShutdownGraceSeconds { get; set; } = 30;

    public Telemetry.TelemetryOptions Telemetry { get; set; } = new();

    public WebUiOptions WebUi { get; set; } = new();

    [ValidateObjectMembers]
    public ResponsesSettings Responses { get; set; } = new();

    [ValidateObjectMembers]
    public Pull.PullSettings Pull { get; set; } = new();

    /// <summary>Gateway mode: forward requests for models this server lacks to other boxes (docs/gateway.md).</summary>
    [ValidateObjectMembers]
    public Gateway.GatewaySettings Gateway { get; set; } = new();

    /// <summary>Announcing this server on the local network (mDNS/DNS-SD, docs/gateway.md).</summary>
    [ValidateObjectMembers]
    public Discovery.DiscoverySettings Discovery { get; set; } = new();

    /// <summary>The engine's scheduler settings, before any model's own.</summary>
    public SchedulerOptions ToSchedulerOptions() => new()
    {
        Slots = Scheduler.Slots,
        ContextPerSlot = Scheduler.ContextPerSlot,
        BatchSize = Scheduler.BatchSize,
        QueueCapacity = Scheduler.QueueCapacity,
        SamplingBudget = TimeSpan.FromSeconds(Scheduler.SamplingBudgetSeconds),
        Threads = Runtime.Threads,
        ThreadPoll = Runtime.ThreadPoll,
        KvCacheType = Scheduler.KvCacheType,
        FlashAttention = Scheduler.FlashAttention,
    };
}

/// <summary>The chat page at / (<see cref="EdgeServer.WebUi.WebUiEndpoints"/>).</summary>
public sealed class WebUiOptions
{
    /// <summary>Serve the page; false leaves / unmapped (404) while the API works as before.</summary>
    public bool Enabled { get; set; } = true;
}

/// <summary>
/// The responses /v1/responses keeps in memory for previous_response_id and GET /v1/responses/{id}: bounded by
/// count, age and bytes, the oldest evicted first (<see cref="EdgeServer.OpenAi.ResponseStore"/>).
/// </summary>
public sealed class ResponsesSettings
{
    /// <summary>Most responses kept; 0 keeps none (every previous_response_id is then a 404).</summary>
    [Range(0, 100_000)]
    public int StoreLimit { get; set; } = 100;

    /// <summary>Minutes a stored response stays usable after it was created.</summary>
    [Range(1, 10_080)]
    public int StoreMaxAgeMinutes { get; set; } = 60;

    /// <summary>Most memory the stored responses may take (their conversations and bodies), in bytes or with a unit: "16mb".</summary>
    [Required]
    [RegularExpression(ByteSize.Pattern, ErrorMessage = "EdgeServer:Responses:StoreMaxBytes must be a size such as 16777216, \"512kb\" or \"16mb\".")]
    public string StoreMaxBytes { get; set; } = "16mb";

    public long StoreMaxBytesValue => ByteSize.Parse(StoreMaxBytes);
}

public sealed class SecurityOptions
{
    /// <summary>Keys accepted as <c>Authorization: Bearer &lt;key&gt;</c> on /v1. None: no key is asked for.</summary>
    public List<string> ApiKeys { get; set; } = [];

    /// <summary>A file with one key per line (blank lines and lines starting with # are ignored).</summary>
    public string? ApiKeyFile { get; set; }

    /// <summary>Browser origins allowed to call the API (CORS), e.g. http://homeassistant.local:8123. None by default.</summary>
    public List<string> CorsOrigins { get; set; } = [];

    /// <summary>With keys set, /metrics answers without one too (for a scraper that cannot send a bearer token).</summary>
    public bool MetricsWithoutKey { get; set; }

    /// <summary>With keys set, /swagger answers without one too (a browser cannot send the key to the UI page).</summary>
    public bool ApiDocsWithoutKey { get; set; }
}

/// <summary>Per-request limits, sized for a 4 GB board; the defaults are the engine's (<see cref="GenerationLimits"/>). Each refusal names its setting.</summary>
public sealed class LimitsOptions
{
    /// <summary>Largest request body, in bytes or with a unit: "1mb", "512kb".</summary>
    [Required]
    [RegularExpression(ByteSize.Pattern, ErrorMessage = "EdgeServer:Limits:MaxRequestBody must be a size such as 1048576, \"512kb\" or \"1mb\".")]
    public string MaxRequestBody { get; set; } = "1mb";

    [Range(1, 100_000)]
    public int MaxMessages { get; set; } = Defaults.MaxMessages;

    /// <summary>Characters in one message's content.</summary>
    [Range(1, 100_000_000)]
    public int MaxMessageChars { get; set; } = Defaults.MaxMessageChars;

    /// <summary>Highest max_tokens / max_completion_tokens a request may ask for.</summary>
    [Range(1, 1_048_576)]
    public int MaxTokens { get; set; } = Defaults.MaxTokens;

    /// <summary>Tokens generated for a request that names no max_tokens (at most to the end of the context); 0: to the end of the context.</summary>
    [Range(0, 1_048_576)]
    public int DefaultMaxTokens { get; set; } = Defaults.DefaultMaxTokens;

    /// <summary>Highest n (choices per request).</summary>
    [Range(1, 16)]
    public int MaxN { get; set; } = Defaults.MaxChoices;

    [Range(0, 64)]
    public int MaxStopSequences { get; set; } = Defaults.MaxStopSequences;

    [Range(1, 4096)]
    public int MaxStopLength { get; set; } = Defaults.MaxStopLength;

    /// <summary>Options of a request's JSON schema that may match the same text at once, multiplied through nesting.</summary>
    [Range(1, 1_000_000)]
    public int MaxSchemaAlternatives { get; set; } = Defaults.MaxSchemaAlternatives;

    public long MaxRequestBodyBytes => ByteSize.Parse(MaxRequestBody);

    private static GenerationLimits Defaults => GenerationLimits.Default;

    /// <summary>The limits the engine's validator checks requests against.</summary>
    public GenerationLimits ToGenerationLimits() => new()
    {
        MaxTokens = MaxTokens,
        DefaultMaxTokens = DefaultMaxTokens,
        MaxMessages = MaxMessages,
        MaxMessageChars = MaxMessageChars,
        MaxStopSequences = MaxStopSequences,
        MaxStopLength = MaxStopLength,
        MaxChoices = MaxN,
        MaxSchemaAlternatives = MaxSchemaAlternatives,
    };
}

/// <summary>
/// Connection limits, so hostile or broken clients on the network cannot use up the process's file descriptors
/// or hold it with idle connections. Over a limit a new connection is closed at once.
/// </summary>
public sealed class ConnectionSettings
{
    /// <summary>Open connections in all; lowered at start-up to stay under the process's open-file limit.</summary>
    [Range(1, 1_000_000)]
    public int MaxConnections { get; set; } = 1000;

    /// <summary>Open connections from one client address; 0: no per-address limit (e.g. behind a reverse proxy).</summary>
    [Range(0, 1_000_000)]
    public int MaxPerClientAddress { get; set; } = 64;

    /// <summary>How long a connection may sit idle before its first or next request (Kestrel's default: 130 s).</summary>
    [Range(1, 3600)]
    public int KeepAliveTimeoutSeconds { get; set; } = 30;

    /// <summary>Time to send a request's headers once it has begun (Kestrel's default: 30 s).</summary>
    [Range(1, 600)]
    public int RequestHeadersTimeoutSeconds { get; set; } = 10;
}

/// <summary>The heat back-off (see Device/ThermalMonitor).</summary>
public sealed class ThermalSettings
{
    /// <summary>Read the thermal zones and back decoding off when the board is hot.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>°C of the hottest zone at which decode threads are taken away, one per reading.</summary>
    [Range(30.0, 120.0)]
    public double SlowDownAt { get; set; } = 75;

    /// <summary>°C below <see cref="SlowDownAt"/> at which threads are given back, one per reading.</summary>
    [Range(0.5, 50.0)]
    public double Hysteresis { get; set; } = 5;

    /// <summary>Seconds between readings.</summary>
    [Range(1, 3600)]
    public int IntervalSeconds { get; set; } = 5;

    /// <summary>Where sysfs is mounted (its class/thermal is read); another folder for a test tree.</summary>
    [Required]
    public string SysfsRoot { get; set; } = "/sys";
}

/// <summary>The energy meter (see Device/EnergyMonitor): where the box's energy is read, for joules per generated token.</summary>
public sealed class EnergySettings
{
    /// <summary>Read the box's energy sensor and report what each generation used; without a sensor nothing is reported.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Milliseconds between readings: power sources are integrated over them, RAPL counters read often enough not to wrap twice.</summary>
    [Range(100, 60_000)]
    public int IntervalMilliseconds { get; set; } = 1000;

    /// <summary>Where sysfs is mounted (its class/powercap and class/power_supply are read); another folder for a test tree.</summary>
    [Required]
    public string SysfsRoot { get; set; } = "/sys";

    /// <summary>A file that holds the box's power in watts (written by a USB power meter's reader), instead of the sensors.</summary>
    public string? PowerFile { get; set; }

    /// <summary>A command (run by sh -c) that prints the box's power in watts, instead of the sensors.</summary>
    public string? PowerCommand { get; set; }
}

/// <summary>The memory budget of the loaded models, and how long an idle model stays loaded.</summary>
public sealed class MemorySettings
{
    /// <summary>"auto" (what the box has available at start-up, less <see cref="Reserve"/>), or a size: "3g", "2500mb".</summary>
    [Required]
    [RegularExpression(@"^\s*(auto|\d+\s*([kKmMgG][bB]?|[bB])?)\s*$", ErrorMessage = "EdgeServer:Memory:Budget must be \"auto\" or a size such as \"3g\" or \"2500mb\".")]
    public string Budget { get; set; } = "auto";

    /// <summary>With an "auto" budget, what is kept back for the system and other services: a share ("10%", at least 256 MiB) or a size ("512mb").</summary>
    [Required]
    [RegularExpression(@"^\s*(\d{1,2}(\.\d+)?%|\d+\s*([kKmMgG][bB]?|[bB])?)\s*$", ErrorMessage = "EdgeServer:Memory:Reserve must be a share such as \"10%\" or a size such as \"512mb\".")]
    public string Reserve { get; set; } = "10%";

    /// <summary>How long an idle model stays loaded: "5m", "30s", "1h"; "0" unloads it after each request, "-1" keeps it until it must make room.</summary>
    [Required]
    [RegularExpression(KeepAliveDuration.Pattern, ErrorMessage = "EdgeServer:Memory:KeepAlive must be a duration such as \"5m\", \"30s\", \"0\" or \"-1\".")]
    public string KeepAlive { get; set; } = KeepAliveDuration.Format(new EngineOptions().KeepAlive);

    /// <summary>The budget: the size given, or what the box has less the reserve.</summary>
    public EdgeServer.Inference.Pool.MemoryBudget ToBudget()
    {
        if (!Budget.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            var bytes = ByteSize.Parse(Budget);
            return new EdgeServer.Inference.Pool.MemoryBudget(bytes, $"{EdgeServer.Inference.Pool.Sizes.Describe(bytes)} (EdgeServer:Memory:Budget)");
        }

        var reserve = Reserve.Trim();
        var kept = reserve.EndsWith('%')
            ? EdgeServer.Inference.Pool.MemoryReserve.Default with { Fraction = double.Parse(reserve[..^1], System.Globalization.CultureInfo.InvariantCulture) / 100 }
            : new EdgeServer.Inference.Pool.MemoryReserve(0, ByteSize.Parse(reserve));
        return EdgeServer.Inference.Pool.MemoryBudget.Detect(kept);
    }

    public TimeSpan KeepAliveTime => KeepAliveDuration.TryParse(KeepAlive, out var value) ? value : throw new FormatException($"EdgeServer:Memory:KeepAlive: '{KeepAlive}' is not a duration.");
}

/// <summary>A model with an explicit name and, optionally, settings of its own; unset ones are the server's.</summary>
public sealed class ModelEntry
{
    [Required]
    public string Id { get; set; } = string.Empty;

    [Required]
    public string Path { get; set; } = string.Empty;

    /// <summary>Other names requests may use for the model ("gpt-4o-mini", "llama3.2").</summary>
    public List<string> Aliases { get; set; } = [];

    /// <summary>This model's EdgeServer:Scheduler:Slots.</summary>
    [Range(1, 64)]
    public int? Slots { get; set; }

    /// <summary>This model's EdgeServer:Scheduler:ContextPerSlot.</summary>
    [Range(64, 1_048_576)]
    public int? ContextPerSlot { get; set; }

    /// <summary>This model's EdgeServer:Runtime:Threads.</summary>
    [Range(0, 512)]
    public int? Threads { get; set; }

    /// <summary>This model's EdgeServer:Scheduler:KvCacheType.</summary>
    [EnumDataType(typeof(KvCacheType))]
    public KvCacheType? KvCacheType { get; set; }

    /// <summary>This model's EdgeServer:Scheduler:FlashAttention.</summary>
    [EnumDataType(typeof(FlashAttention))]
    public FlashAttention? FlashAttention { get; set; }

    /// <summary>This model's EdgeServer:Runtime:UseMmap.</summary>
    [EnumDataType(typeof(MmapMode))]
    public MmapMode? UseMmap { get; set; }

    /// <summary>Sampling for the fields a request leaves out (ranges checked by <see cref="EdgeServerOptionsFileValidator"/>).</summary>
    public SamplingDefaults Sampling { get; set; } = new();

    /// <summary>What the engine does differently for this model.</summary>
    public ModelSettings ToSettings() => new()
    {
        Aliases = Aliases.ToArray(),
        Slots = Slots,
        ContextPerSlot = ContextPerSlot,
        Threads = Threads,
        KvCacheType = KvCacheType,
        FlashAttention = FlashAttention,
        UseMmap = UseMmap,
        Sampling = Sampling.IsEmpty ? null : Sampling.ToParameters(),
    };
}

/// <summary>A model's default sampling; each field unset keeps the server's default, and a request's own value wins.</summary>
public sealed class SamplingDefaults
{
    public float? Temperature { get; set; }

    public float? TopP { get; set; }

    public int? TopK { get; set; }

    public float? MinP { get; set; }

    public float? RepeatPenalty { get; set; }

    public float? PresencePenalty { get; set; }

    public float? FrequencyPenalty { get; set; }

    public bool IsEmpty => Values().All(v => v.Value is null);

    /// <summary>Each field with the request field whose range it must keep.</summary>
    public IEnumerable<(string Name, GenerationField Field, double? Value)> Values() =>
    [
        (nameof(Temperature), GenerationField.Temperature, Temperature),
        (nameof(TopP), GenerationField.TopP, TopP),
        (nameof(TopK), GenerationField.TopK, TopK),
        (nameof(MinP), GenerationField.MinP, MinP),
        (nameof(RepeatPenalty), GenerationField.RepeatPenalty, RepeatPenalty),
        (nameof(PresencePenalty), GenerationField.PresencePenalty, PresencePenalty),
        (nameof(FrequencyPenalty), GenerationField.FrequencyPenalty, FrequencyPenalty),
    ];

    public SamplingParameters ToParameters() =>
        SamplingParameters.Default.Override(Temperature, TopP, TopK, MinP, RepeatPenalty, PresencePenalty, FrequencyPenalty);
}

public sealed class RuntimeOptions
{
    /// <summary>A folder with libllama.so and libggml.so of llama.cpp 0.5.x, instead of the bundled libraries.</summary>
    public string? NativeDirectory { get; set; }

    /// <summary>CPU threads for decoding; 0: adaptive, the count that decodes fastest under the box's load, up to the cores this process may use.</summary>
    [Range(0, 512)]
    public int Threads { get; set; }

    /// <summary>How long idle decode threads spin for the next step before they sleep, 0 to 100 (llama.cpp's --poll).</summary>
    [Range(0, 100)]
    public int ThreadPoll { get; set; } = SchedulerDefaults.ThreadPoll;

    /// <summary>Memory-map model files (true), read them (false), or Auto: read those whose weights llama.cpp repacks, map the rest.</summary>
    [EnumDataType(typeof(MmapMode))]
    public MmapMode UseMmap { get; set; } = Defaults.UseMmap;

    /// <summary>Let llama.cpp repack weights into the CPU's faster layout (Q4_0 on AVX2; Q4_0 and Q8_0 on ARM with dot products).</summary>
    public bool Repack { get; set; } = Defaults.Repack;

    /// <summary>
    /// Each model file is first tried in a child process (EdgeServer --probe-model); one still running after this
    /// many seconds is stopped and its model is unavailable.
    /// </summary>
    [Range(1, 3600)]
    public int ProbeTimeoutSeconds { get; set; } = (int)Defaults.ProbeTimeout.TotalSeconds;

    /// <summary>
    /// Where model files found servable are remembered across runs, so a restart does not probe them again:
    /// "auto" (systemd's $CACHE_DIRECTORY, else $XDG_CACHE_HOME/edgeserver, else ~/.cache/edgeserver), "none", or
    /// a file.
    /// </summary>
    [Required]
    public string ProbeCache { get; set; } = "auto";

    /// <summary>The file <see cref="ProbeCache"/> names; null when none is kept or no folder is known.</summary>
    public string? ProbeCacheFile()
    {
        var value = ProbeCache.Trim();
        if (value.Equals("none", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        if (!value.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            return Path.GetFullPath(value);
        }

        var folder = Environment.GetEnvironmentVariable("CACHE_DIRECTORY") is { Length: > 0 } systemd ? systemd.Split(':')[0]
            : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? Path.Combine(xdg, "edgeserver")
            : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) is { Length: > 0 } home ? Path.Combine(home, ".cache", "edgeserver")
            : null;
        return folder is null ? null : Path.Combine(folder, "probed-models");
    }

    private static EngineOptions Defaults { get; } = new();

    private static SchedulerOptions SchedulerDefaults { get; } = new();
}

/// <summary>How each model's decode loop is sized; the defaults are the engine's (<see cref="SchedulerOptions"/>).</summary>
public sealed class SchedulerSettings
{
    /// <summary>Requests decoded together per model.</summary>
    [Range(1, 64)]
    public int Slots { get; set; } = Defaults.Slots;

    /// <summary>Context tokens per slot (capped at the model's training length).</summary>
    [Range(64, 1_048_576)]
    public int ContextPerSlot { get; set; } = Defaults.ContextPerSlot;

    /// <summary>Most tokens in one decode step.</summary>
    [Range(16, 16_384)]
    public int BatchSize { get; set; } = Defaults.BatchSize;

    /// <summary>Requests that may wait for a slot before new ones get 429.</summary>
    [Range(0, 10_000)]
    public int QueueCapacity { get; set; } = Defaults.QueueCapacity;

    /// <summary>Longest time sampling one token may take (grammar steps); a request over it ends with an error.</summary>
    [Range(0.05, 600)]
    public double SamplingBudgetSeconds { get; set; } = Defaults.SamplingBudget.TotalSeconds;

    /// <summary>Deadline of one request, queue wait included; then it is cancelled (504, or an error event). 0: none.</summary>
    [Range(0, 86_400)]
    public int RequestTimeoutSeconds { get; set; } = 600;

    /// <summary>Type of the KV cache: F16, Q8_0 (half the memory) or Q4_0 (about a quarter); quantized ones need flash attention.</summary>
    [EnumDataType(typeof(KvCacheType))]
    public KvCacheType KvCacheType { get; set; } = Defaults.KvCacheType;

    /// <summary>Flash attention: Auto (llama.cpp decides; on for the CPU), On or Off.</summary>
    [EnumDataType(typeof(FlashAttention))]
    public FlashAttention FlashAttention { get; set; } = Defaults.FlashAttention;

    private static SchedulerOptions Defaults { get; } = new();
}

[OptionsValidator]
public sealed partial class EdgeServerOptionsValidator : IValidateOptions<EdgeServerOptions>;

/// <summary>
/// An entry of EdgeServer:Models with a value that does not convert (KvCacheType=q5_1, Slots=two) is dropped by the
/// configuration binder without a word, so the model would silently go missing: bound again alone, it says why.
/// </summary>
public sealed class ModelEntriesBindingCheck(Microsoft.Extensions.Configuration.IConfiguration configuration) : IValidateOptions<EdgeServerOptions>
{
    public ValidateOptionsResult Validate(string? name, EdgeServerOptions options)
    {
        var errors = new List<string>();
        foreach (var entry in configuration.GetSection($"{EdgeServerOptions.Section}:{nameof(EdgeServerOptions.Models)}").GetChildren())
        {
            try
            {
                Microsoft.Extensions.Configuration.ConfigurationBinder.Get<ModelEntry>(entry);
            }
            catch (InvalidOperationException e)
            {
                errors.Add($"{entry.Path}: {e.Message}");
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>Rules spanning fields and the file system; reports every problem at once.</summary>
public sealed class EdgeServerOptionsFileValidator : IValidateOptions<EdgeServerOptions>
{
    public ValidateOptionsResult Validate(string? name, EdgeServerOptions options)
    {
        var errors = new List<string>();
        if (!string.IsNullOrWhiteSpace(options.Model) && !File.Exists(Resolve(options.Model)))
        {
            errors.Add($"EdgeServer:Model (--model): the file '{Resolve(options.Model)}' does not exist. Give the path of a .gguf model file.");
        }

        foreach (var entry in options.Models)
        {
            if (!string.IsNullOrWhiteSpace(entry.Path) && !File.Exists(Resolve(entry.Path)))
            {
                errors.Add($"EdgeServer:Models ('{entry.Id}'): the file '{Resolve(entry.Path)}' does not exist.");
            }
        }

        var duplicates = options.Models.SelectMany(m => m.Aliases.Prepend(m.Id).Distinct(StringComparer.Ordinal))
            .GroupBy(name => name, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (duplicates.Count > 0)
        {
            errors.Add($"EdgeServer:Models: the names {string.Join(", ", duplicates)} are used more than once (as ids or aliases).");
        }

        if (options.Limits.DefaultMaxTokens > options.Limits.MaxTokens)
        {
            errors.Add($"EdgeServer:Limits:DefaultMaxTokens ({options.Limits.DefaultMaxTokens}) is above EdgeServer:Limits:MaxTokens ({options.Limits.MaxTokens}), the most a request may ask for; lower it or raise MaxTokens.");
        }

        var scheduler = options.ToSchedulerOptions();
        if (scheduler.Problem() is { } problem)
        {
            errors.Add($"EdgeServer:Scheduler: {problem}.");
        }

        foreach (var (entry, i) in options.Models.Select((m, i) => (m, i)))
        {
            if (entry.Aliases.Any(string.IsNullOrWhiteSpace))
            {
                errors.Add($"EdgeServer:Models:{i}:Aliases ('{entry.Id}'): an alias is empty.");
            }

            if (scheduler.Problem() is null && entry.ToSettings().Apply(scheduler).Problem() is { } own)
            {
                errors.Add($"EdgeServer:Models:{i} ('{entry.Id}'): {own}.");
            }

            foreach (var (setting, field, value) in entry.Sampling.Values())
            {
                if (value is { } v && GenerationFields.Range(field) is { } range && !range.Contains(v))
                {
                    errors.Add($"EdgeServer:Models:{i}:Sampling:{setting} ('{entry.Id}'): {v.ToString(System.Globalization.CultureInfo.InvariantCulture)} is out of range; it must be {range.Describe()}.");
                }
            }
        }

        if (options.Security.ApiKeyFile is { Length: > 0 } keyFile && !File.Exists(Resolve(keyFile)))
        {
            errors.Add($"EdgeServer:Security:ApiKeyFile: the file '{Resolve(keyFile)}' does not exist.");
        }

        if (options.Security.ApiKeys.Any(string.IsNullOrWhiteSpace))
        {
            errors.Add("EdgeServer:Security:ApiKeys: a key is empty; remove it or give it a value.");
        }

        foreach (var origin in options.Security.CorsOrigins)
        {
            if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.AbsolutePath != "/")
            {
                errors.Add($"EdgeServer:Security:CorsOrigins: '{origin}' is not an origin such as http://homeassistant.local:8123.");
            }
        }

        if (options.Energy.PowerFile is { Length: > 0 } && options.Energy.PowerCommand is { Length: > 0 })
        {
            errors.Add("EdgeServer:Energy: PowerFile and PowerCommand are both set; keep the one that reads your power meter.");
        }

        if (options.Energy.PowerFile is { Length: > 0 } powerFile && !File.Exists(Resolve(powerFile)))
        {
            errors.Add($"EdgeServer:Energy:PowerFile: the file '{Resolve(powerFile)}' does not exist.");
        }

        if (options.Gateway.Enabled && options.Gateway.Boxes.Count == 0 && !options.Gateway.Discovery.Enabled)
        {
            errors.Add("EdgeServer:Gateway:Boxes: gateway mode is on, but no box is listed; add { \"Name\", \"Url\" } entries, turn EdgeServer:Gateway:Discovery:Enabled on, or turn EdgeServer:Gateway:Enabled off.");
        }

        foreach (var (box, i) in options.Gateway.Boxes.Select((b, i) => (b, i)))
        {
            if (string.IsNullOrEmpty(box.Url))
            {
                if (!options.Gateway.Discovery.Enabled)
                {
                    errors.Add($"EdgeServer:Gateway:Boxes:{i}:Url ('{box.Name}'): a box without a Url is found by its announcement, and EdgeServer:Gateway:Discovery:Enabled is off.");
                }

                continue;
            }

            if (!Uri.TryCreate(box.Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https") || url.Query.Length > 0)
            {
                errors.Add($"EdgeServer:Gateway:Boxes:{i}:Url ('{box.Name}'): '{box.Url}' is not a box address such as http://kitchen-pi.local:8080.");
            }
        }

        foreach (var twice in options.Gateway.Boxes.GroupBy(b => b.Name, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key))
        {
            errors.Add($"EdgeServer:Gateway:Boxes: the name '{twice}' is used more than once.");
        }

        if (options.Runtime.NativeDirectory is { Length: > 0 } native && !Directory.Exists(Resolve(native)))
        {
            errors.Add($"EdgeServer:Runtime:NativeDirectory: the folder '{Resolve(native)}' does not exist. Remove the setting to use the bundled llama.cpp.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Relative paths are taken from the working directory, as llama-server does.</summary>
    public static string Resolve(string path) => Path.GetFullPath(path, Directory.GetCurrentDirectory());
}
