using System.CommandLine;
using System.CommandLine.Invocation;
using EdgeServer.Inference;
using Microsoft.Extensions.Options;

namespace EdgeServer.Hosting;

/// <summary>Exit codes of the EdgeServer process.</summary>
public static class ExitCodes
{
    public const int Success = 0;

    /// <summary>
    /// A wrong command line or setting (a missing model file, a value out of range): starting again cannot help, so
    /// the systemd unit does not restart on it (RestartPreventExitStatus).
    /// </summary>
    public const int ConfigurationError = 1;
}

/// <summary>
/// The command line, parsed by System.CommandLine: <c>serve</c> (the default when no command is given) with the short
/// switches of <see cref="EdgeServerHosting.SwitchMappings"/> and <c>--urls</c>, <c>quantize</c> (<see cref="QuantizeCommand"/>),
/// <c>--help</c> and <c>--version</c>.
/// Settings are configuration overrides, <c>--Section:Key=value</c> or <c>--Section:Key value</c> (a colon in the
/// name tells them apart); they go to configuration untouched, as ASP.NET reads them, and the parser never sees
/// them. Anything else the parser does not know is an error naming the closest switch.
/// </summary>
public static class EdgeServerCommandLine
{
    private const string SettingsHelp = """
        Settings: any setting of docs/configuration.md as --Section:Key=value or --Section:Key value,
        e.g. --EdgeServer:Scheduler:Slots=4 or --Logging:LogLevel:Default=Warning.
        """;

    private const string Description = $"""
        EdgeServer, a local OpenAI-compatible LLM server.

        {SettingsHelp}
        Health check: 'EdgeServer --healthcheck [URL]' exits 0 when a running server's /health answers 200.
        Quantize a model: 'EdgeServer quantize IN.gguf OUT.gguf Q4_K_M' (see 'EdgeServer quantize --help').
        """;

    /// <summary>llama-server's switches that users bring along, with EdgeServer's counterpart.</summary>
    private static readonly Dictionary<string, string> Counterparts = new(StringComparer.Ordinal)
    {
        ["-m"] = "--model",
        ["-t"] = "--threads",
        ["-c"] = "--ctx-size",
        ["-np"] = "--slots",
        ["--parallel"] = "--slots",
        ["--port"] = "--urls http://127.0.0.1:PORT",
        ["--host"] = "--urls http://HOST:8080",
    };

    public static int Run(string[] args)
    {
        var (switches, settings) = SplitSettings(args);
        var root = Build(settings);
        var result = root.Parse(switches, new ParserConfiguration { EnablePosixBundling = false, ResponseFileTokenReplacer = null });
        if (result.Action is ParseErrorAction)
        {
            foreach (var problem in Problems(result))
            {
                Console.Error.WriteLine($"EdgeServer: {problem}");
            }

            Console.Error.WriteLine("EdgeServer --help lists the switches; settings are given as --Section:Key=value.");
            return ExitCodes.ConfigurationError;
        }

        // Other exceptions stay unhandled, a crash the service manager restarts; the host handles SIGTERM itself.
        return result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
    }

    /// <summary>The parser's part of the arguments and the configuration overrides, in their order.</summary>
    internal static (List<string> Switches, List<string> Settings) SplitSettings(IReadOnlyList<string> args)
    {
        var switches = new List<string>();
        var settings = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            var name = arg.Split('=', 2)[0];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || !name.Contains(':', StringComparison.Ordinal))
            {
                switches.Add(arg);
                continue;
            }

            settings.Add(arg);
            if (!arg.Contains('=', StringComparison.Ordinal) && i + 1 < args.Count)
            {
                // "--Section:Key value", as ASP.NET's command-line configuration reads it.
                settings.Add(args[++i]);
            }
        }

        return (switches, settings);
    }

    /// <summary>
    /// What is wrong, one line each: an unknown switch with the closest known one (its value, if any, is not named
    /// again), an unexpected argument or command, or the parser's own message (a value of the wrong type).
    /// </summary>
    private static List<string> Problems(ParseResult result)
    {
        var problems = new List<string>();
        var command = result.CommandResult.Command;
        var known = command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).Concat(command.Subcommands.Select(c => c.Name)).ToList();
        var afterUnknownSwitch = false;
        foreach (var token in result.UnmatchedTokens)
        {
            if (token.StartsWith('-'))
            {
                var closest = Counterparts.GetValueOrDefault(token) ?? Closest(token, known);
                problems.Add(closest is null ? $"unknown switch '{token}'." : $"unknown switch '{token}'; did you mean {closest}?");
                afterUnknownSwitch = true;
            }
            else if (!afterUnknownSwitch)
            {
                problems.Add(command.Subcommands.Count > 0 && result.Tokens.Count > 0 && result.Tokens[0].Value == token
                    ? $"unknown command '{token}' (commands: {string.Join(", ", command.Subcommands.Select(c => c.Name))})."
                    : $"unexpected argument '{token}'.");
            }
            else
            {
                afterUnknownSwitch = false;
            }
        }

        // The parser's own "unrecognized" errors name the tokens described above.
        problems.AddRange(result.Errors.Select(e => e.Message).Where(m => !result.UnmatchedTokens.Any(t => m.Contains($"'{t}'", StringComparison.Ordinal))));
        return problems;
    }

    /// <summary>The known name a typo most likely meant: one that starts the same way, or within two edits.</summary>
    internal static string? Closest(string token, IEnumerable<string> known) => known
        .Select(name => (Name: name, Distance: name.StartsWith(token, StringComparison.Ordinal) && token.TrimStart('-').Length >= 3 ? 0 : Distance(token, name)))
        .Where(c => c.Distance <= 2)
        .OrderBy(c => c.Distance)
        .Select(c => c.Name)
        .FirstOrDefault();

    /// <summary>Levenshtein distance.</summary>
    private static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        var current = new int[b.Length + 1];
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1], previous[j]) + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    private static RootCommand Build(List<string> settings)
    {
        var model = new Option<string>("--model") { Description = "A model file to serve, named by its file name without .gguf (EdgeServer:Model).", HelpName = "PATH" };
        var modelsDirectory = new Option<string>("--models-dir") { Description = "Serve every *.gguf in this folder (EdgeServer:ModelsDirectory, default ./models).", HelpName = "DIR" };
        var nativeDirectory = new Option<string>("--native-dir") { Description = "A folder with llama.cpp 0.5.x's libllama.so and libggml.so instead of the bundled ones (EdgeServer:Runtime:NativeDirectory).", HelpName = "DIR" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for decoding; 0: adaptive (EdgeServer:Runtime:Threads).", HelpName = "N" };
        var slots = new Option<int>("--slots") { Description = "Requests decoded together per model (EdgeServer:Scheduler:Slots).", HelpName = "N" };
        var contextSize = new Option<int>("--ctx-size") { Description = "Context tokens per slot (EdgeServer:Scheduler:ContextPerSlot).", HelpName = "N" };
        var urls = new Option<string>("--urls") { Description = "Where to listen, e.g. http://127.0.0.1:9000 (default port 8080: this machine only, or every interface with API keys set).", HelpName = "URL" };
        Option[] options = [model, modelsDirectory, nativeDirectory, threads, slots, contextSize, urls];

        var serve = new Command("serve", "Run the server (the default).\n\n" + SettingsHelp);
        var root = new RootCommand(Description) { serve, Pull.PullCommand.Create(settings), QuantizeCommand.Create() };
        foreach (var option in options)
        {
            serve.Options.Add(option);
            root.Options.Add(option);
        }

        int Serve(ParseResult parsed)
        {
            var arguments = new List<string>();
            foreach (var option in options)
            {
                if (parsed.GetResult(option) is { Implicit: false } given)
                {
                    // The value as written (the parser has checked it); the switch as the configuration maps it.
                    arguments.Add(option.Name);
                    arguments.Add(given.Tokens.Single().Value);
                }
            }

            return RunServer([.. arguments, .. settings]);
        }

        serve.SetAction(Serve);
        root.SetAction(Serve);
        return root;
    }
    /// <summary>Runs the server until shutdown; a wrong setting is one line per problem on standard error and exit code 1.</summary>
    private static int RunServer(string[] args)
    {
        try
        {
            var app = EdgeServerHosting.CreateBuilder(args).Build();
            app.MapEdgeServer();
            app.Run();
            return ExitCodes.Success;
        }
        catch (Exception e) when (ConfigurationProblems(e) is { } problems)
        {
            foreach (var problem in problems)
            {
                Console.Error.WriteLine($"EdgeServer: {problem}");
            }

            return ExitCodes.ConfigurationError;
        }
    }

    /// <summary>The problems when <paramref name="e"/> is a configuration error (which starting again cannot fix), else null.</summary>
    internal static IEnumerable<string>? ConfigurationProblems(Exception e) => e switch
    {
        OptionsValidationException validation => validation.Failures,
        // A value the binder cannot convert ("Failed to convert configuration value 'x' at 'EdgeServer:...'").
        // (The binder's own words: a trimmed build has no method metadata to tell where it was thrown.)
        InvalidOperationException when e.Message.StartsWith("Failed to convert configuration value", StringComparison.Ordinal) => [e.Message],
        NativeLibraryException => [e.Message],
        _ => null,
    };
}
