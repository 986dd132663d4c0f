namespace EdgeServer;

/// <summary>
/// Every log event id of the host, in one list so none is used twice. Operators filter on them; keep a value once
/// it is released. The inference library has its own list (EdgeServer.Inference.Diagnostics.EventIds, 1000-3999).
/// </summary>
internal static class EventIds
{
    // systemd integration
    public const int WatchdogEnabled = 1300;
    public const int WatchdogWithheld = 1301;
    public const int WatchdogSendFailed = 1302;

    // The OpenAI API
    public const int StreamFailed = 4000;
    public const int RequestFailed = 4001;

    // Hosting: start-up and shutdown
    public const int NoModels = 5000;
    public const int PreloadFailed = 5001;
    public const int ShutdownDraining = 5100;
    public const int ShutdownGraceOver = 5101;
    public const int ShutdownAbandoned = 5102;

    // Pulling models
    public const int PullStarted = 5200;
    public const int PullFinished = 5201;
    public const int PullFailed = 5202;
    public const int PullRefused = 5203;
    public const int PullCancelled = 5204;

    // Security and connections
    public const int ExposedWithoutKey = 6000;
    public const int KeysRequired = 6001;
    public const int PerAddressRefused = 6100;
    public const int TotalRefused = 6101;
    public const int ConnectionsLowered = 6102;
    public const int AcceptFailed = 6103;

    // The device: heat
    public const int ThermalBackoff = 8000;
    public const int ThermalNoZones = 8001;
    public const int ThermalCheckFailed = 8002;

    // The device: energy
    public const int EnergySource = 8010;
    public const int EnergyUnavailable = 8011;
    public const int EnergySensorLost = 8012;
    public const int EnergySensorBack = 8013;
    public const int EnergyReadFailed = 8014;

    // Gateway mode
    public const int BoxProblem = 9000;
    public const int BoxBack = 9001;
    public const int GatewayLoop = 9002;

    // Discovery (mDNS)
    public const int Announcing = 9010;
    public const int NotAnnounced = 9011;
    public const int MdnsFailed = 9012;
    public const int MdnsMalformed = 9013;
    public const int BoxAnnounced = 9014;
    public const int BoxAnnouncementIgnored = 9015;

    // Request log
    public const int Generation = 7000;
    public const int Request = 7001;
}
