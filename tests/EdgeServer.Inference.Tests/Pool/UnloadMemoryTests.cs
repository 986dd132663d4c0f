using EdgeServer.Inference.Native;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Pool;

/// <summary>Alone: the process's resident memory is what it measures, and other tests would move it.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessMemoryTests
{
    public const string Name = "process memory";
}

/// <summary>
/// Loading and unloading a model again and again leaves the process no larger: the buffers llama.cpp frees go back
/// to the system, not into malloc's arenas (which made each model switch cost about 10 MiB for good).
/// </summary>
[Collection(ProcessMemoryTests.Name)]
public sealed class UnloadMemoryTests
{
    private const int Cycles = 24;

    public UnloadMemoryTests() => TestRuntime.Ensure();

    [SkippableFact]
    public void ThisCLibraryCanGiveFreeHeapMemoryBack()
    {
        // On musl or bionic trimming is a no-op, not an error.
        Skip.IfNot(File.ReadAllText("/proc/self/maps").Contains("/libc.so.6", StringComparison.Ordinal), "this process does not run on glibc");
        Assert.True(CAllocator.CanTrim);
    }

    [SkippableFact]
    public async Task RepeatedLoadsAndUnloadsDoNotGrowTheProcess()
    {
        Skip.IfNot(CAllocator.CanTrim, "this C library cannot give heap memory back");

        // Read, not mapped: the weights are heap memory too. Two slots of 4096 tokens make KV and compute buffers of
        // a few MiB each, under glibc's mmap threshold once it has risen: they come from malloc's arenas.
        using var engine = new InferenceEngine(
            new EngineOptions
            {
                Models = [new ModelSource("a", SuccessorModel.SharedPath)],
                Scheduler = new() { Slots = 2, ContextPerSlot = 4096, BatchSize = 512, Threads = 2 },
                UseMmap = MmapMode.Off,
            },
            NullLoggerFactory.Instance);

        var after = new List<long>();
        for (var i = 0; i < Cycles; i++)
        {
            var session = await engine.StartAsync(new GenerationRequest { Model = "a", Prompt = "Hello j", Sampling = new() { Temperature = 0 }, MaxTokens = 64, IgnoreEos = true }, default);
            await foreach (var _ in session.ReadAllAsync())
            {
            }

            Assert.True(await engine.UnloadAsync("a", wait: true, default));
            GC.Collect();
            GC.WaitForPendingFinalizers();
            after.Add(AnonymousKiB() - (GC.GetGCMemoryInfo().TotalCommittedBytes >> 10));
        }

        // The first cycles settle the runtime (JIT, pools, malloc arenas of new threads; a one-off step of up to 15 MiB
        // was seen). Without giving memory back, each cycle left about 4 MiB more: cycles 21-24 averaged about 50 MiB
        // above cycles 5-8 (1.8 MiB less with it). What .NET's own heap holds is left out.
        var early = after.Skip(4).Take(4).Average();
        var late = after.TakeLast(4).Average();
        Assert.True(late - early < 24 * 1024, $"native anonymous memory after each unload (KiB): {string.Join(", ", after)}; cycles {Cycles - 3}-{Cycles} averaged {late - early:0} KiB more than cycles 5-8");
    }

    /// <summary>RssAnon of this process, KiB.</summary>
    private static long AnonymousKiB() =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("RssAnon:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
}
