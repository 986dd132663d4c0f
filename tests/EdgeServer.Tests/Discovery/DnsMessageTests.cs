using System.Net;
using EdgeServer.Discovery;

namespace EdgeServer.Tests.Discovery;

/// <summary>The DNS codec: what this server sends reads back the same, and packets from anyone on the network fail cleanly.</summary>
public class DnsMessageTests
{
    internal static Announcement Sample(string instance = "attic-pi", string address = "192.168.1.20", ushort port = 8080) =>
        new(instance, "attic.local", port, [IPAddress.Parse(address)], Announcement.TxtFor("1.0.0", keyRequired: true, ["llama", "qwen"]));

    [Fact]
    public void AnAnnouncementReadsBackAsItWasWritten()
    {
        var sent = Sample().Response();
        var read = DnsMessage.Parse(sent.ToBytes());
        Assert.True(read.IsResponse);
        Assert.Equal(sent.Records.Count, read.Records.Count);
        var srv = Assert.Single(read.Records, r => r.Type == DnsType.Srv && r.Name == "attic-pi._edgeserver._tcp.local");
        Assert.Equal(new SrvData(0, 0, 8080, "attic.local"), srv.Data);
        Assert.True(srv.CacheFlush);
        var txt = Assert.Single(read.Records, r => r.Type == DnsType.Txt && r.Name == "attic-pi._edgeserver._tcp.local");
        Assert.Equal(["version=1.0.0", "path=/v1", "key=required"], ((IReadOnlyList<string>)txt.Data).Take(3));
        Assert.Equal(IPAddress.Parse("192.168.1.20"), Assert.Single(read.Records, r => r.Type == DnsType.A).Data);
    }

    [Fact]
    public void CompressedNamesAreRead()
    {
        // "_edgeserver._tcp.local" at 12, then a PTR whose data is "box" + a pointer back to it.
        byte[] packet =
        [
            0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0,
            11, .. "_edgeserver"u8, 4, .. "_tcp"u8, 5, .. "local"u8, 0,
            0, 12, 0, 1, 0, 0, 0, 120, 0, 6, 3, .. "box"u8, 0xC0, 12,
        ];
        var record = Assert.Single(DnsMessage.Parse(packet).Records);
        Assert.Equal("_edgeserver._tcp.local", record.Name);
        Assert.Equal("box._edgeserver._tcp.local", record.Data);
    }

    public static TheoryData<string, byte[]> Hostile => new()
    {
        { "shorter than a header", [0, 0, 0x84, 0] },
        { "a pointer to itself", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1] },
        { "two pointers to each other", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, (byte)'a', 0xC0, 16, 0xC0, 12, 0, 12, 0, 1] },
        { "a pointer forward", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 20, 0, 12, 0, 1, 0, 0, 1, (byte)'a', 0] },
        { "a pointer past the end", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0, 12, 0, 1] },
        { "a reserved label type", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, (byte)'a', 0, 0, 12, 0, 1] },
        { "a label running past the end", [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, (byte)'a', (byte)'b', 0, 0, 12, 0, 1] },
        { "65535 questions in 18 bytes", [0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 1, 0] },
        { "65535 records of each kind", [0, 0, 0x84, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 12, 0, 1, 0, 0, 0, 0, 0, 0] },
        { "a record longer than the packet", [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 16, 0, 1, 0, 0, 0, 120, 0xFF, 0xFF, 3, (byte)'a'] },
        { "an A record of 3 bytes", [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 120, 0, 3, 1, 2, 3] },
        { "a TXT string past its record", [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 16, 0, 1, 0, 0, 0, 120, 0, 2, 5, (byte)'a', 0, 0] },
        { "an SRV too short for its name", [0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 33, 0, 1, 0, 0, 0, 120, 0, 6, 0, 0, 0, 0, 0, 80] },
        { "larger than any mDNS message", new byte[DnsMessage.MaxSize + 1] },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void HostilePacketsFailAsFormatErrors(string what, byte[] packet)
    {
        var e = Assert.Throws<DnsFormatException>(() => DnsMessage.Parse(packet));
        Assert.False(string.IsNullOrEmpty(e.Message), what);
    }

    [Fact]
    public void ANameLongerThan255BytesThroughPointersIsRefused()
    {
        // Six questions, each a 60-byte label followed by a pointer to the question before: every pointer points
        // back, and the names grow by 61 bytes each, past 255 at the fifth.
        var packet = new List<byte> { 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0 };
        var previous = -1;
        for (var i = 0; i < 6; i++)
        {
            var at = packet.Count;
            packet.Add(60);
            packet.AddRange(Enumerable.Repeat((byte)'x', 60));
            packet.AddRange(previous < 0 ? [0] : [(byte)(0xC0 | (previous >> 8)), (byte)previous]);
            packet.AddRange([0, 12, 0, 1]);
            previous = at;
        }

        var e = Assert.Throws<DnsFormatException>(() => DnsMessage.Parse([.. packet]));
        Assert.Contains("255", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RandomDamageToARealPacketOnlyEverFailsAsAFormatError()
    {
        var valid = Sample().Response().ToBytes();
        var random = new Random(20261124);
        for (var i = 0; i < 20_000; i++)
        {
            var packet = (byte[])valid.Clone();
            for (var flips = random.Next(1, 6); flips > 0; flips--)
            {
                packet[random.Next(packet.Length)] = (byte)random.Next(256);
            }

            var length = random.Next(4) == 0 ? random.Next(packet.Length) : packet.Length;
            try
            {
                DnsMessage.Parse(packet.AsSpan(0, length));
            }
            catch (DnsFormatException)
            {
            }
        }
    }

    [Fact]
    public void OverlongNamesAndTxtStringsAreNotWritten()
    {
        Assert.Throws<ArgumentException>(() => new DnsMessage(0, true, [], [new DnsRecord(new string('a', 64) + ".local", DnsType.A, 1, IPAddress.Loopback)]).ToBytes());
        Assert.Throws<ArgumentException>(() => new DnsMessage(0, true, [], [new DnsRecord("a.local", DnsType.Txt, 1, new[] { new string('t', 256) })]).ToBytes());
    }
}
