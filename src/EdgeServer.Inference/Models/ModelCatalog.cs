using EdgeServer.Inference.Gguf;

namespace EdgeServer.Inference.Models;

/// <summary>Finds model files: configured ones and every *.gguf in a folder, named by file name unless given a name.</summary>
public static class ModelCatalog
{
    public static IReadOnlyList<ModelSource> Discover(IEnumerable<ModelSource> configured, string? directory)
    {
        var list = new List<ModelSource>();
        var seenPaths = new HashSet<string>(StringComparer.Ordinal);
        foreach (var source in configured)
        {
            if (seenPaths.Add(Path.GetFullPath(source.Path)))
            {
                list.Add(source);
            }
        }

        if (!string.IsNullOrWhiteSpace(directory))
        {
            foreach (var file in FolderFiles(directory))
            {
                if (seenPaths.Add(Path.GetFullPath(file)))
                {
                    list.Add(new ModelSource(IdFromPath(file), file));
                }
            }
        }

        var duplicate = list.GroupBy(m => m.Id, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new InvalidOperationException($"Two model files are both named '{duplicate.Key}': {string.Join(", ", duplicate.Select(m => m.Path))}. Give one of them another name in EdgeServer:Models.");
        }

        return list;
    }

    public static string IdFromPath(string path) => Path.GetFileNameWithoutExtension(path);

    /// <summary>The full paths of the folder's *.gguf files, in order; none when the folder does not exist.</summary>
    public static IReadOnlyList<string> FolderFiles(string directory) => Directory.Exists(directory)
        ? Directory.EnumerateFiles(directory, "*.gguf", SearchOption.TopDirectoryOnly).Select(Path.GetFullPath).Order(StringComparer.Ordinal).ToList()
        : [];

    /// <summary>Fewer bytes than a GGUF header (magic, version, tensor and metadata counts).</summary>
    private const long HeaderBytes = 24;

    /// <summary>
    /// Reads the file's GGUF header and checks the hyper-parameters llama.cpp would abort on
    /// (<see cref="GgufModelCheck"/>); a broken or hostile file yields an Unavailable descriptor with the reason.
    /// </summary>
    public static ModelDescriptor Describe(ModelSource source)
    {
        var created = File.Exists(source.Path) ? new DateTimeOffset(File.GetLastWriteTimeUtc(source.Path)) : DateTimeOffset.UnixEpoch;
        try
        {
            if (!File.Exists(source.Path))
            {
                return Unavailable(source, created, $"the file '{Path.GetFileName(source.Path)}' does not exist");
            }

            // Also what a FIFO or a device reports: such a file is never opened (reading a FIFO would wait forever).
            if (new FileInfo(source.Path).Length is var length and < HeaderBytes)
            {
                return Unavailable(source, created, $"'{Path.GetFileName(source.Path)}' holds {length} bytes, too few for a GGUF model (an empty file, or not a regular file)");
            }

            var gguf = GgufReader.Read(source.Path);
            GgufModelCheck.Validate(gguf);
            return new ModelDescriptor(source.Id, source.Path, created, ModelStatus.Available, null, gguf.Architecture,
                gguf.Quantization, gguf.ParameterCount, gguf.FileLength, (int)(gguf.ContextLength ?? 0),
                gguf.ChatTemplate is null ? LlamaModel.NoTemplateFallback : "model")
            {
                Reasoning = gguf.ChatTemplate is { } template ? Chat.ReasoningFormat.Detect(template) : null,
            };
        }
        catch (GgufFormatException e)
        {
            return Unavailable(source, created, e.Message);
        }
    }

    private static ModelDescriptor Unavailable(ModelSource source, DateTimeOffset created, string reason) =>
        new(source.Id, source.Path, created, ModelStatus.Unavailable, reason, null, null, 0, 0, 0, "none");
}
