using EdgeServer.Inference;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Pool;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Scheduling;

namespace EdgeServer.Pull;

/// <summary>
/// A GGUF file's header read before its download: the first bytes with range requests, read by the project's
/// <see cref="GgufReader"/> as if they were the whole file of the announced size. A header longer than the bytes
/// fetched is fetched again with four times as many, up to <see cref="MaxHeaderBytes"/>: no hostile count in the
/// header makes this hold more than that in memory.
/// </summary>
public static class RemoteHeader
{
    public const int FirstRead = 1 << 20;
    public const int MaxHeaderBytes = 64 << 20;

    /// <param name="fetch">The first n bytes of the file (fewer if the file is shorter).</param>
    public static async Task<GgufFile> ReadAsync(string name, long fileLength, Func<int, CancellationToken, Task<byte[]>> fetch, CancellationToken cancellationToken)
    {
        var want = (int)Math.Min(FirstRead, Math.Max(fileLength, 24));
        while (true)
        {
            var prefix = await fetch(want, cancellationToken);
            try
            {
                var header = GgufReader.Read(new PrefixStream(prefix, fileLength), name);
                GgufModelCheck.Validate(header);
                return header;
            }
            catch (PrefixStream.BeyondPrefixException)
            {
                if (prefix.Length < want || want >= MaxHeaderBytes || want >= fileLength)
                {
                    throw new PullException($"{name}: its GGUF header is longer than {Sizes.Describe(Math.Min(want, MaxHeaderBytes))}, more than any model's; it is not downloaded.",
                        StatusCodes.Status422UnprocessableEntity, "invalid_model_file");
                }

                want = (int)Math.Min(Math.Min((long)want * 4, MaxHeaderBytes), fileLength);
            }
            catch (GgufFormatException e)
            {
                throw new PullException($"{e.Message} It is not downloaded.", StatusCodes.Status422UnprocessableEntity, "invalid_model_file", inner: e);
            }
        }
    }

    /// <summary>The first bytes of a file posing as the whole file: seeking is free, reading past them throws.</summary>
    private sealed class PrefixStream(byte[] prefix, long length) : Stream
    {
        public sealed class BeyondPrefixException() : Exception("The header continues past the bytes fetched.");

        public override bool CanRead => true;

        public override bool CanSeek => true;

        public override bool CanWrite => false;

        public override long Length => length;

        public override long Position { get; set; }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (Position >= length || buffer.IsEmpty)
            {
                return 0;
            }

            var wanted = (int)Math.Min(buffer.Length, length - Position);
            if (Position + wanted > prefix.Length)
            {
                throw new BeyondPrefixException();
            }

            prefix.AsSpan((int)Position, wanted).CopyTo(buffer);
            Position += wanted;
            return wanted;
        }

        public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => Position + offset,
            _ => length + offset,
        };

        public override void Flush()
        {
        }

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

/// <summary>Whether a model will fit the memory budget, by the estimate the model pool uses, and which context would.</summary>
public sealed record MemoryFit(MemoryEstimate Estimate, long Budget, string BudgetSource, int ContextPerSlot, int Slots, int? ContextThatFits)
{
    public const string ForceAdvice = "Add --force (\"force\": true over the API) to download it anyway.";

    public bool Fits => Estimate.Total <= Budget;

    /// <param name="cpu">The CPU backend's repack features (<see cref="CpuRepackFeatures.Current"/>; none before the runtime is loaded).</param>
    public static MemoryFit Check(GgufFile header, SchedulerOptions scheduler, MmapMode mmap, bool repack, CpuRepackFeatures cpu, long budget, string budgetSource)
    {
        var mapped = WeightLoading.Plan(header, mmap, repack, cpu.Features).Mmap;
        cpu = cpu with { Repack = cpu.Repack && repack };
        MemoryEstimate At(int context) => MemoryEstimator.Estimate(header, scheduler with { ContextPerSlot = context }, mapped, cpu);
        var estimate = At(scheduler.ContextPerSlot);
        int? fits = null;
        if (estimate.Total > budget)
        {
            // The largest context per slot, in steps of 256 (llama.cpp pads to them), whose estimate fits.
            const int Step = 256;
            var low = 0;
            var high = scheduler.ContextPerSlot / Step;
            while (low < high)
            {
                var middle = (low + high + 1) / 2;
                if (At(middle * Step).Total <= budget)
                {
                    low = middle;
                }
                else
                {
                    high = middle - 1;
                }
            }

            fits = low > 0 ? low * Step : null;
        }

        return new MemoryFit(estimate, budget, budgetSource, scheduler.ContextPerSlot, scheduler.Slots, fits);
    }

    /// <summary>One line: the estimate against the budget, and what to do when it does not fit.</summary>
    public string Describe(string name)
    {
        var settings = $"{Slots} slot{(Slots == 1 ? string.Empty : "s")} of {ContextPerSlot} tokens";
        if (Fits)
        {
            return $"{name} needs about {Estimate} with {settings}; the budget is {Sizes.Describe(Budget)}: it fits.";
        }

        var advice = ContextThatFits is { } context
            ? $"with --ctx-size {context} (EdgeServer:Scheduler:ContextPerSlot) it would fit"
            : "even the smallest context does not make it fit: its weights alone are too large";
        return $"{name} needs about {Estimate} with {settings}, more than the memory budget of {Sizes.Describe(Budget)} ({BudgetSource}); {advice}. {ForceAdvice}";
    }
}
