using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.OpenAi;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.OpenAi;

/// <summary>The bound on stored responses: count, age and bytes, oldest out first, and each key sees only its own.</summary>
public class ResponseStoreTests
{
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);

    private ResponseStore Store(int limit = 100, int minutes = 60, string bytes = "16mb") =>
        new(Options.Create(new EdgeServerOptions { Responses = new ResponsesSettings { StoreLimit = limit, StoreMaxAgeMinutes = minutes, StoreMaxBytes = bytes } }), _clock);

    private StoredResponse Response(string id, string? owner = null, int chars = 10) =>
        new(id, owner, [new ChatMessage("user", new string('x', chars))], "{}"u8.ToArray(), _clock.GetUtcNow());

    [Fact]
    public void TheOldestGoesWhenTheCountIsReached()
    {
        var store = Store(limit: 3);
        foreach (var id in new[] { "a", "b", "c", "d" })
        {
            Assert.True(store.Add(Response(id)));
        }

        Assert.Null(store.Find("a", null));
        Assert.NotNull(store.Find("b", null));
        Assert.NotNull(store.Find("d", null));
        Assert.Equal(3, store.Count);
    }

    [Fact]
    public void OneKeyStoringMuchEvictsItsOwnResponsesNotAnothersKey()
    {
        var store = Store(limit: 4, bytes: "16kb");
        Assert.True(store.Add(Response("b1", owner: "key-b")));
        foreach (var id in new[] { "a1", "a2", "a3", "a4", "a5", "a6" })
        {
            Assert.True(store.Add(Response(id, owner: "key-a")));
        }

        Assert.NotNull(store.Find("b1", "key-b"));
        Assert.Null(store.Find("a1", "key-a"));
        Assert.NotNull(store.Find("a6", "key-a"));

        // The same for bytes: big responses of one key push out that key's, not the other's.
        var big = Store(limit: 100, bytes: "8kb");
        Assert.True(big.Add(Response("small", owner: "key-b", chars: 100)));
        foreach (var id in new[] { "x1", "x2", "x3", "x4" })
        {
            Assert.True(big.Add(Response(id, owner: "key-a", chars: 1500)));
        }

        Assert.NotNull(big.Find("small", "key-b"));
        Assert.NotNull(big.Find("x4", "key-a"));
    }

    [Fact]
    public void TheOldestGoUntilTheNewOneFitsTheByteBudget()
    {
        var store = Store(bytes: "8kb");
        var size = Response("x", chars: 1500).Size;
        Assert.InRange(size, 3000, 4096);
        Assert.True(store.Add(Response("a", chars: 1500)));
        Assert.True(store.Add(Response("b", chars: 1500)));
        Assert.True(store.Add(Response("c", chars: 1500)));
        Assert.Null(store.Find("a", null));
        Assert.NotNull(store.Find("b", null));
        Assert.NotNull(store.Find("c", null));

        // One alone over the budget is not kept, and pushes nothing out.
        Assert.False(store.Add(Response("huge", chars: 10_000)));
        Assert.Null(store.Find("huge", null));
        Assert.Equal(2, store.Count);
    }

    [Fact]
    public void ResponsesExpire()
    {
        var store = Store(minutes: 10);
        store.Add(Response("old"));
        _clock.Advance(TimeSpan.FromMinutes(6));
        store.Add(Response("new"));
        _clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Null(store.Find("old", null));
        Assert.NotNull(store.Find("new", null));
        Assert.Equal(1, store.Count);
    }

    [Fact]
    public void AKeyFindsAndDeletesOnlyItsOwn()
    {
        var store = Store();
        store.Add(Response("mine", owner: "key-a"));
        Assert.Null(store.Find("mine", "key-b"));
        Assert.Null(store.Find("mine", null));
        Assert.False(store.Delete("mine", "key-b"));
        Assert.NotNull(store.Find("mine", "key-a"));
        Assert.True(store.Delete("mine", "key-a"));
        Assert.Null(store.Find("mine", "key-a"));
    }

    [Fact]
    public void ALimitOfZeroKeepsNothing()
    {
        var store = Store(limit: 0);
        Assert.False(store.Add(Response("a")));
        Assert.Null(store.Find("a", null));
    }
}
