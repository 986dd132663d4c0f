using System.Diagnostics;
using EdgeServer.TestSupport;

namespace EdgeServer.Tests.Clients;

/// <summary>
/// Runs a script of tests/clients with Node.js: official clients of the APIs EdgeServer speaks (the ollama,
/// @anthropic-ai/sdk and openai npm packages and LangChain.js's @langchain/openai, pinned by
/// tests/clients/package-lock.json and installed by this project's build),
/// unmodified, against the test server on 127.0.0.1. A script prints one JSON document on standard output; a failed
/// expectation is a non-zero exit with the reason on standard error.
/// </summary>
public static class NodeClients
{
    public static string Folder { get; } = Path.Combine(SharedPaths.RepositoryRoot, "tests", "clients");

    /// <summary>Why the client tests cannot run here (no Node.js, or the packages were not installed), or null.</summary>
    public static string? Missing { get; } = FindMissing();

    private static string? FindMissing()
    {
        string[] packages = ["ollama", "@anthropic-ai/sdk", "openai", "@langchain/openai", "@langchain/core", "zod"];
        if (packages.Any(p => !Directory.Exists(Path.Combine([Folder, "node_modules", .. p.Split('/')]))))
        {
            return $"the client packages are not installed in {Path.Combine(Folder, "node_modules")} (the test project's build runs 'npm ci' there; it needs Node.js 20+ and npm)";
        }

        try
        {
            using var node = Process.Start(new ProcessStartInfo("node", "--version") { RedirectStandardOutput = true, UseShellExecute = false })!;
            node.WaitForExit(10_000);
            return node.ExitCode == 0 ? null : "'node --version' failed";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "Node.js ('node') is not installed";
        }
    }

    /// <summary>Runs <paramref name="script"/> (a file in tests/clients) with the arguments; returns its standard output.</summary>
    public static async Task<string> RunAsync(string script, params string[] arguments)
    {
        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = Folder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(300));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"node {script} ran longer than 300 s; its output so far: {await errors}");
        }

        Assert.True(process.ExitCode == 0, $"node {script} {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{await errors}\n{await output}");
        return await output;
    }
}
