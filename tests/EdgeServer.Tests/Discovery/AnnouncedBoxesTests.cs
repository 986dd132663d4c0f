using System.Net;
using EdgeServer.Discovery;
using EdgeServer.Gateway;
using EdgeServer.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Tests.Discovery;

/// <summary>What a gateway makes of the announcements it hears, and which announced boxes it uses.</summary>
public class AnnouncedBoxesTests
{
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);

    private static DnsMessage Announce(string instance, string address, ushort port = 8080, bool key = true, uint ttl = Announcement.Ttl) =>
        new Announcement(instance, instance + ".local", port, [IPAddress.Parse(address)], Announcement.TxtFor("1.0.0", key, ["m"])).Response(ttl);

    [Fact]
    public void AnAnnouncedBoxIsKnownByItsAddressUntilItsTtlEndsOrItSaysGoodbye()
    {
        var table = new AnnouncedBoxes(_clock, 8);
        table.Observe(Announce("attic-pi", "192.168.1.20"));
        var box = Assert.Single(table.Current());
        Assert.Equal("attic-pi", box.Name);
        Assert.Equal(new Uri("http://192.168.1.20:8080"), box.Url);
        Assert.True(box.KeyRequired);
        Assert.False(box.Conflicted);

        table.Observe(Announce("attic-pi", "192.168.1.20", ttl: 0));
        Assert.Empty(table.Current());

        table.Observe(Announce("attic-pi", "192.168.1.20"));
        _clock.Advance(TimeSpan.FromSeconds(Announcement.Ttl + 1));
        Assert.Empty(table.Current());
    }

    [Fact]
    public void TheSameNameAnnouncedFromTwoAddressesIsMarkedConflicted()
    {
        var table = new AnnouncedBoxes(_clock, 8);
        table.Observe(Announce("attic-pi", "192.168.1.20"));
        // An impostor on the network claims the name, with a host name of its own.
        table.Observe(new Announcement("attic-pi", "impostor.local", 8080, [IPAddress.Parse("192.168.1.66")], Announcement.TxtFor("1.0.0", true, [])).Response());
        Assert.True(Assert.Single(table.Current()).Conflicted);
    }

    [Fact]
    public void AFloodOfAnnouncementsIsCutOffAtTheLimit()
    {
        var table = new AnnouncedBoxes(_clock, 4);
        for (var i = 0; i < 1000; i++)
        {
            table.Observe(Announce($"box-{i}", $"10.0.{i / 250}.{i % 250 + 1}"));
        }

        Assert.Equal(4, table.Current().Count);
        Assert.Equal(996, table.Ignored);
    }

    [Fact]
    public void QueriesAndOtherServicesAreNotBoxes()
    {
        var table = new AnnouncedBoxes(_clock, 8);
        table.Observe(new DnsMessage(0, false, [new DnsQuestion(Announcement.ServiceType, DnsType.Ptr)], []));
        table.Observe(new DnsMessage(0, true, [], [new DnsRecord("_printer._tcp.local", DnsType.Ptr, 120, "laser._printer._tcp.local")]));
        Assert.Empty(table.Current());
    }

    [Fact]
    public void TheGatewayUsesNamedBoxesWithTheirKeyAndKeylessOnesOnlyWhenAllowed()
    {
        var table = new AnnouncedBoxes(_clock, 8);
        table.Observe(Announce("attic-pi", "192.168.1.20"));                 // named in settings, without a Url
        table.Observe(Announce("stranger", "192.168.1.30"));                 // needs a key nobody gave
        table.Observe(Announce("open-box", "192.168.1.40", key: false));     // needs no key
        table.Observe(Announce("the-gateway", "192.168.1.10"));              // the gateway's own announcement
        table.Observe(Announce("kitchen-pi", "192.168.1.50"));               // named with a Url: the Url wins
        var settings = new EdgeServerOptions
        {
            Discovery = { InstanceName = "the-gateway" },
            Gateway =
            {
                Enabled = true,
                Discovery = { Enabled = true },
                Boxes =
                [
                    new GatewayBox { Name = "attic-pi", ApiKey = "attic-key" },
                    new GatewayBox { Name = "kitchen-pi", Url = "http://kitchen-pi.lan:8080", ApiKey = "kitchen-key" },
                ],
            },
        };

        var boxes = Directory(settings, table).Resolve();
        Assert.Equal(["attic-pi http://192.168.1.20:8080/ attic-key", "kitchen-pi http://kitchen-pi.lan:8080 kitchen-key"],
            boxes.Select(b => $"{b.Name} {b.Url} {b.ApiKey}").Order(StringComparer.Ordinal));

        settings.Gateway.Discovery.AcceptKeyless = true;
        Assert.Contains(Directory(settings, table).Resolve(), b => b.Name == "open-box" && b.ApiKey is null);
    }

    [Fact]
    public void AConflictedNameIsNotUsedEvenWhenNamedInSettings()
    {
        var table = new AnnouncedBoxes(_clock, 8);
        table.Observe(Announce("attic-pi", "192.168.1.20"));
        table.Observe(new Announcement("attic-pi", "impostor.local", 8080, [IPAddress.Parse("192.168.1.66")], Announcement.TxtFor("1.0.0", true, [])).Response());
        var settings = new EdgeServerOptions { Gateway = { Enabled = true, Discovery = { Enabled = true }, Boxes = [new GatewayBox { Name = "attic-pi", ApiKey = "k" }] } };
        Assert.Empty(Directory(settings, table).Resolve());
    }

    private BoxDirectory Directory(EdgeServerOptions settings, AnnouncedBoxes table) =>
        new(Options.Create(settings), new GatewayIdentity(), table, new ServiceCollection().BuildServiceProvider(), _clock, NullLogger<BoxDirectory>.Instance);
}
