using Airlock.Core.Runtime;

namespace Airlock.Core.Processes;

/// <summary>
/// A process started in a sandbox, independent of any client: it keeps its output (a bounded
/// window of the most recent bytes) and its exit, so any number of readers can attach, detach and
/// re-attach, each at its own pace. Readers never block the producer: a reader that falls behind
/// the window skips what was dropped.
/// </summary>
internal sealed class SandboxProcess : IProcessSink
{
    private readonly object _lock = new();
    private readonly List<(long Seq, ProcessEvent.Data Data)> _chunks = [];
    private readonly long _maxRetainedBytes;
    private long _nextSeq;
    private long _retainedBytes;
    private ProcessEvent.End? _end;
    private TaskCompletionSource _changed = NewSignal();
    private readonly TaskCompletionSource _completion = NewSignal();
    private string? _killReason;
    private ITimer? _timeoutTimer;

    public SandboxProcess(ProcessStartOptions options, DateTimeOffset startedAt, long maxRetainedBytes)
    {
        Options = options;
        StartedAt = startedAt;
        _maxRetainedBytes = maxRetainedBytes;
    }

    public ProcessStartOptions Options { get; }

    public DateTimeOffset StartedAt { get; }

    public int Pid => Handle?.Pid ?? 0;

    public string? Tag => Options.Tag;

    public IProcessHandle? Handle { get; private set; }

    /// <summary>Completes when the process has ended and all its output is in.</summary>
    public Task Completion => _completion.Task;

    public bool HasExited
    {
        get
        {
            lock (_lock)
            {
                return _end is not null;
            }
        }
    }

    public ProcessEvent.End? End
    {
        get
        {
            lock (_lock)
            {
                return _end;
            }
        }
    }

    internal void Attach(IProcessHandle handle, TimeProvider time)
    {
        Handle = handle;
        if (Options.Timeout > TimeSpan.Zero)
        {
            _timeoutTimer = time.CreateTimer(_ => _ = KillAsync("deadline exceeded"), null, Options.Timeout, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Kills the process and its process group; the reason becomes the end event's error.</summary>
    public async ValueTask KillAsync(string? reason = null, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_end is not null)
            {
                return;
            }

            _killReason ??= reason;
        }

        if (Handle is { } handle)
        {
            await handle.SignalAsync(9, cancellationToken).ConfigureAwait(false);
        }
    }

    void IProcessSink.OnOutput(OutputKind kind, ReadOnlySpan<byte> data)
    {
        var chunk = new ProcessEvent.Data(kind, data.ToArray());
        TaskCompletionSource signal;
        lock (_lock)
        {
            _chunks.Add((_nextSeq++, chunk));
            _retainedBytes += data.Length;
            // Keep at least the newest chunk even when it alone exceeds the window.
            var drop = 0;
            while (_retainedBytes > _maxRetainedBytes && drop < _chunks.Count - 1)
            {
                _retainedBytes -= _chunks[drop].Data.Bytes.Length;
                drop++;
            }

            if (drop > 0)
            {
                _chunks.RemoveRange(0, drop);
            }

            signal = _changed;
            _changed = NewSignal();
        }

        signal.TrySetResult();
    }

    void IProcessSink.OnExit(ExitStatus status)
    {
        TaskCompletionSource signal;
        lock (_lock)
        {
            _end = new ProcessEvent.End(status, _killReason ?? (status.Exited && status.ExitCode == 0 ? null : status.Describe()));
            signal = _changed;
            _changed = NewSignal();
        }

        _timeoutTimer?.Dispose();
        signal.TrySetResult();
        _completion.TrySetResult();
    }

    /// <summary>
    /// Start, then the output (from the beginning of the retained window when <paramref name="replay"/>,
    /// else from now), then End. Ends early without End when the caller cancels.
    /// </summary>
    public async IAsyncEnumerable<ProcessEvent> ReadEventsAsync(bool replay, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // "From now" is the moment of attaching, fixed before Start goes out: once a reader has
        // seen Start, output caused by what it does next is never skipped.
        long cursor;
        lock (_lock)
        {
            cursor = replay ? 0 : _nextSeq;
        }

        yield return new ProcessEvent.Start(Pid);

        var batch = new List<ProcessEvent.Data>();
        while (true)
        {
            Task changed;
            ProcessEvent.End? end;
            batch.Clear();
            lock (_lock)
            {
                foreach (var (seq, data) in _chunks)
                {
                    if (seq >= cursor)
                    {
                        batch.Add(data);
                    }
                }

                cursor = _nextSeq;
                end = _end;
                changed = _changed.Task;
            }

            foreach (var data in batch)
            {
                yield return data;
            }

            if (end is not null)
            {
                yield return end;
                yield break;
            }

            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
