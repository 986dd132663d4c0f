using EdgeServer.Inference.Scheduling;
using Microsoft.Extensions.Time.Testing;

namespace EdgeServer.Inference.Tests.Scheduling;

/// <summary>
/// The adaptive thread count, fed step times of a box whose speed per thread count the test defines. Everything is
/// deterministic: the step times are given, the clock is fake.
/// </summary>
public class ThreadCountPolicyTests
{
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);

    // Two cores, idle: two threads decode fastest. One core busy with another process: the second thread straggles.
    private static readonly Dictionary<int, double> Idle = new() { [1] = 12, [2] = 7 };
    private static readonly Dictionary<int, double> Busy = new() { [1] = 12, [2] = 30 };

    /// <summary>Feeds steps until measuring ends (or a bound), and returns how many it took.</summary>
    private static int Settle(ThreadCountPolicy policy, IReadOnlyDictionary<int, double> box, int batch = 1)
    {
        for (var step = 1; step <= 500; step++)
        {
            policy.Observe(batch, TimeSpan.FromMilliseconds(box[policy.Threads]));
            if (!policy.Measuring)
            {
                return step;
            }
        }

        throw new InvalidOperationException($"still measuring after 500 steps, at {policy.Threads} threads");
    }

    private static void Run(ThreadCountPolicy policy, IReadOnlyDictionary<int, double> box, int steps, int batch = 1)
    {
        for (var i = 0; i < steps; i++)
        {
            policy.Observe(batch, TimeSpan.FromMilliseconds(box[policy.Threads]));
        }
    }

    [Fact]
    public void AdaptiveStartsAtTheMostThreadsAndSettlesOnTheFastestCount()
    {
        var idle = ThreadCountPolicy.Adaptive(2, _clock);
        Assert.Equal(2, idle.Threads);
        Settle(idle, Idle);
        Assert.Equal(2, idle.Threads);
        Assert.Equal(ThreadChangeReason.Fastest, idle.Reason);

        var busy = ThreadCountPolicy.Adaptive(2, _clock);
        Settle(busy, Busy);
        Assert.Equal(1, busy.Threads);
        Assert.Equal([1, 2], busy.MedianMilliseconds.Keys.Order());
    }

    [Fact]
    public void OnMoreCoresItFindsAnOptimumInTheMiddleWithoutTryingEveryCount()
    {
        // Eight cores, two busy: six threads are best; below that every thread less is slower.
        var box = new Dictionary<int, double> { [8] = 40, [7] = 30, [6] = 10, [5] = 14, [4] = 17, [3] = 22, [2] = 30, [1] = 60 };
        var policy = ThreadCountPolicy.Adaptive(8, _clock);
        Settle(policy, box);
        Assert.Equal(6, policy.Threads);
        Assert.DoesNotContain(1, policy.MedianMilliseconds.Keys); // stopped descending once a count was clearly slower
    }

    [Fact]
    public void AClearlySlowerCountIsGivenUpAfterAFewSteps()
    {
        var policy = ThreadCountPolicy.Adaptive(2, _clock);
        var onOne = 0;
        for (var i = 0; i < 100 && policy.Measuring; i++)
        {
            onOne += policy.Threads == 1 ? 1 : 0;
            policy.Observe(1, TimeSpan.FromMilliseconds(Idle[policy.Threads]));
        }

        Assert.Equal(2, policy.Threads);
        Assert.Equal(ThreadTuning.Default.WarmupSteps + ThreadTuning.Default.EarlySamples, onOne);
    }

    [Fact]
    public void OneSlowStepDoesNotDecide()
    {
        var policy = ThreadCountPolicy.Adaptive(2, _clock);
        var step = 0;
        for (var i = 0; i < 100 && policy.Measuring; i++)
        {
            // Every fifth step of two threads is hit by a stall four times as long.
            var ms = Idle[policy.Threads] * (policy.Threads == 2 && ++step % 5 == 0 ? 4 : 1);
            policy.Observe(1, TimeSpan.FromMilliseconds(ms));
        }

        Assert.Equal(2, policy.Threads);
    }

    [Fact]
    public void WhenLoadArrivesTheStepTimeDriftsAndItMeasuresAgain()
    {
        var policy = ThreadCountPolicy.Adaptive(2, _clock);
        Settle(policy, Idle);
        Run(policy, Idle, 200);
        Assert.Equal(2, policy.Threads);
        Assert.False(policy.Measuring);

        var changes = new List<ThreadChangeReason>();
        for (var i = 0; i < 200 && (changes.Count == 0 || policy.Measuring); i++)
        {
            var before = policy.Reason;
            policy.Observe(1, TimeSpan.FromMilliseconds(Busy[policy.Threads]));
            if (policy.Reason != before)
            {
                changes.Add(policy.Reason);
            }
        }

        Assert.Equal(1, policy.Threads);
        Assert.Equal(ThreadChangeReason.LoadChanged, changes[0]);
        Assert.Equal(ThreadChangeReason.Fastest, changes[^1]);
    }

    [Fact]
    public void WhenLoadLeavesThePeriodicRecheckReturnsToMoreThreads()
    {
        var policy = ThreadCountPolicy.Adaptive(2, _clock);
        Settle(policy, Busy);
        Assert.Equal(1, policy.Threads);

        // The load is gone, but one thread decodes as fast as before: no drift, so it stays until the re-check.
        Run(policy, Idle, 500);
        Assert.Equal(1, policy.Threads);
        Assert.False(policy.Measuring);

        _clock.Advance(ThreadTuning.Default.RecheckInterval);
        Assert.True(policy.Observe(1, TimeSpan.FromMilliseconds(Idle[1])));
        Assert.Equal(ThreadChangeReason.Recheck, policy.Reason);
        Settle(policy, Idle);
        Assert.Equal(2, policy.Threads);
    }

    [Fact]
    public void StepsOfAnotherBatchSizeAreNotComparedWithTheMeasuredOnes()
    {
        // Steps of two streams (slower per step, whatever the count) come between those of one: they must not make
        // the count measured with more of them look slower.
        var policy = ThreadCountPolicy.Adaptive(2, _clock);
        for (var i = 0; i < 200 && policy.Measuring; i++)
        {
            policy.Observe(1, TimeSpan.FromMilliseconds(Idle[policy.Threads]));
            if (policy.Threads == 2)
            {
                policy.Observe(2, TimeSpan.FromMilliseconds(100));
            }
        }

        Assert.Equal(2, policy.Threads);

        // A lasting new size becomes the new reference instead of looking like a load change.
        Run(policy, new Dictionary<int, double> { [1] = 15, [2] = 9 }, 100, batch: 2);
        Assert.False(policy.Measuring);
        Assert.Equal(2, policy.Threads);
    }

    [Fact]
    public void AFixedCountNeverAdapts()
    {
        var policy = ThreadCountPolicy.Fixed(2);
        Assert.False(policy.IsAdaptive);
        for (var i = 0; i < 200; i++)
        {
            Assert.False(policy.Observe(1, TimeSpan.FromMilliseconds(Busy[policy.Threads] * (1 + i % 7))));
        }

        _clock.Advance(TimeSpan.FromHours(1));
        Assert.False(policy.Observe(1, TimeSpan.FromMilliseconds(50)));
        Assert.Equal(2, policy.Threads);
    }

    [Fact]
    public void TheCeilingCapsBothModesAndCannotExceedTheFirstCount()
    {
        var adaptive = ThreadCountPolicy.Adaptive(4, _clock);
        var box = new Dictionary<int, double> { [4] = 5, [3] = 6, [2] = 8, [1] = 14 };
        Settle(adaptive, box);
        Assert.Equal(4, adaptive.Threads);

        Assert.True(adaptive.SetCeiling(2));
        Assert.Equal(2, adaptive.Threads);
        Assert.Equal(ThreadChangeReason.Ceiling, adaptive.Reason);
        Settle(adaptive, box);
        Run(adaptive, box, 100);
        Assert.Equal(2, adaptive.Threads);
        Assert.DoesNotContain(adaptive.MedianMilliseconds.Keys, k => k > 2);

        Assert.False(adaptive.SetCeiling(2));
        adaptive.SetCeiling(64);
        Assert.Equal(4, adaptive.Ceiling);
        Settle(adaptive, box);
        Assert.Equal(4, adaptive.Threads);

        var fixedCount = ThreadCountPolicy.Fixed(3);
        Assert.True(fixedCount.SetCeiling(1));
        Assert.Equal(1, fixedCount.Threads);
        Assert.True(fixedCount.SetCeiling(8));
        Assert.Equal(3, fixedCount.Threads);
        Assert.True(fixedCount.SetCeiling(0)); // at least one thread
        Assert.Equal(1, fixedCount.Threads);
    }

    [Fact]
    public void ALoweredCeilingAboveTheCountInUseKeepsItAndNeverAddsThreads()
    {
        // Four cores, two of them busy: two threads decode fastest. A heat back-off then caps at three.
        var box = new Dictionary<int, double> { [4] = 30, [3] = 20, [2] = 8, [1] = 14 };
        var policy = ThreadCountPolicy.Adaptive(4, _clock);
        Settle(policy, box);
        Assert.Equal(2, policy.Threads);

        Assert.False(policy.SetCeiling(3));
        Assert.Equal(2, policy.Threads);
        Assert.False(policy.Measuring);

        // Below the count in use, it measures downward from the ceiling.
        Assert.True(policy.SetCeiling(1));
        Assert.Equal(1, policy.Threads);
    }

    [Fact]
    public void OneCoreLeavesNothingToMeasure()
    {
        var policy = ThreadCountPolicy.Adaptive(1, _clock);
        Assert.False(policy.Measuring);
        Assert.False(policy.Observe(1, TimeSpan.FromMilliseconds(10)));
        Assert.Equal(1, policy.Threads);
    }
}
