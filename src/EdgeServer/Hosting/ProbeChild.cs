using EdgeServer.Inference;

namespace EdgeServer.Hosting;

/// <summary>How this server starts itself as a probe child (<c>EdgeServer --probe-model ...</c>).</summary>
internal static class ProbeChild
{
    private const string AppName = "EdgeServer";

    /// <summary>
    /// The apphost when this process is one (or a single-file publish); else the running runtime's dotnet with
    /// EdgeServer.dll, as under <c>dotnet EdgeServer.dll</c> or a test host; else the apphost beside the dll.
    /// Null when none is found: the engine then probes in its own process.
    /// </summary>
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("SingleFile", "IL3000", Justification = "An empty location is what tells a single-file or Native AOT build apart.")]
    public static ProbeCommand? Command()
    {
        var process = Environment.ProcessPath;
        var assembly = typeof(ProbeChild).Assembly.Location; // empty in a single-file publish
        if (process is not null && (assembly.Length == 0 || Path.GetFileNameWithoutExtension(process) == AppName))
        {
            return new ProbeCommand(process, []);
        }

        if (assembly.Length == 0)
        {
            return null;
        }

        var runtimeDotnet = Path.GetFullPath(Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));
        var dotnet = process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet" ? process
            : File.Exists(runtimeDotnet) ? runtimeDotnet
            : null;
        if (dotnet is not null)
        {
            return new ProbeCommand(dotnet, ["exec", assembly]);
        }

        var apphost = Path.Combine(Path.GetDirectoryName(assembly)!, AppName);
        return File.Exists(apphost) ? new ProbeCommand(apphost, []) : null;
    }
}
