using System.Text.RegularExpressions;
using EdgeServer.Inference.Pool;

namespace EdgeServer.Pull;

/// <summary>
/// What a user asked to pull: a Hugging Face repository with an optional quantization (<c>owner/repo:Q4_K_M</c>), a
/// file of one (<c>owner/repo/path/file.gguf</c>), or a plain http(s) URL of a .gguf file.
/// </summary>
public sealed partial record PullSource(string Text, string? Repository, string? Quantization, string? RepositoryFile, Uri? Url)
{
    public static PullSource Parse(string text)
    {
        var trimmed = text?.Trim() ?? string.Empty;
        if (trimmed.Length == 0)
        {
            throw PullException.InvalidSource("Name a model: owner/repo[:quant], owner/repo/file.gguf or an https:// URL of a .gguf file.");
        }

        if (trimmed.Contains("://", StringComparison.Ordinal))
        {
            if (!Uri.TryCreate(trimmed, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https") || string.IsNullOrEmpty(url.Host))
            {
                throw PullException.InvalidSource($"'{trimmed}' is not an http:// or https:// URL.");
            }

            return new PullSource(trimmed, null, null, null, url);
        }

        string? quantization = null;
        var reference = trimmed;
        var colon = trimmed.LastIndexOf(':');
        if (colon >= 0)
        {
            quantization = trimmed[(colon + 1)..];
            reference = trimmed[..colon];
            if (!QuantizationName().IsMatch(quantization))
            {
                throw PullException.InvalidSource($"'{quantization}' is not a quantization such as Q4_K_M or Q8_0.");
            }
        }

        var parts = reference.Split('/');
        if (parts.Length < 2 || !parts.Take(2).All(p => RepositoryPart().IsMatch(p) && !p.Contains("..", StringComparison.Ordinal)))
        {
            throw PullException.InvalidSource($"'{trimmed}' is not owner/repo[:quant], owner/repo/file.gguf or an https:// URL.");
        }

        var repository = $"{parts[0]}/{parts[1]}";
        if (parts.Length == 2)
        {
            return new PullSource(trimmed, repository, quantization, null, null);
        }

        if (quantization is not null)
        {
            throw PullException.InvalidSource($"'{trimmed}': name either a file or a quantization, not both.");
        }

        var file = string.Join('/', parts.Skip(2));
        if (!file.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || parts.Skip(2).Any(p => p is "" or "." or ".."))
        {
            throw PullException.InvalidSource($"'{file}' is not the path of a .gguf file in the repository.");
        }

        return new PullSource(trimmed, repository, null, file, null);
    }

    /// <summary>
    /// The name a downloaded file takes in the models folder: the last segment only, and only a plain .gguf name,
    /// so that no path a server sends can point outside the folder.
    /// </summary>
    public static string LocalName(string path)
    {
        var name = path.Replace('\\', '/').Split('/')[^1];
        if (!SafeFileName().IsMatch(name) || name.StartsWith('.') || name.Contains("..", StringComparison.Ordinal))
        {
            throw PullException.InvalidSource($"'{path}' does not end in a plain .gguf file name (letters, digits, '.', '-', '_').");
        }

        return name;
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")]
    private static partial Regex RepositoryPart();

    [GeneratedRegex(@"^[A-Za-z0-9_]{1,32}$")]
    private static partial Regex QuantizationName();

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.gguf$", RegexOptions.IgnoreCase)]
    private static partial Regex SafeFileName();
}

/// <summary>
/// Picks a repository's model file as llama.cpp's <c>-hf owner/repo[:quant]</c> does (common/download.cpp,
/// find_best_model): a .gguf whose name holds the quantization followed by '.' or '-' (any case), skipping mmproj,
/// imatrix and draft-model files and the later parts of a split model; without a quantization Q4_K_M, then Q8_0.
/// Unlike llama.cpp, a choice between several files is not made silently: it is refused with the list.
/// </summary>
public static partial class RepositoryFiles
{
    /// <summary>Names of projector, importance-matrix and draft-model files, which llama.cpp never takes as the model.</summary>
    private static readonly string[] NotModels = ["mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"];

    public static HubFile Choose(string repository, IReadOnlyList<HubFile> files, string? quantization)
    {
        var models = files.Where(f => IsModel(f.Path)).ToList();
        if (models.Count == 0)
        {
            throw PullException.NotFound($"{repository} holds no .gguf model file.{Listing(files)}");
        }

        var tags = quantization is null ? ["Q4_K_M", "Q8_0"] : new[] { quantization };
        foreach (var tag in tags)
        {
            var pattern = new Regex(Regex.Escape(tag) + "[.-]", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
            var matches = models.Where(f => pattern.IsMatch(f.Path)).ToList();
            var firsts = matches.Where(f => SplitPart(f.Path) is null or (1, _)).ToList();
            if (firsts.Count == 1)
            {
                return firsts[0];
            }

            if (firsts.Count > 1)
            {
                throw PullException.NotFound($"{repository} has {firsts.Count} files of {tag}; name one as {repository}/FILE.{Listing(firsts)}");
            }
        }

        if (quantization is null && models.Count(f => SplitPart(f.Path) is null or (1, _)) == 1)
        {
            return models.First(f => SplitPart(f.Path) is null or (1, _));
        }

        throw PullException.NotFound(quantization is null
            ? $"{repository} has several model files and none of Q4_K_M or Q8_0; name one with :QUANT or as {repository}/FILE.{Listing(models)}"
            : $"{repository} has no file of {quantization}.{Listing(models)}");
    }

    /// <summary>A file named in the repository, or a not-found error listing the ones it has.</summary>
    public static HubFile Find(string repository, IReadOnlyList<HubFile> files, string path) =>
        files.FirstOrDefault(f => f.Path == path)
        ?? throw PullException.NotFound($"{repository} has no file '{path}'.{Listing(files.Where(f => IsModel(f.Path)).ToList())}");

    /// <summary>(index, count) of a split model's part ("-00001-of-00003.gguf"), or null for a whole file.</summary>
    public static (int Index, int Count)? SplitPart(string path) =>
        SplitName().Match(path) is { Success: true } m ? (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)) : null;

    private static bool IsModel(string path)
    {
        if (!path.EndsWith(".gguf", StringComparison.Ordinal))
        {
            return false;
        }

        var name = path[(path.LastIndexOf('/') + 1)..];
        return !NotModels.Any(n => name.Contains(n, StringComparison.Ordinal));
    }

    /// <summary>" It has: a.gguf (1.2 GiB), ..." for a message; at most 30 names.</summary>
    private static string Listing(IReadOnlyList<HubFile> files)
    {
        var ggufs = files.Where(f => f.Path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)).ToList();
        if (ggufs.Count == 0)
        {
            return string.Empty;
        }

        var shown = ggufs.Take(30).Select(f => f.Size is { } size ? $"{f.Path} ({Sizes.Describe(size)})" : f.Path);
        return $" It has: {string.Join(", ", shown)}{(ggufs.Count > 30 ? $" and {ggufs.Count - 30} more" : string.Empty)}.";
    }

    [GeneratedRegex(@"-(\d{5})-of-(\d{5})\.gguf$", RegexOptions.IgnoreCase)]
    private static partial Regex SplitName();
}

/// <summary>A file of a hub repository as the tree listing gives it: its size and, for LFS files, the SHA-256 of its content.</summary>
public sealed record HubFile(string Path, long? Size, string? Sha256);
