using System.CommandLine;
using System.Globalization;
using EdgeServer.Hosting;
using EdgeServer.Inference;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Pool;
using Spectre.Console;

namespace EdgeServer.Pull;

/// <summary>
/// <c>EdgeServer pull SOURCE [--force] [--models-dir DIR]</c>: downloads a model into the models folder with the
/// server's settings (its budget, slots and context decide whether it fits). Progress is a bar with speed and time
/// left on a terminal, plain lines otherwise; every failure is one line on standard error and exit code 1.
/// </summary>
public static class PullCommand
{
    public const string HubTokenVariable = "HF_TOKEN";

    /// <param name="settings">The --Section:Key=value overrides of the command line.</param>
    public static Command Create(IReadOnlyList<string> settings)
    {
        var source = new Argument<string>("source")
        {
            Description = "owner/repo[:QUANT] (a Hugging Face repository; QUANT as llama.cpp's -hf picks it, default Q4_K_M), owner/repo/FILE.gguf, or an https:// URL of a .gguf file.",
        };
        var force = new Option<bool>("--force") { Description = "Download even when the model does not fit the memory budget." };
        var modelsDirectory = new Option<string>("--models-dir") { Description = "Download into this folder (EdgeServer:ModelsDirectory, default ./models).", HelpName = "DIR" };
        var command = new Command("pull", $"""
            Download a model into the models folder, after checking disk space and that it fits the memory budget.
            A gated repository needs a Hugging Face token in the {HubTokenVariable} environment variable.
            An interrupted pull resumes when run again.
            """)
        {
            source, force, modelsDirectory,
        };
        command.SetAction(parsed =>
        {
            var arguments = new List<string>(settings);
            if (parsed.GetValue(modelsDirectory) is { Length: > 0 } folder)
            {
                arguments.AddRange(["--models-dir", folder]);
            }

            return Run(parsed.GetValue(source)!, parsed.GetValue(force), [.. arguments]);
        });
        return command;
    }

    private static int Run(string source, bool force, string[] args)
    {
        PullTarget target;
        EdgeServerOptions options;
        try
        {
            options = EdgeServerHosting.CreateBuilder(args).Configuration.GetSection(EdgeServerOptions.Section).Get<EdgeServerOptions>() ?? new();
            var validation = new EdgeServerOptionsValidator().Validate(null, options);
            if (validation.Failed)
            {
                return Fail(validation.Failures);
            }

            target = Target(options, CpuRepackFeatures.Current, options.Memory.ToBudget());
        }
        catch (Exception e) when (EdgeServerCommandLine.ConfigurationProblems(e) is { } problems)
        {
            return Fail(problems);
        }
        catch (InferenceException e)
        {
            return Fail([e.Message]);
        }

        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using var http = new PullHttp(options.Pull.Hub, Environment.GetEnvironmentVariable(HubTokenVariable));
        var puller = new ModelPuller(http, target, TimeProvider.System);
        PullPlan? plan = null;
        try
        {
            plan = puller.PlanAsync(source, force, Console.WriteLine, cancel.Token).GetAwaiter().GetResult();
            var path = Console.IsOutputRedirected
                ? puller.DownloadAsync(plan, new PlainProgress(plan).Report, cancel.Token).GetAwaiter().GetResult()
                : DownloadWithBar(puller, plan, cancel.Token);
            Console.WriteLine($"{plan.Name} is in {Path.GetDirectoryName(path)}: model '{plan.ModelId}'. A running server serves it within seconds; or start one with: EdgeServer --model {path}");
            return ExitCodes.Success;
        }
        catch (PullException e)
        {
            return Fail([e.Message]);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            var kept = plan is { Partial.SafeFileHandle.IsClosed: false } ? plan.Partial.Length : 0;
            return Fail([kept > 0
                ? $"pull stopped; {Sizes.Describe(kept)} kept in {plan!.Partial.Name}: run the same pull again to resume."
                : "pull stopped."]);
        }
        finally
        {
            plan?.Dispose();
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>The download with Spectre.Console's progress bar: bytes, speed and time left.</summary>
    private static string DownloadWithBar(ModelPuller puller, PullPlan plan, CancellationToken cancellationToken) =>
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(plan.Name), maxValue: plan.Size);
                task.Value = plan.Partial.Length;
                return await puller.DownloadAsync(plan, e =>
                {
                    if (e.Status is "downloading" && e.Completed is { } completed)
                    {
                        task.Value = completed;
                    }
                    else if (e.Message is { } message)
                    {
                        AnsiConsole.MarkupLineInterpolated($"[grey]{e.Status}: {message}[/]");
                    }
                }, cancellationToken);
            }).GetAwaiter().GetResult();

    /// <summary>Progress as plain lines (a log, a pipe): every tenth of the file, and every message.</summary>
    private sealed class PlainProgress(PullPlan plan)
    {
        private long _nextTenth = plan.Size / 10;

        public void Report(PullEvent e)
        {
            if (e.Status != "downloading")
            {
                Console.WriteLine($"{e.Status} {plan.Name}{(e.Message is null ? string.Empty : $": {e.Message}")}");
                return;
            }

            if (e.Completed is not { } completed || (completed < _nextTenth && completed < plan.Size))
            {
                return;
            }

            _nextTenth = (completed / Math.Max(1, plan.Size / 10) + 1) * Math.Max(1, plan.Size / 10);
            var eta = e.EtaSeconds is { } seconds ? $", {TimeSpan.FromSeconds(Math.Round(seconds)):g} left" : string.Empty;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"downloading {plan.Name}: {100.0 * completed / plan.Size:0}% ({Sizes.Describe(completed)} of {Sizes.Describe(plan.Size)}), {Sizes.Describe((long)(e.BytesPerSecond ?? 0))}/s{eta}"));
        }
    }

    /// <summary>Where pulls go and how they are checked, from the server's settings.</summary>
    internal static PullTarget Target(EdgeServerOptions options, CpuRepackFeatures cpu, MemoryBudget budget) => new(
        EdgeServerOptionsFileValidator.Resolve(options.ModelsDirectory),
        options.Pull.MinFreeSpaceBytes,
        options.Pull.Retries,
        TimeSpan.FromSeconds(options.Pull.StallTimeoutSeconds),
        header => MemoryFit.Check(header, options.ToSchedulerOptions(), options.Runtime.UseMmap, options.Runtime.Repack, cpu, budget.Bytes, budget.Derivation));

    private static int Fail(IEnumerable<string> problems)
    {
        foreach (var problem in problems)
        {
            Console.Error.WriteLine($"EdgeServer: {problem}");
        }

        return ExitCodes.ConfigurationError;
    }
}
