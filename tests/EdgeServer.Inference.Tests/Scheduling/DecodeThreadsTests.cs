using System.Diagnostics.Metrics;
using System.Runtime.ExceptionServices;
using EdgeServer.Inference.Diagnostics;
using EdgeServer.Inference.Models;
using EdgeServer.Inference.Sampling;
using EdgeServer.Inference.Scheduling;
using EdgeServer.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeServer.Inference.Tests.Scheduling;

/// <summary>
/// Every llama_context decodes on a persistent ggml thread pool of its own, which is freed with it; the thread count
/// adapts to measured step times unless fixed, and is reported as a metric. Real llama.cpp on the successor model.
/// <para>
/// ggml's workers are native threads; Linux gives a new thread the name of the thread that made it. So a pool made
/// on a thread with a unique name is found in /proc/self/task by that name: its workers, how often they were woken,
/// and that they are gone.
/// </para>
/// </summary>
public class DecodeThreadsTests
{
    private static readonly SamplingParameters Greedy = new() { Temperature = 0 };

    [Fact]
    public void EachGenerationContextDecodesOnAPersistentPoolThatIsFreedWithIt()
    {
        TestRuntime.Ensure();
        OnNamedThread("edge-tp-gen", workers =>
        {
            using var model = LlamaModel.Load(SuccessorModel.SharedPath, MmapMode.On);
            var options = new SchedulerOptions { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = 2, ThreadPoll = 0 };
            for (var i = 0; i < 8; i++)
            {
                var scheduler = new ModelScheduler("m", model, options, NullLogger.Instance);
                Assert.Equal("klmnopqr", Generate(scheduler, "Hello j", 8));
                var pool = workers();
                Assert.Single(pool); // two threads: the decode thread and one worker
                Assert.Equal((2, 2), scheduler.ContextThreads);

                // The same worker decodes the next steps, woken for them (poll 0: it sleeps in between). A pool
                // nobody attached would sleep for good.
                var woken = VoluntarySwitches(pool[0]);
                Assert.Equal("bcdefghi", Generate(scheduler, "Hello a", 8));
                Assert.Equal(pool, workers());
                Assert.True(VoluntarySwitches(pool[0]) - woken >= 2, "the pool's worker was not woken for the decode steps");

                scheduler.Dispose();
                AssertExited(workers);
            }
        });
    }

    [Fact]
    public void TheEmbedderDecodesOnAPoolOfTheDecodeLoopsCurrentCountAndFreesTheOldOne()
    {
        TestRuntime.Ensure();
        OnNamedThread("edge-tp-emb", workers =>
        {
            using var model = LlamaModel.Load(SuccessorModel.SharedPath, MmapMode.On);
            var input = model.Tokenize("hello world", true, false);
            for (var i = 0; i < 4; i++)
            {
                var threads = 2;
                var embedder = new Embedder(model, 256, () => threads, threadPoll: 0);
                var pool = workers();
                Assert.Single(pool);
                var woken = VoluntarySwitches(pool[0]);
                var first = embedder.EmbedAsync([input], default).GetAwaiter().GetResult();
                Assert.True(VoluntarySwitches(pool[0]) > woken, "the pool's worker was not woken for the embedding");

                // The decode loop now runs on one thread: the next input gets a pool of one, and once it has decoded
                // there, the first pool is freed.
                threads = 1;
                var second = embedder.EmbedAsync([input], default).GetAwaiter().GetResult();
                Assert.Equal(1, embedder.ThreadPool.Threads);
                Assert.Equal(1, embedder.ThreadPool.LivePools);
                AssertExited(workers);
                Assert.Equal(first[0], second[0], new FloatTolerance(1e-4f));

                embedder.Dispose();
            }
        });
    }

    [SkippableFact]
    public async Task AdaptiveThreadsSettleOnTheCountWithTheFastestStepsAndTheMetricReportsIt()
    {
        Skip.If(Environment.ProcessorCount < 2, "one core leaves nothing to choose");
        TestRuntime.Ensure();
        using var metric = new ThreadsMetric("adaptive-m");
        using var engine = Engine("adaptive-m", threads: 0);
        await engine.LoadAsync("adaptive-m");
        var scheduler = engine.GetLoadedScheduler("adaptive-m")!;
        Assert.True(scheduler.AdaptiveThreads);
        Assert.Equal(Environment.ProcessorCount, scheduler.Threads);
        Assert.Equal(Environment.ProcessorCount, metric.Read());

        // A box where one thread decodes fastest (a busy core would make the others straggle).
        scheduler.StepTimeHook = (threads, _) => TimeSpan.FromMilliseconds(threads == 1 ? 5 : 20 + threads);
        for (var i = 0; i < 20 && !(scheduler.Threads == 1 && scheduler.ThreadPool.LivePools == 1); i++)
        {
            Assert.Equal(SuccessorModel.ExpectedAfter('a'), await Generate(engine, "adaptive-m", "Hello a"));
        }

        Assert.Equal(1, scheduler.Threads);
        Assert.Equal((1, 1), scheduler.ContextThreads);
        Assert.Equal(1, scheduler.ThreadPool.LivePools);
        Assert.Equal(1, metric.Read());
    }

    [Fact]
    public async Task AFixedThreadsSettingTurnsAdaptationOff()
    {
        TestRuntime.Ensure();
        using var metric = new ThreadsMetric("fixed-m");
        using var engine = Engine("fixed-m", threads: 2);
        await engine.LoadAsync("fixed-m");
        var scheduler = engine.GetLoadedScheduler("fixed-m")!;
        Assert.False(scheduler.AdaptiveThreads);
        scheduler.StepTimeHook = (threads, _) => TimeSpan.FromMilliseconds(threads == 1 ? 5 : 50);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(SuccessorModel.ExpectedAfter('a'), await Generate(engine, "fixed-m", "Hello a"));
        }

        Assert.Equal(2, scheduler.Threads);
        Assert.Equal((2, 2), scheduler.ContextThreads);
        Assert.Equal(2, metric.Read());
    }

    [SkippableFact]
    public async Task LoweringMaxThreadsTakesEffectAtTheNextStepAndRaisingItMeasuresAgain()
    {
        Skip.If(Environment.ProcessorCount < 2, "one core leaves nothing to lower");
        TestRuntime.Ensure();
        using var engine = Engine("max-m", threads: 0);
        await engine.LoadAsync("max-m");
        var scheduler = engine.GetLoadedScheduler("max-m")!;
        scheduler.StepTimeHook = (threads, _) => TimeSpan.FromMilliseconds(40.0 / threads); // more threads, faster
        for (var i = 0; i < 20 && (i == 0 || scheduler.MeasuringThreads); i++)
        {
            Assert.Equal(SuccessorModel.ExpectedAfter('a'), await Generate(engine, "max-m", "Hello a"));
        }

        var all = scheduler.Threads;
        Assert.Equal(Environment.ProcessorCount, all);

        Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.MaxThreads = 0);
        scheduler.MaxThreads = 1; // a thermal back-off
        Assert.Equal(SuccessorModel.ExpectedAfter('a'), await Generate(engine, "max-m", "Hello a"));
        Assert.Equal(1, scheduler.Threads);
        Assert.Equal((1, 1), scheduler.ContextThreads);

        scheduler.MaxThreads = 1024;
        Assert.Equal(all, scheduler.MaxThreads); // capped at the cores
        for (var i = 0; i < 20 && (i == 0 || scheduler.MeasuringThreads); i++)
        {
            Assert.Equal(SuccessorModel.ExpectedAfter('a'), await Generate(engine, "max-m", "Hello a"));
        }

        Assert.Equal(all, scheduler.Threads);
        Assert.Equal((all, all), scheduler.ContextThreads);
    }

    [Theory]
    [InlineData(-1, 50, "Threads")]
    [InlineData(513, 50, "Threads")]
    [InlineData(0, 101, "ThreadPoll")]
    [InlineData(0, -1, "ThreadPoll")]
    public void BadThreadSettingsAreRefusedWhenTheEngineStarts(int threads, int poll, string named)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new InferenceEngine(
            new EngineOptions { Models = [new ModelSource("m", SuccessorModel.SharedPath)], Scheduler = new() { Threads = threads, ThreadPoll = poll } },
            NullLoggerFactory.Instance));
        Assert.StartsWith(named + " must be", error.Message, StringComparison.Ordinal);
    }

    private static InferenceEngine Engine(string id, int threads) => new(
        new EngineOptions
        {
            Models = [new ModelSource(id, SuccessorModel.SharedPath)],
            Scheduler = new() { Slots = 1, ContextPerSlot = 256, BatchSize = 64, Threads = threads },
        },
        NullLoggerFactory.Instance);

    private static async Task<string> Generate(InferenceEngine engine, string model, string prompt)
    {
        var session = await engine.StartAsync(new GenerationRequest { Model = model, Prompt = prompt, Sampling = Greedy }, default);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in session.ReadAllAsync())
        {
            text.Append(chunk.Text);
        }

        return text.ToString();
    }

    /// <summary>Generates on a scheduler made by the test itself (not by an engine, which makes it on a pool thread).</summary>
    private static string Generate(ModelScheduler scheduler, string prompt, int maxTokens)
    {
        var request = new GenerationRequest { Model = "m", Prompt = prompt, Sampling = Greedy };
        var tokens = scheduler.Model.Tokenize(prompt, addSpecial: true, parseSpecial: false);
        using var reservation = scheduler.Reserve(1);
        var sampler = new TokenSampler(Greedy, new Dictionary<int, float>(), null, scheduler.Model.Vocab, scheduler.Model.VocabularySize, scheduler.ContextPerSlot);
        var session = scheduler.Enqueue(reservation, request, tokens, maxTokens, sampler, default);
        return string.Concat(session.ReadAllAsync().ToBlockingEnumerable().Select(c => c.Text));
    }

    /// <summary>
    /// Runs <paramref name="body"/> on a thread named <paramref name="name"/> (at most 15 characters, as Linux keeps
    /// them); the body gets a function listing the other native threads of that name (the pools it made).
    /// </summary>
    private static void OnNamedThread(string name, Action<Func<List<int>>> body)
    {
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                var self = int.Parse(Path.GetFileName(new DirectoryInfo("/proc/thread-self").LinkTarget!), System.Globalization.CultureInfo.InvariantCulture);
                Assert.Equal(name, File.ReadAllText($"/proc/self/task/{self}/comm").TrimEnd('\n'));
                body(() => Named(name).Where(t => t != self).ToList());
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        }) { Name = name };
        thread.Start();
        thread.Join();
        failure?.Throw();
    }

    /// <summary>
    /// The pool's threads have exited: pthread_join returns before the kernel removes an exiting thread from
    /// /proc/self/task, so on a busy box one may still be listed for a moment.
    /// </summary>
    private static void AssertExited(Func<List<int>> workers)
    {
        for (var i = 0; i < 250 && workers().Count > 0; i++)
        {
            Thread.Sleep(20);
        }

        Assert.Empty(workers());
    }

    private static IEnumerable<int> Named(string name)
    {
        foreach (var task in Directory.GetDirectories("/proc/self/task"))
        {
            string comm;
            try
            {
                comm = File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n');
            }
            catch (IOException)
            {
                continue; // ended meanwhile
            }

            if (comm == name)
            {
                yield return int.Parse(Path.GetFileName(task), System.Globalization.CultureInfo.InvariantCulture);
            }
        }
    }

    private static long VoluntarySwitches(int tid)
    {
        var line = File.ReadLines($"/proc/self/task/{tid}/status").First(l => l.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal));
        return long.Parse(line.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private sealed class FloatTolerance(float tolerance) : IEqualityComparer<float[]>
    {
        public bool Equals(float[]? x, float[]? y) => x!.Length == y!.Length && x.Zip(y).All(p => Math.Abs(p.First - p.Second) <= tolerance);

        public int GetHashCode(float[] obj) => obj.Length;
    }

    /// <summary>Reads edgeserver.decode.threads for one model (other tests' engines report their own models meanwhile).</summary>
    private sealed class ThreadsMetric : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly string _model;
        private int? _value;

        public ThreadsMetric(string model)
        {
            _model = model;
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == InferenceDiagnostics.MeterName && instrument.Name == "edgeserver.decode.threads")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<int>((_, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "model" && (string?)tag.Value == _model)
                    {
                        _value = value;
                    }
                }
            });
            _listener.Start();
        }

        public int? Read()
        {
            _value = null;
            _listener.RecordObservableInstruments();
            return _value;
        }

        public void Dispose() => _listener.Dispose();
    }
}
