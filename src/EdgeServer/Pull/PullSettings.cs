using System.ComponentModel.DataAnnotations;
using EdgeServer.Hosting;

namespace EdgeServer.Pull;

/// <summary>Downloading models into the models folder (<c>EdgeServer pull</c>, <c>POST /v1/models/pull</c>).</summary>
public sealed class PullSettings
{
    /// <summary>The Hugging Face hub, or a mirror of it: its model API and resolve URLs are under this address.</summary>
    [Required]
    [RegularExpression(@"^https?://\S+$", ErrorMessage = "EdgeServer:Pull:HubUrl must be an http:// or https:// address such as https://huggingface.co.")]
    public string HubUrl { get; set; } = "https://huggingface.co";

    /// <summary>Disk space a download must leave free in the models folder's file system.</summary>
    [Required]
    [RegularExpression(ByteSize.Pattern, ErrorMessage = "EdgeServer:Pull:MinFreeSpace must be a size such as \"512mb\" or \"1g\".")]
    public string MinFreeSpace { get; set; } = "512mb";

    /// <summary>Attempts after a transient failure (connection lost, 5xx, a truncated body), each resuming where the last stopped.</summary>
    [Range(0, 20)]
    public int Retries { get; set; } = 4;

    /// <summary>Seconds without a byte from the server before the attempt counts as failed.</summary>
    [Range(1, 3600)]
    public int StallTimeoutSeconds { get; set; } = 60;

    /// <summary>
    /// Whether POST /v1/models/pull may fetch from loopback, private, link-local and other non-public addresses (a
    /// file server on the local network). Off: a key holder could otherwise make the server reach services on the
    /// network and on the box itself. The hub's own address (HubUrl, a mirror) is always allowed; the command line
    /// <c>EdgeServer pull</c> is not limited.
    /// </summary>
    public bool AllowPrivateAddresses { get; set; }

    /// <summary>
    /// Pulls POST /v1/models/pull runs at once; more get 429. Each holds a download, up to 64 MiB of header read
    /// before it, and the disk space it checked for.
    /// </summary>
    [Range(1, 16)]
    public int MaxConcurrent { get; set; } = 2;

    public Uri Hub => new(HubUrl.TrimEnd('/') + "/");

    public long MinFreeSpaceBytes => ByteSize.Parse(MinFreeSpace);
}

/// <summary>The places for pulls over the API (<see cref="PullSettings.MaxConcurrent"/>).</summary>
public sealed class PullSlots(Microsoft.Extensions.Options.IOptions<EdgeServerOptions> options) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(options.Value.Pull.MaxConcurrent, options.Value.Pull.MaxConcurrent);

    public int Limit { get; } = options.Value.Pull.MaxConcurrent;

    /// <summary>A place, to dispose when the pull ends; null when all are taken.</summary>
    public IDisposable? TryTake() => _slots.Wait(0) ? new Place(_slots) : null;

    public void Dispose() => _slots.Dispose();

    private sealed class Place(SemaphoreSlim slots) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                slots.Release();
            }
        }
    }
}
