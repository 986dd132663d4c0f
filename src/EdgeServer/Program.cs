using EdgeServer.Hosting;

if (args is ["--healthcheck", ..])
{
    // For container HEALTHCHECKs: the runtime image has no curl.
    return await HealthProbe.RunAsync(args[1..]);
}

if (args is [EdgeServer.Inference.Models.ModelProbeChild.Switch, ..])
{
    // The server starts itself this way to try a model file where llama.cpp aborting cannot take it down.
    return EdgeServer.Inference.Models.ModelProbeChild.Run(args);
}

return EdgeServerCommandLine.Run(args);

/// <summary>Entry point; public so functional tests can reference the assembly.</summary>
public partial class Program;
