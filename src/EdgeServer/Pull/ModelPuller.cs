using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using EdgeServer.Inference;
using EdgeServer.Inference.Gguf;
using EdgeServer.Inference.Pool;
using Polly;
using Polly.Retry;

namespace EdgeServer.Pull;

/// <summary>Where a pull puts its file and what it must leave: the folder, free space, retries, and the memory check.</summary>
/// <param name="Fit">The memory check of a model's header against the server's budget and settings.</param>
public sealed record PullTarget(string ModelsDirectory, long MinFreeSpace, int Retries, TimeSpan StallTimeout, Func<GgufFile, MemoryFit> Fit);

/// <summary>
/// Gets a model file into the models folder. <see cref="PlanAsync"/> does everything before the first byte of the
/// weights: resolves the name to a URL, learns the size and checksum, takes the file's lock, checks free space,
/// reads the GGUF header with range requests and checks that the model fits the memory budget.
/// <see cref="DownloadAsync"/> then writes <c>NAME.gguf.partial</c> in the folder (resumed with a Range request after
/// an interruption, retried with Polly), checks the SHA-256 and the GGUF header of the whole file, and renames it to
/// <c>NAME.gguf</c>: the folder never holds a half file under a model's name.
/// </summary>
public sealed class ModelPuller(PullHttp http, PullTarget target, TimeProvider clock)
{
    public const string PartialSuffix = ".partial";
    private const int MaxListingBytes = 16 << 20;
    private const int BufferSize = 1 << 20;
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>Resolves and checks a pull; the plan holds the file's lock until disposed. <paramref name="note"/> gets the lines worth telling.</summary>
    public async Task<PullPlan> PlanAsync(string source, bool force, Action<string> note, CancellationToken cancellationToken)
    {
        var parsed = PullSource.Parse(source);
        Uri url;
        string name;
        long? size = null;
        string? sha256 = null;
        if (parsed.Url is { } plain)
        {
            url = plain;
            name = PullSource.LocalName(Uri.UnescapeDataString(plain.AbsolutePath));
        }
        else
        {
            var files = await ListAsync(parsed.Repository!, cancellationToken);
            var file = parsed.RepositoryFile is { } path
                ? RepositoryFiles.Find(parsed.Repository!, files, path)
                : RepositoryFiles.Choose(parsed.Repository!, files, parsed.Quantization);
            if (RepositoryFiles.SplitPart(file.Path) is { Count: > 1 } split)
            {
                throw PullException.InvalidSource($"{file.Path} is part 1 of a model split into {split.Count} files; pulling split models is not supported: merge them with llama-gguf-split --merge, or pick another quantization.");
            }

            name = PullSource.LocalName(file.Path);
            url = new Uri(http.Hub, $"{parsed.Repository}/resolve/main/{string.Join('/', file.Path.Split('/').Select(Uri.EscapeDataString))}");
            size = file.Size;
            sha256 = file.Sha256;
        }

        var folder = Path.GetFullPath(target.ModelsDirectory);
        var final = Path.GetFullPath(Path.Combine(folder, name));
        if (!string.Equals(Path.GetDirectoryName(final), folder.TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
        {
            throw PullException.InvalidSource($"'{name}' is not a plain file name.");
        }

        if (File.Exists(final))
        {
            throw Exists(name, folder);
        }

        using (var head = await http.SendAsync(HttpMethod.Head, url, null, cancellationToken))
        {
            if (!head.Response.IsSuccessStatusCode)
            {
                throw http.Failure(head.Response, head.Url, name);
            }

            size ??= head.LinkedSize ?? head.Response.Content.Headers.ContentLength;
            sha256 ??= Sha256Of(head.LinkedEtag) ?? Sha256Of(head.Response.Headers.ETag?.Tag);
        }

        if (size is not > 0 and var unknown)
        {
            throw PullException.Upstream($"{PullHttp.Describe(url)} does not say how large {name} is ({(unknown is null ? "no Content-Length" : $"{unknown} bytes")}), so it is not downloaded.");
        }

        Directory.CreateDirectory(folder);
        var plan = new PullPlan(name, final, url, size.Value, sha256, Lock(final + PartialSuffix, name));
        try
        {
            var free = new DriveInfo(folder).AvailableFreeSpace;
            var needed = plan.Size - plan.Partial.Length;
            if (free - needed < target.MinFreeSpace)
            {
                throw new PullException(
                    $"{name} needs {Sizes.Describe(needed)} more on disk; {folder} has {Sizes.Describe(free)} free and must keep {Sizes.Describe(target.MinFreeSpace)} (EdgeServer:Pull:MinFreeSpace).",
                    StatusCodes.Status507InsufficientStorage, "insufficient_storage");
            }

            plan.Header = await RemoteHeader.ReadAsync(name, plan.Size, (n, ct) => PrefixAsync(url, n, ct), cancellationToken);
            plan.Fit = target.Fit(plan.Header);
            var verdict = plan.Fit.Describe(name);
            if (!plan.Fit.Fits && !force)
            {
                throw new PullException(verdict, StatusCodes.Status507InsufficientStorage, "model_too_large");
            }

            note(plan.Fit.Fits ? verdict : $"{verdict.Replace(" " + MemoryFit.ForceAdvice, string.Empty, StringComparison.Ordinal)} Downloading it anyway (--force).");
            return plan;
        }
        catch
        {
            plan.Dispose();
            throw;
        }
    }

    /// <summary>Downloads, checks and moves the file into the models folder; returns its path.</summary>
    public async Task<string> DownloadAsync(PullPlan plan, Action<PullEvent> progress, CancellationToken cancellationToken)
    {
        var file = plan.Partial;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        if (file.Length > plan.Size)
        {
            SetLength(file, 0, plan.Name);
        }

        if (file.Length > 0)
        {
            // Resuming: the bytes already there go into the checksum first.
            progress(new PullEvent("verifying") { File = plan.Name, Completed = file.Length, Total = plan.Size, Message = $"resuming at {Sizes.Describe(file.Length)}" });
            await HashAsync(file, hash, file.Length, cancellationToken);
        }

        var pipeline = new ResiliencePipelineBuilder { TimeProvider = clock }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<PullException>(e => e.Transient),
                MaxRetryAttempts = Math.Max(1, target.Retries),
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromSeconds(1),
                MaxDelay = TimeSpan.FromSeconds(30),
                UseJitter = true,
                OnRetry = args =>
                {
                    progress(new PullEvent("retrying")
                    {
                        File = plan.Name, Completed = file.Length, Total = plan.Size,
                        Message = $"{args.Outcome.Exception?.Message} Retrying in {args.RetryDelay.TotalSeconds:0.#} s (attempt {args.AttemptNumber + 2} of {target.Retries + 1}).",
                    });
                    return ValueTask.CompletedTask;
                },
            });
        var run = target.Retries > 0 ? pipeline.Build() : ResiliencePipeline.Empty;
        await run.ExecuteAsync(async ct => await AttemptAsync(plan, hash, progress, ct), cancellationToken);

        if (plan.Sha256 is { } expected)
        {
            var actual = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
            {
                plan.Discard();
                throw new PullException($"{plan.Name}: the download's SHA-256 is {actual}, the source says {expected}; the file was removed. Run the pull again.",
                    StatusCodes.Status502BadGateway, "checksum_mismatch");
            }
        }

        progress(new PullEvent("verifying") { File = plan.Name, Completed = plan.Size, Total = plan.Size, Message = plan.Sha256 is null ? "no checksum given; checking the GGUF file" : "SHA-256 matches; checking the GGUF file" });
        try
        {
            file.Flush(flushToDisk: true);
            file.Position = 0;
            // Buffered for the header's many small reads; not disposed, which would close the file (the lock).
            GgufModelCheck.Validate(GgufReader.Read(new BufferedStream(file, 1 << 16), plan.Name));
        }
        catch (GgufFormatException e)
        {
            plan.Discard();
            throw new PullException($"{e.Message} The file was removed.", StatusCodes.Status422UnprocessableEntity, "invalid_model_file", inner: e);
        }

        try
        {
            File.Move(file.Name, plan.FinalPath, overwrite: false);
        }
        catch (IOException) when (File.Exists(plan.FinalPath))
        {
            throw Exists(plan.Name, Path.GetDirectoryName(plan.FinalPath)!);
        }

        plan.Dispose();
        return plan.FinalPath;
    }

    /// <summary>One request for the rest of the file, appended to the partial file; a transient failure leaves what arrived.</summary>
    private async Task AttemptAsync(PullPlan plan, IncrementalHash hash, Action<PullEvent> progress, CancellationToken cancellationToken)
    {
        var file = plan.Partial;
        var offset = file.Length;
        if (offset >= plan.Size)
        {
            return;
        }

        using var answer = await http.SendAsync(HttpMethod.Get, plan.Url, r =>
        {
            if (offset > 0)
            {
                r.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(offset, null);
            }
        }, cancellationToken);
        var response = answer.Response;
        if (response.StatusCode == System.Net.HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            SetLength(file, 0, plan.Name);
            hash.GetHashAndReset();
            throw PullException.Upstream($"{PullHttp.Describe(answer.Url)} refused to resume at byte {offset}; starting over.", transient: true);
        }

        if (!response.IsSuccessStatusCode)
        {
            throw http.Failure(response, answer.Url, plan.Name);
        }

        if (response.StatusCode == System.Net.HttpStatusCode.PartialContent)
        {
            if (response.Content.Headers.ContentRange is not { From: { } from } || from != offset)
            {
                throw PullException.Upstream($"{PullHttp.Describe(answer.Url)} answered a request for the bytes from {offset} with other bytes ({response.Content.Headers.ContentRange}).");
            }
        }
        else if (offset > 0)
        {
            // The server ignored the Range header: the whole file comes again.
            SetLength(file, 0, plan.Name);
            hash.GetHashAndReset();
            offset = 0;
        }

        file.Position = offset;
        var started = clock.GetTimestamp();
        var lastReport = started;
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var written = offset;
            while (true)
            {
                int read;
                stall.CancelAfter(target.StallTimeout);
                try
                {
                    read = await body.ReadAsync(buffer.AsMemory(0, BufferSize), stall.Token);
                }
                catch (Exception e) when (e is IOException or HttpRequestException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    throw PullException.Upstream($"The connection was lost at {Sizes.Describe(written)} of {Sizes.Describe(plan.Size)}{(e is OperationCanceledException ? $" (nothing arrived for {target.StallTimeout.TotalSeconds:0} s)" : string.Empty)}.", transient: true, e);
                }

                if (read == 0)
                {
                    break;
                }

                if (written + read > plan.Size)
                {
                    plan.Discard();
                    throw PullException.Upstream($"{PullHttp.Describe(answer.Url)} sent more than the {plan.Size} bytes it announced for {plan.Name}; the file was removed.");
                }

                await WriteAsync(file, buffer.AsMemory(0, read), plan.Name, cancellationToken);
                hash.AppendData(buffer, 0, read);
                written += read;
                var now = clock.GetTimestamp();
                if (clock.GetElapsedTime(lastReport, now) >= ProgressInterval || written == plan.Size)
                {
                    lastReport = now;
                    progress(Progress(plan, written, offset, clock.GetElapsedTime(started, now)));
                }
            }

            if (written < plan.Size)
            {
                throw PullException.Upstream($"The download ended at {Sizes.Describe(written)} of {Sizes.Describe(plan.Size)}.", transient: true);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static PullEvent Progress(PullPlan plan, long written, long offset, TimeSpan elapsed)
    {
        var speed = elapsed > TimeSpan.Zero ? (written - offset) / elapsed.TotalSeconds : 0;
        return new PullEvent("downloading")
        {
            File = plan.Name, Completed = written, Total = plan.Size,
            BytesPerSecond = Math.Round(speed),
            EtaSeconds = speed > 0 ? Math.Round((plan.Size - written) / speed, 1) : null,
        };
    }

    /// <summary>The repository's files with sizes and LFS checksums, as llama.cpp's -hf lists them.</summary>
    private async Task<IReadOnlyList<HubFile>> ListAsync(string repository, CancellationToken cancellationToken)
    {
        var url = new Uri(http.Hub, $"api/models/{repository}/tree/main?recursive=true");
        using var answer = await http.SendAsync(HttpMethod.Get, url, null, cancellationToken);
        if (!answer.Response.IsSuccessStatusCode)
        {
            throw http.Failure(answer.Response, answer.Url, $"The repository {repository}");
        }

        var bytes = await ReadAtMostAsync(answer.Response, MaxListingBytes, cancellationToken);
        List<HubTreeEntry>? entries;
        try
        {
            entries = JsonSerializer.Deserialize(bytes, HubJsonContext.Default.ListHubTreeEntry);
        }
        catch (JsonException e)
        {
            throw PullException.Upstream($"The hub's file list of {repository} is not the JSON expected ({e.Message}).", inner: e);
        }

        return (entries ?? [])
            // Paths that climb out of the repository ("../x", "/etc/x") are dropped, as llama.cpp drops them.
            .Where(e => e is { Type: "file", Path.Length: > 0 and <= 1024 } && !e.Path.StartsWith('/') && !e.Path.Contains('\\')
                && e.Path.Split('/').All(p => p is not ("" or "." or "..")))
            .Select(e => new HubFile(e.Path!, e.Lfs?.Size ?? e.Size, Sha256Of(e.Lfs?.Oid)))
            .ToList();
    }

    /// <summary>The first <paramref name="count"/> bytes of the file (a range request; a server that ignores it is read that far only).</summary>
    private async Task<byte[]> PrefixAsync(Uri url, int count, CancellationToken cancellationToken)
    {
        using var answer = await http.SendAsync(HttpMethod.Get, url, r => r.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(0, count - 1), cancellationToken);
        if (!answer.Response.IsSuccessStatusCode)
        {
            throw http.Failure(answer.Response, answer.Url, "the model's header");
        }

        try
        {
            return await ReadAtMostAsync(answer.Response, count, cancellationToken, truncate: true);
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw PullException.Upstream($"The connection was lost while reading the model's header from {PullHttp.Describe(answer.Url)}.", inner: e);
        }
    }

    /// <summary>The body, up to <paramref name="limit"/> bytes: beyond it an error, or with <paramref name="truncate"/> the first bytes only.</summary>
    private static async Task<byte[]> ReadAtMostAsync(HttpResponseMessage response, int limit, CancellationToken cancellationToken, bool truncate = false)
    {
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while (buffer.Length < limit && (read = await body.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, limit - buffer.Length)), cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, read);
        }

        if (!truncate && buffer.Length >= limit && await body.ReadAsync(chunk.AsMemory(0, 1), cancellationToken) > 0)
        {
            throw PullException.Upstream($"{PullHttp.Describe(response.RequestMessage!.RequestUri!)} answered with more than {Sizes.Describe(limit)}; not read.");
        }

        return buffer.ToArray();
    }

    private static async Task HashAsync(FileStream file, IncrementalHash hash, long length, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            file.Position = 0;
            long done = 0;
            while (done < length)
            {
                var read = await file.ReadAsync(buffer.AsMemory(0, (int)Math.Min(BufferSize, length - done)), cancellationToken);
                if (read == 0)
                {
                    break;
                }

                hash.AppendData(buffer, 0, read);
                done += read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task WriteAsync(FileStream file, ReadOnlyMemory<byte> bytes, string name, CancellationToken cancellationToken)
    {
        try
        {
            await file.WriteAsync(bytes, cancellationToken);
        }
        catch (IOException e)
        {
            throw DiskFailure(e, file.Name, name);
        }
    }

    private static void SetLength(FileStream file, long length, string name)
    {
        try
        {
            file.SetLength(length);
        }
        catch (IOException e)
        {
            throw DiskFailure(e, file.Name, name);
        }
    }

    /// <summary>A write that failed: a full disk (ENOSPC) or quota (EDQUOT) says so; the partial file stays for a resume.</summary>
    internal static PullException DiskFailure(IOException e, string path, string name) => e.HResult is 28 or 122 || e.Message.Contains("space", StringComparison.OrdinalIgnoreCase)
        ? new PullException($"The disk is full: {name} could not be written to {path} ({e.Message}). Free some space and run the pull again to resume.", StatusCodes.Status507InsufficientStorage, "insufficient_storage", inner: e)
        : new PullException($"{name} could not be written to {path}: {e.Message}", StatusCodes.Status500InternalServerError, "write_failed", inner: e);

    private static PullException Exists(string name, string folder) =>
        new($"{name} is already in {folder}; remove it first to pull it again.", StatusCodes.Status409Conflict, "model_exists");

    /// <summary>The partial file, opened for this pull alone: a second pull of it, here or in another process, is refused.</summary>
    private static FileStream Lock(string path, string name)
    {
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new PullException($"{name} is being pulled already (its partial file {path} is in use); wait for that pull to finish.", StatusCodes.Status409Conflict, "pull_in_progress", inner: e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PullException($"{path} could not be created: {e.Message}", StatusCodes.Status500InternalServerError, "write_failed", inner: e);
        }
    }

    /// <summary>A SHA-256 in hex from an LFS oid or an ETag ("W/" and quotes dropped), or null when it is something else.</summary>
    internal static string? Sha256Of(string? value)
    {
        var text = value?.Trim();
        if (text is null)
        {
            return null;
        }

        if (text.StartsWith("W/", StringComparison.Ordinal))
        {
            text = text[2..];
        }

        text = text.Trim('"');
        return text.Length == 64 && text.All(char.IsAsciiHexDigit) ? text.ToLowerInvariant() : null;
    }
}

/// <summary>A pull checked and ready to download; holds the partial file open (the lock) until disposed.</summary>
public sealed class PullPlan(string name, string finalPath, Uri url, long size, string? sha256, FileStream partial) : IDisposable
{
    public string Name { get; } = name;

    /// <summary>The model's id once it is in the folder.</summary>
    public string ModelId => Path.GetFileNameWithoutExtension(Name);

    public string FinalPath { get; } = finalPath;

    public Uri Url { get; } = url;

    public long Size { get; } = size;

    public string? Sha256 { get; } = sha256;

    public FileStream Partial { get; } = partial;

    public GgufFile Header { get; internal set; } = null!;

    public MemoryFit Fit { get; internal set; } = null!;

    /// <summary>Removes the partial file: its bytes are wrong, and resuming from them could not help.</summary>
    public void Discard()
    {
        // Removed while still open and locked: closing first would let another pull lock the path in between and
        // then lose its file to this delete.
        File.Delete(Partial.Name);
        Partial.Dispose();
    }

    /// <summary>Releases the lock; an empty partial file (nothing downloaded) is removed, any other kept for a resume.</summary>
    public void Dispose()
    {
        // Removed while still locked, so no other pull's new partial file of the same name is removed instead.
        if (!Partial.SafeFileHandle.IsClosed && Partial.Length == 0)
        {
            File.Delete(Partial.Name);
        }

        Partial.Dispose();
    }
}
