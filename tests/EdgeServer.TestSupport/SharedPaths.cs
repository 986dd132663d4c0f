namespace EdgeServer.TestSupport;

/// <summary>
/// Locates ../shared beside the repository (CI has it; a fresh clone may not). Tests that need it skip,
/// naming the missing path, where it is absent.
/// </summary>
public static class SharedPaths
{
    public static string RepositoryRoot { get; } = FindRoot();

    public static string Shared => Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared"));

    public static string Stories260K => Path.Combine(Shared, "models", "stories260K.gguf");

    public static string OpenApiSpec => Path.Combine(Shared, "openai-openapi", "openapi.json");

    /// <summary>The reason a test must skip, or null when <paramref name="path"/> exists.</summary>
    public static string? MissingReason(string path) =>
        File.Exists(path) ? null : $"Skipped: {path} is missing (it comes with ../shared beside the repository, as in CI).";

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EdgeServer.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"EdgeServer.sln not found above {AppContext.BaseDirectory}.");
    }
}
