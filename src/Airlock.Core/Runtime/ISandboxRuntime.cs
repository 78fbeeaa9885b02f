using Airlock.Core.Files;
using Airlock.Core.Sandboxes;
using Airlock.Core.Templates;

namespace Airlock.Core.Runtime;

/// <summary>The node side: makes, re-adopts and destroys isolated sandboxes on this machine.</summary>
internal interface ISandboxRuntime
{
    /// <summary>Starts a sandbox for <paramref name="record"/>; sets its runtime fields (init pid, start time).</summary>
    Task<IRuntimeSandbox> CreateAsync(SandboxRecord record, TemplateInfo template, CancellationToken cancellationToken = default);

    /// <summary>Reconnects to a sandbox a previous server process started; null when it is gone.</summary>
    Task<IRuntimeSandbox?> AdoptAsync(SandboxRecord record, CancellationToken cancellationToken = default);

    /// <summary>Kills everything the sandbox runs and removes every host resource it owns. Idempotent.</summary>
    Task DestroyAsync(string sandboxId, CancellationToken cancellationToken = default);

    /// <summary>What the sandbox uses now: memory from its cgroup, disk of its writable layer.</summary>
    SandboxUsage GetUsage(SandboxRecord record);

    /// <summary>Removes host resources (cgroups, state dirs, stray inits) of sandboxes not in <paramref name="liveIds"/>.</summary>
    Task SweepAsync(IReadOnlySet<string> liveIds, CancellationToken cancellationToken = default);
}

/// <summary>A running sandbox as the node sees it.</summary>
internal interface IRuntimeSandbox : IAsyncDisposable
{
    string Id { get; }

    /// <summary>Completes when the sandbox's init has died (killed, crashed, OOM).</summary>
    Task Exited { get; }

    ISandboxFileSystem FileSystem { get; }

    /// <summary>Starts a process; output goes to <paramref name="sink"/> in order, then its exit.</summary>
    Task<IProcessHandle> SpawnAsync(SpawnRequest request, IProcessSink sink, CancellationToken cancellationToken = default);

    /// <summary>Pids (inside the sandbox) of processes started through <see cref="SpawnAsync"/> still alive.</summary>
    Task<IReadOnlyList<int>> ListAsync(CancellationToken cancellationToken = default);
}

/// <summary>One sample of a sandbox's resource use, in bytes. Unknown values are 0.</summary>
internal readonly record struct SandboxUsage(long MemoryUsed, long MemoryLimit, long DiskUsed, long DiskTotal);

internal sealed record SpawnRequest(
    IReadOnlyList<string> Argv,
    IReadOnlyList<string> Env,
    string Cwd,
    SandboxUser User,
    bool Stdin,
    PtySize? Pty,
    bool NoNewPrivileges);

internal readonly record struct PtySize(int Cols, int Rows);

internal enum OutputKind
{
    Stdout,
    Stderr,
    Pty,
}

/// <summary>Receives a process's output and exit, on one thread at a time, in order.</summary>
internal interface IProcessSink
{
    void OnOutput(OutputKind kind, ReadOnlySpan<byte> data);

    void OnExit(ExitStatus status);
}

/// <summary>How a process ended: an exit code, or the signal that killed it.</summary>
internal readonly record struct ExitStatus(int ExitCode, int Signal)
{
    public static ExitStatus FromWaitStatus(int status)
    {
        // WIFEXITED / WIFSIGNALED as in <sys/wait.h>.
        if ((status & 0x7f) == 0)
        {
            return new ExitStatus((status >> 8) & 0xff, 0);
        }

        return new ExitStatus(-1, status & 0x7f);
    }

    public bool Exited => Signal == 0;

    /// <summary>Go's ProcessState.String(), which the E2B wire carries as <c>status</c>.</summary>
    public string Describe() => Exited ? $"exit status {ExitCode}" : $"signal: {SignalName(Signal)}";

    private static string SignalName(int signal) => signal switch
    {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        6 => "aborted",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => $"signal {signal}",
    };
}

internal interface IProcessHandle
{
    int Pid { get; }

    ValueTask WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);

    void CloseStdin();

    ValueTask SignalAsync(int signal, CancellationToken cancellationToken = default);

    void Resize(PtySize size);
}
