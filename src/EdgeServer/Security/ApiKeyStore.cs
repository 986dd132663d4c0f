using System.Security.Cryptography;
using System.Text;
using EdgeServer.Hosting;

namespace EdgeServer.Security;

/// <summary>
/// The accepted API keys, held only as SHA-256 digests. A presented key is hashed and compared against every
/// digest with <see cref="CryptographicOperations.FixedTimeEquals"/>, so timing reveals neither which key
/// nor how much of one matched. Keys are never logged.
/// </summary>
public sealed class ApiKeyStore
{
    private readonly byte[][] _digests;

    public ApiKeyStore(SecurityOptions options)
    {
        var keys = new List<string>(options.ApiKeys.Where(k => !string.IsNullOrWhiteSpace(k)).Select(k => k.Trim()));
        if (!string.IsNullOrWhiteSpace(options.ApiKeyFile))
        {
            var path = EdgeServerOptionsFileValidator.Resolve(options.ApiKeyFile);
            if (File.Exists(path))
            {
                keys.AddRange(File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')));
            }
        }

        _digests = keys.Distinct(StringComparer.Ordinal).Select(Digest).ToArray();
    }

    public bool Enabled => _digests.Length > 0;

    public int Count => _digests.Length;

    public bool IsValid(ReadOnlySpan<char> presented)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        var bytes = Encoding.UTF8.GetBytes(presented.ToArray());
        SHA256.HashData(bytes, digest);
        var match = false;
        foreach (var known in _digests)
        {
            match |= CryptographicOperations.FixedTimeEquals(known, digest);
        }

        return match;
    }

    /// <summary>A name for a key that does not reveal it: its SHA-256 digest in hex.</summary>
    public static string Identify(ReadOnlySpan<char> key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key.ToArray())));

    private static byte[] Digest(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));
}
