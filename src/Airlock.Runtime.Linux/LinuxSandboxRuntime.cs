using System.Diagnostics;
using System.Globalization;
using Airlock.Core;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Airlock.Core.Templates;
using Airlock.Runtime.Linux.Cgroups;
using Airlock.Runtime.Linux.Files;
using Airlock.Runtime.Linux.Init;
using Airlock.Runtime.Linux.Reactor;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux;

/// <summary>
/// Sandboxes as namespaces + overlay + cgroups, made by the native helper (docs/init-protocol.md).
/// Host-side state per sandbox: a state dir (<c>sandboxes/&lt;id&gt;</c>: the control socket and
/// two empty mount points) and its cgroups. Every mount lives in the sandbox's own mount
/// namespace, so the host mount table never holds one.
/// </summary>
internal sealed partial class LinuxSandboxRuntime : ISandboxRuntime, IDisposable
{
    private readonly RuntimeOptions _options;
    private readonly SandboxOptions _sandboxOptions;
    private readonly ILogger<LinuxSandboxRuntime> _logger;
    private readonly OutputReactor _reactor;
    private readonly InitZygote _zygote;

    public LinuxSandboxRuntime(IOptions<RuntimeOptions> options, IOptions<SandboxOptions> sandboxOptions, ILogger<LinuxSandboxRuntime> logger)
    {
        _options = options.Value;
        _sandboxOptions = sandboxOptions.Value;
        _logger = logger;
        _reactor = new OutputReactor(logger);
        Cgroups = new CgroupManager(_options.ResolvedCgroupName);
        _zygote = new InitZygote(_options.ResolvedInitPath);
        if (_options.FavorDynMods && FavorDynMods.Ensure() is { } why)
        {
            LogNoFavorDynMods(why);
        }
        Directory.CreateDirectory(_options.SandboxesDir);
        if (!File.Exists(_options.ResolvedInitPath))
        {
            throw new InvalidOperationException($"the native helper is missing at {_options.ResolvedInitPath} (Airlock:InitPath); build with `dotnet build`");
        }

        // sun_path holds 108 bytes: <sandboxes>/<20-char id>/ctl must fit.
        if (Path.Combine(_options.SandboxesDir, new string('x', 20), "ctl").Length >= 108)
        {
            throw new InvalidOperationException($"data directory path is too long for unix sockets: {_options.SandboxesDir} (AIRLOCK_DATA)");
        }
    }

    public CgroupManager Cgroups { get; }

    private string StateDir(string id) => Path.Combine(_options.SandboxesDir, id);

    public async Task<IRuntimeSandbox> CreateAsync(SandboxRecord record, TemplateInfo template, CancellationToken cancellationToken = default)
    {
        var t0 = Stopwatch.GetTimestamp();
        var dir = StateDir(record.Id);
        // The helper makes the state dir (0700) with its mount points and the cgroups with these
        // limits, in C, before it joins them (docs/init-protocol.md, step 1): the same syscalls
        // cost three times as much through .NET's file APIs on the cold path.
        List<string> args = ["--id", record.Id, "--lower", template.RootfsPath, "--state", dir, "--disk-bytes", (((long)record.DiskMb) << 20).ToString(CultureInfo.InvariantCulture)];
        foreach (var cgroup in Cgroups.Directories(record.Id))
        {
            args.Add("--cgroup");
            args.Add(cgroup);
        }

        foreach (var limit in Cgroups.Limits(record.Id, record.Cpus, (long)record.MemoryMb << 20, _sandboxOptions.PidsLimit))
        {
            args.Add("--cgroup-set");
            args.Add(limit);
        }

        // The zygote forks the helper's process A for us (docs/init-protocol.md, section 1a).
        string output;
        try
        {
            output = (await _zygote.StartAsync(args, cancellationToken).ConfigureAwait(false)).Trim();
        }
        catch (IOException ex)
        {
            throw new AirlockException("sandbox_start_failed", 500, $"sandbox could not start: {ex.Message}");
        }

        // "ok <pid> <start time>": the helper has also written both to <state>/init.pid.
        var parts = output.Split(' ');
        if (parts is not ["ok", var pidText, var startText] || !int.TryParse(pidText, CultureInfo.InvariantCulture, out var pid)
            || !long.TryParse(startText, CultureInfo.InvariantCulture, out var startTime))
        {
            var detail = output.Length > 0 ? output : "the native helper said nothing";
            throw new AirlockException("sandbox_start_failed", 500, $"sandbox could not start: {detail}");
        }

        var tHelper = Stopwatch.GetTimestamp();
        record.InitPid = pid;
        record.InitStartTime = startTime;
        var connected = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            LogCreateTimes(record.Id, Stopwatch.GetElapsedTime(t0, tHelper).TotalMilliseconds, Stopwatch.GetElapsedTime(tHelper).TotalMilliseconds);
        }

        return connected;
    }

    public async Task<IRuntimeSandbox?> AdoptAsync(SandboxRecord record, CancellationToken cancellationToken = default)
    {
        if (record.InitPid <= 0 || ReadStartTime(record.InitPid) != record.InitStartTime)
        {
            return null;
        }

        LinuxRuntimeSandbox? sandbox = null;
        try
        {
            sandbox = await ConnectAsync(record, cancellationToken).ConfigureAwait(false);
            await sandbox.Client.PingAsync(cancellationToken).ConfigureAwait(false);
            return sandbox;
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or TimeoutException)
        {
            // Not adopted: stop reading its socket and close the root fd, which would otherwise
            // keep the dead sandbox's overlay and tmpfs alive after recovery destroys it.
            if (sandbox is not null)
            {
                await sandbox.DisposeAsync().ConfigureAwait(false);
            }

            return null;
        }
    }

    private async Task<LinuxRuntimeSandbox> ConnectAsync(SandboxRecord record, CancellationToken cancellationToken)
    {
        LinuxRuntimeSandbox? sandbox = null;
        cancellationToken.ThrowIfCancellationRequested();
        var client = InitClient.Connect(Path.Combine(StateDir(record.Id), "ctl"), _reactor, (pid, status) => sandbox?.OnExit(pid, status));
        // /proc/<init>/root is the sandbox's root directory in its own mount namespace; every file
        // operation resolves beneath this fd (LinuxSandboxFileSystem).
        var rootFd = openat(AT_FDCWD, $"/proc/{record.InitPid}/root", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (rootFd < 0)
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw new IOException($"cannot open the sandbox root: {StrError(Errno)}");
        }

        sandbox = new LinuxRuntimeSandbox(record.Id, client, new LinuxSandboxFileSystem(rootFd), _reactor);
        return sandbox;
    }

    public async Task DestroyAsync(string sandboxId, CancellationToken cancellationToken = default)
    {
        var dir = StateDir(sandboxId);
        var pidFile = Path.Combine(dir, "init.pid");
        if (File.Exists(pidFile))
        {
            var parts = (await File.ReadAllTextAsync(pidFile, cancellationToken).ConfigureAwait(false)).Split(' ');
            if (parts.Length == 2 && int.TryParse(parts[0], out var pid) && long.TryParse(parts[1], out var startTime) && ReadStartTime(pid) == startTime)
            {
                // Killing PID 1 of the namespace makes the kernel kill everything in it.
                kill(pid, 9);
                for (var i = 0; i < 400 && ReadStartTime(pid) == startTime; i++)
                {
                    await Task.Delay(i < 20 ? 1 : 10, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }

        await Cgroups.RemoveAsync(sandboxId).ConfigureAwait(false);
        if (Directory.Exists(dir))
        {
            DetachStrayMounts(dir);
            Directory.Delete(dir, recursive: true);
        }
    }

    public SandboxUsage GetUsage(SandboxRecord record)
    {
        var memoryLimit = (long)record.MemoryMb << 20;
        long diskUsed = 0;
        var diskTotal = (long)record.DiskMb << 20;
        try
        {
            // statfs through the init's root reaches the overlay, which reports its upper layer:
            // the tmpfs of diskMb, i.e. exactly the sandbox's disk quota.
            var drive = new DriveInfo($"/proc/{record.InitPid}/root");
            diskTotal = drive.TotalSize;
            diskUsed = drive.TotalSize - drive.TotalFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // The sandbox is going away: report the quota with nothing used.
        }

        return new SandboxUsage(Cgroups.MemoryUsage(record.Id) ?? 0, memoryLimit, diskUsed, diskTotal);
    }

    public async Task SweepAsync(IReadOnlySet<string> liveIds, CancellationToken cancellationToken = default)
    {
        var orphans = Directory.EnumerateDirectories(_options.SandboxesDir).Select(Path.GetFileName).OfType<string>()
            .Concat(Cgroups.ListIds())
            .Where(id => !liveIds.Contains(id))
            .Distinct()
            .ToList();
        foreach (var id in orphans)
        {
            LogSweep(id);
            await DestroyAsync(id, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The process start time (field 22 of /proc/pid/stat), or null when there is no such process.</summary>
    internal static long? ReadStartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) may contain spaces and parentheses: split after the last ')';
            // fields[0] is then the state (field 3), fields[19] the start time (field 22). A zombie counts as gone.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields[0] == "Z" ? null : long.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Mounts never reach the host by design; if one ever did, it must not be deleted through.</summary>
    private static void DetachStrayMounts(string dir)
    {
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var mountPoint = line.Split(' ')[4];
            if (mountPoint.StartsWith(dir + "/", StringComparison.Ordinal))
            {
                _ = Umount2(mountPoint);
            }
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "umount2", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int Umount2Native(string target, int flags);

    private static int Umount2(string target) => Umount2Native(target, 2 /* MNT_DETACH */);

    [LoggerMessage(EventId = 202, Level = LogLevel.Debug, Message = "create {Id}: helper (state dir, cgroups, namespaces, mounts) {Helper:F2} ms, connect {Connect:F2} ms")]
    private partial void LogCreateTimes(string id, double helper, double connect);

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "cgroup migrations stay slow (each sandbox create waits for an RCU grace period): {Reason}")]
    private partial void LogNoFavorDynMods(string reason);

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "sweeping resources of unknown sandbox {Id}")]
    private partial void LogSweep(string id);

    public void Dispose()
    {
        _zygote.Dispose();
        _reactor.Dispose();
    }
}
