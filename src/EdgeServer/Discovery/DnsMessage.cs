using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace EdgeServer.Discovery;

/// <summary>DNS record types mDNS/DNS-SD needs.</summary>
public enum DnsType
{
    A = 1,
    Ptr = 12,
    Txt = 16,
    Aaaa = 28,
    Srv = 33,
    Any = 255,
}

/// <summary>A question: a name and the type asked for.</summary>
public sealed record DnsQuestion(string Name, DnsType Type);

/// <summary>
/// One resource record. <see cref="Data"/> is what the type holds: a name (PTR), a <see cref="SrvData"/>, the TXT
/// strings, or an <see cref="IPAddress"/> (A, AAAA); other types are skipped when read.
/// </summary>
public sealed record DnsRecord(string Name, DnsType Type, uint Ttl, object Data, bool CacheFlush = false);

public sealed record SrvData(ushort Priority, ushort Weight, ushort Port, string Target);

/// <summary>A packet that is not a DNS message this reader accepts (truncated, a pointer loop, a name too long).</summary>
public sealed class DnsFormatException(string message) : Exception(message);

/// <summary>
/// A DNS message as mDNS (RFC 6762) and DNS-SD (RFC 6763) use it: the questions and the answer, authority and
/// additional records. The reader takes packets from anyone on the network: every length and count is checked
/// against the packet, compression pointers may only point backwards (so they cannot loop), names are limited to
/// 255 bytes and labels to 63, and anything else fails with <see cref="DnsFormatException"/>.
/// </summary>
public sealed record DnsMessage(ushort Id, bool IsResponse, IReadOnlyList<DnsQuestion> Questions, IReadOnlyList<DnsRecord> Records)
{
    /// <summary>The largest packet read or written (mDNS allows up to 9000 bytes over a jumbo LAN; 1500 is Ethernet's).</summary>
    public const int MaxSize = 9000;
    private const int MaxName = 255;
    private const int MaxRecords = 256;

    public static DnsMessage Parse(ReadOnlySpan<byte> packet)
    {
        if (packet.Length < 12 || packet.Length > MaxSize)
        {
            throw new DnsFormatException($"a DNS message is 12 to {MaxSize} bytes, not {packet.Length}");
        }

        var id = BinaryPrimitives.ReadUInt16BigEndian(packet);
        var flags = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        int questions = BinaryPrimitives.ReadUInt16BigEndian(packet[4..]);
        var records = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) + BinaryPrimitives.ReadUInt16BigEndian(packet[8..]) + BinaryPrimitives.ReadUInt16BigEndian(packet[10..]);
        // Each question takes at least 5 bytes and each record 11: counts beyond that are a lie.
        if (questions * 5 + records * 11 > packet.Length - 12 || questions + records > MaxRecords)
        {
            throw new DnsFormatException($"{questions} questions and {records} records do not fit in {packet.Length} bytes");
        }

        var at = 12;
        var asked = new List<DnsQuestion>(questions);
        for (var i = 0; i < questions; i++)
        {
            var name = ReadName(packet, ref at);
            Need(packet, at, 4);
            asked.Add(new DnsQuestion(name, (DnsType)BinaryPrimitives.ReadUInt16BigEndian(packet[at..])));
            at += 4;
        }

        var read = new List<DnsRecord>(records);
        for (var i = 0; i < records; i++)
        {
            var name = ReadName(packet, ref at);
            Need(packet, at, 10);
            var type = (DnsType)BinaryPrimitives.ReadUInt16BigEndian(packet[at..]);
            var cacheFlush = (BinaryPrimitives.ReadUInt16BigEndian(packet[(at + 2)..]) & 0x8000) != 0;
            var ttl = BinaryPrimitives.ReadUInt32BigEndian(packet[(at + 4)..]);
            int length = BinaryPrimitives.ReadUInt16BigEndian(packet[(at + 8)..]);
            at += 10;
            Need(packet, at, length);
            var end = at + length;
            object? data = type switch
            {
                DnsType.A when length == 4 => new IPAddress(packet.Slice(at, 4)),
                DnsType.Aaaa when length == 16 => new IPAddress(packet.Slice(at, 16)),
                DnsType.Ptr => ReadNameWithin(packet, at, end),
                DnsType.Srv when length >= 7 => new SrvData(BinaryPrimitives.ReadUInt16BigEndian(packet[at..]), BinaryPrimitives.ReadUInt16BigEndian(packet[(at + 2)..]),
                    BinaryPrimitives.ReadUInt16BigEndian(packet[(at + 4)..]), ReadNameWithin(packet, at + 6, end)),
                DnsType.Txt => ReadTxt(packet[at..end]),
                DnsType.A or DnsType.Aaaa or DnsType.Srv => throw new DnsFormatException($"a {type} record of {length} bytes"),
                _ => null,
            };
            if (data is not null)
            {
                read.Add(new DnsRecord(name, type, ttl, data, cacheFlush));
            }

            at = end;
        }

        return new DnsMessage(id, (flags & 0x8000) != 0, asked, read);
    }

    /// <summary>The message as bytes, names written whole (no compression: a few hundred bytes either way).</summary>
    public byte[] ToBytes()
    {
        var buffer = new List<byte>(512);
        void U16(int v)
        {
            buffer.Add((byte)(v >> 8));
            buffer.Add((byte)v);
        }

        U16(Id);
        U16(IsResponse ? 0x8400 : 0); // a response is authoritative, as mDNS requires
        U16(Questions.Count);
        U16(Records.Count);
        U16(0);
        U16(0);
        foreach (var q in Questions)
        {
            WriteName(buffer, q.Name);
            U16((int)q.Type);
            U16(1);
        }

        foreach (var r in Records)
        {
            WriteName(buffer, r.Name);
            U16((int)r.Type);
            U16(r.CacheFlush ? 0x8001 : 1);
            buffer.Add((byte)(r.Ttl >> 24));
            buffer.Add((byte)(r.Ttl >> 16));
            buffer.Add((byte)(r.Ttl >> 8));
            buffer.Add((byte)r.Ttl);
            var lengthAt = buffer.Count;
            U16(0);
            switch (r.Data)
            {
                case IPAddress address:
                    buffer.AddRange(address.GetAddressBytes());
                    break;
                case string target:
                    WriteName(buffer, target);
                    break;
                case SrvData srv:
                    U16(srv.Priority);
                    U16(srv.Weight);
                    U16(srv.Port);
                    WriteName(buffer, srv.Target);
                    break;
                case IReadOnlyList<string> strings:
                    foreach (var s in strings.DefaultIfEmpty(string.Empty))
                    {
                        var bytes = Encoding.UTF8.GetBytes(s);
                        if (bytes.Length > 255)
                        {
                            throw new ArgumentException($"a TXT string of {bytes.Length} bytes (at most 255)");
                        }

                        buffer.Add((byte)bytes.Length);
                        buffer.AddRange(bytes);
                    }

                    break;
                default:
                    throw new ArgumentException($"no way to write {r.Data.GetType().Name} as {r.Type}");
            }

            var length = buffer.Count - lengthAt - 2;
            buffer[lengthAt] = (byte)(length >> 8);
            buffer[lengthAt + 1] = (byte)length;
        }

        if (buffer.Count > MaxSize)
        {
            throw new ArgumentException($"a message of {buffer.Count} bytes (at most {MaxSize})");
        }

        return [.. buffer];
    }

    private static void Need(ReadOnlySpan<byte> packet, int at, int count)
    {
        if (count < 0 || at + count > packet.Length)
        {
            throw new DnsFormatException($"the message ends at byte {packet.Length}, inside a record");
        }
    }

    /// <summary>A name inside a record's data: it may point back into the packet, but must start within the record.</summary>
    private static string ReadNameWithin(ReadOnlySpan<byte> packet, int at, int end)
    {
        var name = ReadName(packet, ref at);
        return at <= end ? name : throw new DnsFormatException("a name runs past the end of its record");
    }

    /// <summary>
    /// A name, its labels joined by dots. A compression pointer must point before itself and before the target of
    /// the pointer followed last (a writer only points back to names written earlier), so a chain of pointers always
    /// ends; the name read so far may not pass 255 bytes.
    /// </summary>
    private static string ReadName(ReadOnlySpan<byte> packet, ref int at)
    {
        var name = new StringBuilder();
        var position = at;
        var jumped = false;
        var length = 0;
        var limit = int.MaxValue;
        while (true)
        {
            Need(packet, position, 1);
            int label = packet[position];
            if (label == 0)
            {
                position++;
                break;
            }

            if ((label & 0xC0) == 0xC0)
            {
                Need(packet, position, 2);
                var target = BinaryPrimitives.ReadUInt16BigEndian(packet[position..]) & 0x3FFF;
                if (target >= position || target >= limit)
                {
                    throw new DnsFormatException($"a compression pointer at byte {position} points to {target}, not back before it");
                }

                limit = target;

                if (!jumped)
                {
                    at = position + 2;
                    jumped = true;
                }

                position = target;
                continue;
            }

            if ((label & 0xC0) != 0)
            {
                throw new DnsFormatException($"label type 0x{label:x2} at byte {position}");
            }

            Need(packet, position + 1, label);
            length += label + 1;
            if (length > MaxName)
            {
                throw new DnsFormatException($"a name longer than {MaxName} bytes");
            }

            if (name.Length > 0)
            {
                name.Append('.');
            }

            name.Append(Encoding.UTF8.GetString(packet.Slice(position + 1, label)));
            position += label + 1;
        }

        if (!jumped)
        {
            at = position;
        }

        return name.ToString();
    }

    private static List<string> ReadTxt(ReadOnlySpan<byte> data)
    {
        var strings = new List<string>();
        var at = 0;
        while (at < data.Length)
        {
            int length = data[at];
            if (at + 1 + length > data.Length)
            {
                throw new DnsFormatException("a TXT string runs past the end of its record");
            }

            strings.Add(Encoding.UTF8.GetString(data.Slice(at + 1, length)));
            at += 1 + length;
        }

        return strings;
    }

    private static void WriteName(List<byte> buffer, string name)
    {
        var total = 0;
        foreach (var label in name.TrimEnd('.').Split('.'))
        {
            var bytes = Encoding.UTF8.GetBytes(label);
            if (bytes.Length is 0 or > 63)
            {
                throw new ArgumentException($"the label '{label}' of '{name}' is not 1 to 63 bytes");
            }

            total += bytes.Length + 1;
            buffer.Add((byte)bytes.Length);
            buffer.AddRange(bytes);
        }

        if (total + 1 > MaxName)
        {
            throw new ArgumentException($"the name '{name}' is longer than {MaxName} bytes");
        }

        buffer.Add(0);
    }
}
