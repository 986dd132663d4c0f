using System.Text.Json.Serialization;

namespace EdgeServer.Pull;

/// <summary>An entry of the hub's tree listing (<c>GET /api/models/{repo}/tree/main?recursive=true</c>).</summary>
public sealed record HubTreeEntry(string? Type, string? Path, long? Size, HubLfs? Lfs);

/// <summary>An LFS file's pointer: <see cref="Oid"/> is the SHA-256 of the content.</summary>
public sealed record HubLfs(string? Oid, long? Size);

/// <summary>The body of <c>POST /v1/models/pull</c>.</summary>
public sealed record PullRequestBody(string? Model, bool Force = false);

/// <summary>
/// One event of a pull's progress: <c>status</c> is <c>checking</c>, <c>downloading</c>, <c>verifying</c>,
/// <c>retrying</c> or <c>done</c>; sizes in bytes.
/// </summary>
public sealed record PullEvent(string Status)
{
    public string? Model { get; init; }

    public string? File { get; init; }

    public long? Completed { get; init; }

    public long? Total { get; init; }

    public double? BytesPerSecond { get; init; }

    public double? EtaSeconds { get; init; }

    public string? Message { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, PropertyNameCaseInsensitive = true)]
[JsonSerializable(typeof(List<HubTreeEntry>))]
internal sealed partial class HubJsonContext : JsonSerializerContext;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(PullRequestBody))]
[JsonSerializable(typeof(PullEvent))]
public sealed partial class PullJsonContext : JsonSerializerContext;
