using System.Globalization;
using EdgeServer.Hosting;
using EdgeServer.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace EdgeServer.Tests.WebUi;

/// <summary>
/// The real server on 127.0.0.1 for the chat page: the successor model (known greedy reply) and scripted models, one
/// that never ends its reply, one that reasons before a markdown answer, and one whose reply tries to inject HTML.
/// </summary>
public class WebUiServerFixture : InProcessServer
{
    public const string Successor = "successor";
    public const string Endless = "endless";
    public const string Thinker = "thinker";
    public const string Injector = "injector";

    /// <summary>Longer than any test waits for: a reply of the endless model runs until it is stopped.</summary>
    public const int ContextPerSlot = 4096;

    public const string ThinkerReasoning = "The Pi's SoC has its own sensor. vcgencmd reads it; sysfs works on any Linux board.";

    public const string ThinkerReply = "<think>" + ThinkerReasoning + "</think>\n\n"
        + "Read the **SoC temperature** with `vcgencmd`:\n\n"
        + "```sh\nvcgencmd measure_temp\n```\n\n"
        + "Or, on any Linux board, from sysfs (in millidegrees):\n\n"
        + "- `cat /sys/class/thermal/thermal_zone0/temp`\n"
        + "- above *80 °C* the Pi throttles its clock";

    public const string InjectorReply = "Hello <img src=x onerror=\"document.title='pwned'\"> and <script>document.title='pwned'</script> "
        + "**bold** [a link](javascript:alert(1)) and [docs](https://example.org/docs)";

    public const string EndlessReply = "Once upon a time a tiny server told a story that never ended. ";

    /// <summary>Settings a derived fixture adds.</summary>
    protected virtual IEnumerable<string> ExtraArguments() => [];

    /// <summary>Whether the scripted models are served besides the successor model.</summary>
    protected virtual bool ServesScriptedModels => true;

    public override async Task InitializeAsync()
    {
        var scratch = Path.Combine(Path.GetTempPath(), "edgeserver-tests", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), "webui-" + Guid.NewGuid().ToString("N")[..8]);
        var models = Path.Combine(scratch, "models");
        Directory.CreateDirectory(models);
        if (ServesScriptedModels)
        {
            ScriptedModel.Write(Path.Combine(models, Endless + ".gguf"), EndlessReply, endless: true);
            ScriptedModel.Write(Path.Combine(models, Thinker + ".gguf"), ThinkerReply);
            ScriptedModel.Write(Path.Combine(models, Injector + ".gguf"), InjectorReply);
        }

        Scratch = scratch;
        await StartAsync(
        [
            "--model", SuccessorModel.SharedPath,
            "--models-dir", models,
            "--threads", "1",
            "--slots", "2",
            "--ctx-size", ContextPerSlot.ToString(CultureInfo.InvariantCulture),
            "--Logging:LogLevel:Default=Warning",
            .. ExtraArguments(),
        ]);
    }
}

/// <summary>The server with an API key, serving the successor model only.</summary>
public sealed class KeyedWebUiServerFixture : WebUiServerFixture
{
    public const string Key = "sk-edge-webui-key";

    protected override IEnumerable<string> ExtraArguments() => [$"--EdgeServer:Security:ApiKeys:0={Key}"];

    protected override bool ServesScriptedModels => false;
}
