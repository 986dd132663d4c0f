namespace EdgeServer.Inference.Diagnostics;

/// <summary>
/// Event ids of this assembly's log messages, in one list so that none repeats. Operators filter and alert on the
/// numbers, so an event keeps its value; a new event takes the next free one of its area. The host assembly keeps
/// its own list.
/// </summary>
internal static class EventIds
{
    // Native runtime: loading llama.cpp and ggml, and llama.cpp's own log (1000-1199).
    public const int NativeRuntimeLoaded = 1000;
    public const int NativeLibraryProbe = 1001;
    public const int NativeLog = 1100;

    // Decode loop of one model: start, decode and slot failures, recovery (2000-2099).
    public const int SchedulerStarted = 2000;
    public const int DecodeFailed = 2001;
    public const int DecodeLoopStopped = 2002;
    public const int SlotFailed = 2003;
    public const int DecodeLoopFailed = 2004;
    public const int ContextRecreated = 2005;
    public const int SamplingOverBudget = 2006;
    public const int ThreadsChanged = 2007;

    // Models in the engine: found, unavailable, loaded, reloaded after a stopped loop, and the pool (3000-3099).
    public const int ModelFound = 3000;
    public const int ModelUnavailable = 3001;
    public const int ModelLoaded = 3002;
    public const int ModelReloaded = 3003;
    // 3004 was StoppedModelKept: a stopped model's memory is freed now (StoppedModelFreed).

    // The model pool: the memory budget, unloading, waiting for room (3005-3099, after the models' own).
    public const int ModelUnloaded = 3005;
    public const int WaitingForRoom = 3006;
    public const int MemoryBudget = 3007;
    public const int StoppedModelFreed = 3008;

    // The models folder, watched: a file that appeared, one that left, one whose name is taken, a failed rescan.
    public const int ModelAdded = 3010;
    public const int ModelRemoved = 3011;
    public const int ModelNameTaken = 3012;
    public const int ModelsFolderRescanFailed = 3013;
    public const int ModelsFolderNotWatched = 3014;
    public const int ModelReplaced = 3015;

    // Probe of a model file before it is loaded, in a child process or in this one (3100-3199).
    public const int ModelProbed = 3100;
    public const int ProbeChildFailed = 3101;
    public const int ProbeChildTimedOut = 3102;
    public const int ProbeChildNotStarted = 3103;
    public const int ProbingInProcess = 3104;
    public const int ProbeChildStarting = 3105;
    public const int ProbeRemembered = 3106;
}
