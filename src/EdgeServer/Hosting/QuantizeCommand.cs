using System.CommandLine;
using System.Globalization;
using EdgeServer.Inference;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Native;
using EdgeServer.Inference.Pool;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Hosting;

/// <summary>
/// <c>EdgeServer quantize IN.gguf OUT.gguf TYPE</c>: a model quantized by llama.cpp (<see cref="ModelQuantizer"/>),
/// with progress on standard output; every refusal or failure is one line on standard error and exit code 1.
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "The model to quantize: a GGUF file, usually F16, BF16 or F32." };
        var output = new Argument<string>("output") { Description = "The file to write; it appears only once complete and checked." };
        var type = new Argument<string>("type") { Description = "The quantization: " + string.Join(", ", ModelQuantizer.Types.Select(t => t.Name)) + "." };
        var imatrix = new Option<string>("--imatrix") { Description = "An importance matrix from llama-imatrix (GGUF or .dat); the IQ1, IQ2, IQ3_XXS and Q2_K_S types need one.", HelpName = "FILE" };
        var threads = new Option<int>("--threads") { Description = "Threads for quantizing; 0 (the default): every core.", HelpName = "N" };
        var force = new Option<bool>("--force") { Description = "Replace the output if it exists." };
        var nativeDirectory = new Option<string>("--native-dir") { Description = "A folder with llama.cpp 0.5.x's libllama.so and libggml.so instead of the bundled ones.", HelpName = "DIR" };
        var command = new Command("quantize", "Quantize a GGUF model, e.g. 'EdgeServer quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M'.")
        {
            input, output, type, imatrix, threads, force, nativeDirectory,
        };
        command.SetAction(parsed => Run(
            parsed.GetValue(input)!, parsed.GetValue(output)!, parsed.GetValue(type)!, parsed.GetValue(imatrix), parsed.GetValue(threads), parsed.GetValue(force), parsed.GetValue(nativeDirectory)));
        return command;
    }

    private static int Run(string input, string output, string typeName, string? imatrix, int threads, bool force, string? nativeDirectory)
    {
        try
        {
            var type = ModelQuantizer.Find(typeName);
            LlamaRuntime.Initialize(nativeDirectory, NullLogger.Instance);
            var request = new QuantizeRequest(input, output, type) { Threads = threads, Imatrix = imatrix, Force = force };
            var report = new ProgressReport(Console.Out, interactive: !Console.IsOutputRedirected);
            var written = ModelQuantizer.QuantizeAsync(request, report.Show).GetAwaiter().GetResult();
            report.End();
            Console.Out.WriteLine($"Wrote '{output}': {written.Quantization}, {Sizes.Describe(written.FileLength)} from {Sizes.Describe(new FileInfo(input).Length)}.");
            return ExitCodes.Success;
        }
        catch (InferenceException e)
        {
            Console.Error.WriteLine($"EdgeServer: {e.Message}");
            return ExitCodes.ConfigurationError;
        }
    }

    /// <summary>
    /// On a terminal one line redrawn in place; otherwise (a log, a pipe) a plain line at every tenth of the estimate,
    /// so a log is not flooded.
    /// </summary>
    internal sealed class ProgressReport(TextWriter output, bool interactive)
    {
        private readonly Lock _lock = new();
        private int _lastTenth = -1;
        private bool _drawn;

        public void Show(QuantizeProgress progress)
        {
            lock (_lock)
            {
                var share = progress.Estimate > 0 ? Math.Min(0.99, (double)progress.Written / progress.Estimate) : 0;
                var text = string.Create(CultureInfo.InvariantCulture, $"Quantizing: {Sizes.Describe(progress.Written)} of about {Sizes.Describe(progress.Estimate)} ({share:P0})");
                if (interactive)
                {
                    output.Write("\r" + text.PadRight(72));
                    _drawn = true;
                }
                else if ((int)(share * 10) > _lastTenth)
                {
                    _lastTenth = (int)(share * 10);
                    output.WriteLine(text);
                }
            }
        }

        public void End()
        {
            lock (_lock)
            {
                if (_drawn)
                {
                    output.WriteLine();
                    _drawn = false;
                }
            }
        }
    }
}
