using EdgeServer.Hosting;
using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.OpenAi;

/// <summary>
/// A response /v1/responses kept for previous_response_id and GET: the conversation that led to it without its
/// instructions (OpenAI does not carry them over), its output as an assistant turn, and its body as sent.
/// <see cref="Owner"/> is the API key that made it (null without keys).
/// </summary>
internal sealed record StoredResponse(string Id, string? Owner, IReadOnlyList<ChatMessage> Conversation, byte[] Body, DateTimeOffset Created)
{
    /// <summary>What the entry holds in memory, roughly: the body's bytes and the conversation's characters.</summary>
    public long Size { get; } = Body.LongLength + Conversation.Sum(SizeOf);

    private static long SizeOf(ChatMessage m) => 64
        + (2L * ((m.Content?.Length ?? 0) + (m.Reasoning?.Length ?? 0) + (m.Name?.Length ?? 0) + (m.ToolCallId?.Length ?? 0)))
        + (m.ToolCalls?.Sum(c => 48 + (2L * (c.Id.Length + c.Name.Length + c.Arguments.Length))) ?? 0);
}

/// <summary>
/// The responses kept in memory, bounded for a box on a shared network: at most
/// <c>EdgeServer:Responses:StoreLimit</c> of them, none older than <c>StoreMaxAgeMinutes</c>, and at most
/// <c>StoreMaxBytes</c> in all; adding one evicts until it fits, and one larger than the whole budget is not kept.
/// What is evicted is the oldest entry of the key that holds the most (by count when the count is the limit, by bytes
/// when the bytes are), so one app storing a lot pushes out its own responses, not another key's conversations. Ids are random (122 bits), and an entry is found only by the API key that made it, so another key's id
/// is as unknown as a made-up one.
/// </summary>
internal sealed class ResponseStore(IOptions<EdgeServerOptions> options, TimeProvider clock)
{
    private readonly ResponsesSettings _settings = options.Value.Responses;
    private readonly Dictionary<string, LinkedListNode<StoredResponse>> _byId = new(StringComparer.Ordinal);
    private readonly LinkedList<StoredResponse> _byAge = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (int Count, long Bytes)> _byOwner = new(StringComparer.Ordinal);
    private long _bytes;

    private TimeSpan MaxAge => TimeSpan.FromMinutes(_settings.StoreMaxAgeMinutes);

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _byId.Count;
            }
        }
    }

    /// <summary>Keeps the response unless it alone is over a limit; true when kept.</summary>
    public bool Add(StoredResponse response)
    {
        var budget = _settings.StoreMaxBytesValue;
        if (_settings.StoreLimit == 0 || response.Size > budget)
        {
            return false;
        }

        lock (_lock)
        {
            RemoveExpired();
            while (_byAge.First is not null && (_byId.Count >= _settings.StoreLimit || _bytes + response.Size > budget))
            {
                var byCount = _byId.Count >= _settings.StoreLimit;
                // The largest holder (the adding key first among equals) loses its oldest.
                var adding = response.Owner ?? string.Empty;
                var victim = _byOwner.OrderByDescending(o => byCount ? o.Value.Count : o.Value.Bytes).ThenByDescending(o => o.Key == adding).First().Key;
                var node = _byAge.First;
                while ((node.Value.Owner ?? string.Empty) != victim)
                {
                    node = node.Next!;
                }

                Remove(node);
            }

            _byId[response.Id] = _byAge.AddLast(response);
            _bytes += response.Size;
            var owner = _byOwner.GetValueOrDefault(response.Owner ?? string.Empty);
            _byOwner[response.Owner ?? string.Empty] = (owner.Count + 1, owner.Bytes + response.Size);
            return true;
        }
    }

    /// <summary>The response of this id made by this owner, unless it expired or was evicted.</summary>
    public StoredResponse? Find(string id, string? owner)
    {
        lock (_lock)
        {
            RemoveExpired();
            return _byId.TryGetValue(id, out var node) && node.Value.Owner == owner ? node.Value : null;
        }
    }

    public bool Delete(string id, string? owner)
    {
        lock (_lock)
        {
            if (!_byId.TryGetValue(id, out var node) || node.Value.Owner != owner)
            {
                return false;
            }

            Remove(node);
            return true;
        }
    }

    /// <summary>Entries are in order of creation, so the expired ones are at the front.</summary>
    private void RemoveExpired()
    {
        var cutoff = clock.GetUtcNow() - MaxAge;
        while (_byAge.First is { } oldest && oldest.Value.Created <= cutoff)
        {
            Remove(oldest);
        }
    }

    private void Remove(LinkedListNode<StoredResponse> node)
    {
        _byAge.Remove(node);
        _byId.Remove(node.Value.Id);
        _bytes -= node.Value.Size;
        var key = node.Value.Owner ?? string.Empty;
        var owner = _byOwner[key];
        if (owner.Count == 1)
        {
            _byOwner.Remove(key);
        }
        else
        {
            _byOwner[key] = (owner.Count - 1, owner.Bytes - node.Value.Size);
        }
    }
}
