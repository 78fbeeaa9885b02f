using System.Collections.Concurrent;
using System.Security.Cryptography;
using Airlock.Core.Runtime;
using Airlock.Core.Templates;
using Airlock.Core.Tenancy;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Sandboxes;

/// <summary>
/// Sandbox lifecycle: create, list, get, kill, TTL, and recovery after a restart. The one place
/// where these behaviours live; every API surface calls it.
/// </summary>
internal sealed partial class SandboxService(
    ISandboxStore store,
    ISandboxRuntime runtime,
    ISandboxNetwork network,
    TemplateService templates,
    WarmPool warmPool,
    QuotaLedger quotas,
    AuditLog audit,
    IOptions<SandboxOptions> options,
    TimeProvider time,
    ILogger<SandboxService> logger)
{
    private readonly ConcurrentDictionary<string, LiveSandbox> _live = new(StringComparer.Ordinal);
    private readonly SandboxOptions _options = options.Value;

    public async Task<LiveSandbox> CreateAsync(CreateSandboxRequest request, CancellationToken cancellationToken = default)
    {
        var defaults = _options.DefaultShape;
        var template = templates.GetReady(request.Template ?? defaults.Template);
        var timeout = request.TimeoutSeconds ?? _options.DefaultTimeoutSeconds;
        Require(timeout is >= 1 && timeout <= _options.MaxTimeoutSeconds, $"timeoutSeconds must be between 1 and {_options.MaxTimeoutSeconds}");
        var cpus = request.Cpus ?? defaults.Cpus;
        Require(cpus >= 1 && cpus <= _options.MaxCpus, $"cpus must be between 1 and {_options.MaxCpus}");
        var memory = request.MemoryMb ?? defaults.MemoryMb;
        Require(memory >= 64 && memory <= _options.MaxMemoryMb, $"memoryMb must be between 64 and {_options.MaxMemoryMb}");
        var disk = request.DiskMb ?? defaults.DiskMb;
        Require(disk >= 16 && disk <= _options.MaxDiskMb, $"diskMb must be between 16 and {_options.MaxDiskMb}");
        foreach (var key in request.Env?.Keys ?? Enumerable.Empty<string>())
        {
            Require(key.Length > 0 && !key.Contains('=') && !key.Contains('\0'), $"env name '{key}' is invalid");
        }

        // Tenancy: the sandbox is the caller's team's, within its quotas (held until it is tracked).
        var teamId = Caller.Current?.TeamId ?? throw new AirlockException("unauthorized", 401, "no team to create the sandbox for");
        using var reservation = await quotas.ReserveAsync(teamId, cpus, memory, timeout, cancellationToken).ConfigureAwait(false);

        var networkConfig = request.Network ?? NetworkConfig.Default;
        networkConfig.Validate();
        // The default shape comes from the warm pool when one is ready (docs/performance.md). Nothing
        // may throw between the take and the claim: a taken sandbox must be claimed or discarded.
        var pooled = warmPool.TryTake(template, new SandboxShape(template.Spec.Name, cpus, memory, disk));
        var now = time.GetUtcNow();
        var record = new SandboxRecord
        {
            Id = pooled?.Record.Id ?? NewId(),
            Template = template.Spec.Name,
            State = SandboxState.Running,
            CreatedAt = now,
            ExpiresAt = now.AddSeconds(timeout),
            Metadata = request.Metadata ?? [],
            Env = request.Env ?? [],
            Cpus = cpus,
            MemoryMb = memory,
            DiskMb = disk,
            AccessToken = NewToken(),
            TeamId = teamId,
            Network = networkConfig,
            TrafficAccessToken = networkConfig.AllowPublicTraffic ? null : NewToken(),
        };

        if (pooled is not null)
        {
            return await WithNetworkAsync(await ClaimAsync(record, pooled).ConfigureAwait(false)).ConfigureAwait(false);
        }

        var sandbox = await StartRecordedAsync(runtime, store, record, template, cancellationToken).ConfigureAwait(false);
        var live = Register(record, sandbox, template.Spec);
        Created(record);
        return await WithNetworkAsync(live).ConfigureAwait(false);
    }

    /// <summary>
    /// Starts a sandbox in the runtime, then writes its record (state, init pid) in one insert. A
    /// crash in between leaves a state dir and cgroups with no record, which recovery's sweep reaps
    /// (<see cref="ISandboxRuntime.SweepAsync"/>); a failure here undoes both. One store write on the
    /// cold path instead of an insert before and an update after (docs/performance.md).
    /// </summary>
    internal static async Task<IRuntimeSandbox> StartRecordedAsync(ISandboxRuntime runtime, ISandboxStore store, SandboxRecord record, TemplateInfo template, CancellationToken cancellationToken)
    {
        IRuntimeSandbox? sandbox = null;
        try
        {
            sandbox = await runtime.CreateAsync(record, template, cancellationToken).ConfigureAwait(false);
            await store.InsertAsync(record, cancellationToken).ConfigureAwait(false);
            return sandbox;
        }
        catch
        {
            if (sandbox is not null)
            {
                await sandbox.DisposeAsync().ConfigureAwait(false);
            }

            await runtime.DestroyAsync(record.Id, CancellationToken.None).ConfigureAwait(false);
            await store.DeleteAsync(record.Id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Brings a new sandbox's network up (docs/networking.md); a sandbox whose network fails is killed.</summary>
    private async Task<LiveSandbox> WithNetworkAsync(LiveSandbox live)
    {
        if (live.Record.Network.Mode == NetworkMode.None)
        {
            return live;
        }

        try
        {
            WriteResolvConf(live, await network.ApplyAsync(live.Record, live.Record.Network, CancellationToken.None).ConfigureAwait(false));
            return live;
        }
        catch
        {
            await StopAsync(live, "network setup failed").ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Changes a running sandbox's network mode and rules (every API's network update comes here).</summary>
    public async Task SetNetworkAsync(string id, NetworkConfig config, CancellationToken cancellationToken = default)
    {
        config.Validate();
        var live = Get(id);
        WriteResolvConf(live, await network.ApplyAsync(live.Record, config, cancellationToken).ConfigureAwait(false));
        live.Record.Network = config;
        if (config.AllowPublicTraffic)
        {
            live.Record.TrafficAccessToken = null;
        }
        else
        {
            live.Record.TrafficAccessToken ??= NewToken();
        }

        await store.UpdateAsync(live.Record, cancellationToken).ConfigureAwait(false);
        audit.Record(live.Record.TeamId, "sandbox.network", id, $"mode={config.Mode.ToString().ToLowerInvariant()}");
    }

    /// <summary>Points the sandbox's resolver at its DNS forwarder, through its own file system.</summary>
    private static void WriteResolvConf(LiveSandbox live, string? nameserver)
    {
        if (nameserver is null)
        {
            return;
        }

        using var stream = live.Runtime.FileSystem.OpenWrite("/etc/resolv.conf", new SandboxUser("root", 0, 0, "/root"));
        stream.Write(System.Text.Encoding.ASCII.GetBytes($"nameserver {nameserver}\n"));
    }

    /// <summary>Bytes the sandbox sent and received (egress and port exposure): the metering hook.</summary>
    public NetworkUsage GetNetworkUsage(string id) => network.GetUsage(Get(id).Record);

    /// <summary>
    /// Makes a pooled sandbox this request's: its record is rewritten as <paramref name="record"/>
    /// (team, metadata, env, and the TTL starting now) in state Running, in one statement, so a
    /// crash leaves either a pooled record (reaped by recovery) or a running one (adopted).
    /// </summary>
    private async Task<LiveSandbox> ClaimAsync(SandboxRecord record, PooledSandbox pooled)
    {
        record.State = SandboxState.Running;
        record.InitPid = pooled.Record.InitPid;
        record.InitStartTime = pooled.Record.InitStartTime;
        try
        {
            await store.UpdateAsync(record, CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            await warmPool.DiscardAsync(pooled).ConfigureAwait(false);
            throw;
        }

        var live = Register(record, pooled.Sandbox, pooled.Template.Spec);
        Created(record);
        return live;
    }

    /// <summary>A sandbox is the caller's now (cold start or claim): one log line, one audit entry.</summary>
    private void Created(SandboxRecord record)
    {
        LogCreated(record.Id, record.Template);
        audit.Record(record.TeamId, "sandbox.create", record.Id, $"template={record.Template} cpus={record.Cpus} memoryMb={record.MemoryMb} diskMb={record.DiskMb} expiresAt={record.ExpiresAt:O}");
    }

    /// <summary>
    /// A running sandbox the current caller may see (<see cref="Caller.Current"/>: its team's, or the
    /// one its sandbox token names). Any other id, another team's included, is "not found" (never
    /// 403); no caller sees nothing. Every surface reaches sandboxes through here.
    /// </summary>
    public LiveSandbox Get(string id) =>
        _live.TryGetValue(id, out var live) && live.Record.State == SandboxState.Running && Caller.Current?.CanAccess(id, live.Record.TeamId) == true
            ? live
            : throw AirlockException.NotFound($"sandbox '{id}'");

    /// <summary>The running sandboxes the current caller may see (see <see cref="Get"/>).</summary>
    public IReadOnlyList<LiveSandbox> List(IReadOnlyDictionary<string, string>? metadataFilter = null) =>
        _live.Values
            .Where(s => s.Record.State == SandboxState.Running)
            .Where(s => Caller.Current?.CanAccess(s.Record.Id, s.Record.TeamId) == true)
            .Where(s => metadataFilter is null || metadataFilter.All(f => s.Record.Metadata.TryGetValue(f.Key, out var v) && v == f.Value))
            .OrderBy(s => s.Record.CreatedAt)
            .ToList();

    /// <summary>Sets the TTL to <paramref name="timeoutSeconds"/> from now.</summary>
    public async Task SetTimeoutAsync(string id, int timeoutSeconds, CancellationToken cancellationToken = default)
    {
        Require(timeoutSeconds is >= 1 && timeoutSeconds <= _options.MaxTimeoutSeconds, $"timeoutSeconds must be between 1 and {_options.MaxTimeoutSeconds}");
        var live = Get(id);
        await quotas.CheckTimeoutAsync(live.Record.TeamId, timeoutSeconds, cancellationToken).ConfigureAwait(false);
        live.Record.ExpiresAt = time.GetUtcNow().AddSeconds(timeoutSeconds);
        await store.UpdateAsync(live.Record, cancellationToken).ConfigureAwait(false);
        ScheduleExpiry(live);
        audit.Record(live.Record.TeamId, "sandbox.timeout", id, $"timeoutSeconds={timeoutSeconds}");
    }

    /// <summary>The sandbox's resource use now (every API's metrics come from here).</summary>
    public SandboxUsage GetUsage(string id) => runtime.GetUsage(Get(id).Record);

    public async Task KillAsync(string id, CancellationToken cancellationToken = default)
    {
        var live = Get(id);
        audit.Record(live.Record.TeamId, "sandbox.kill", id);
        await StopAsync(live, "killed").ConfigureAwait(false);
    }

    /// <summary>
    /// Unscoped, for the server itself and the sandbox-token surfaces only (they find a sandbox by
    /// its token or signature, then check it): every running sandbox of every team.
    /// </summary>
    public IReadOnlyList<LiveSandbox> ListAllUnscoped() =>
        _live.Values.Where(s => s.Record.State == SandboxState.Running).ToList();

    /// <summary>Unscoped existence check for the server's own sweeps.</summary>
    public bool IsRunningUnscoped(string id) => _live.TryGetValue(id, out var live) && live.Record.State == SandboxState.Running;

    /// <summary>Unscoped stop for the server itself (quota enforcement), with the reason logged.</summary>
    public async Task StopUnscopedAsync(string id, string reason)
    {
        if (_live.TryGetValue(id, out var live))
        {
            await StopAsync(live, reason).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// After a restart: re-adopt every sandbox whose init still runs, reap the rest, and sweep
    /// host resources that no record owns.
    /// </summary>
    public async Task RecoverAsync(CancellationToken cancellationToken = default)
    {
        var adopted = 0;
        var reaped = 0;
        var withNetwork = new List<LiveSandbox>();
        foreach (var record in await store.ListAsync(cancellationToken).ConfigureAwait(false))
        {
            IRuntimeSandbox? sandbox = null;
            if (record.State == SandboxState.Running && record.ExpiresAt > time.GetUtcNow())
            {
                try
                {
                    sandbox = await runtime.AdoptAsync(record, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    LogAdoptFailed(record.Id, ex);
                }
            }

            var spec = templates.Specs.FirstOrDefault(t => t.Name == record.Template);
            if (sandbox is not null && spec is not null)
            {
                var live = Register(record, sandbox, spec);
                adopted++;
                if (record.Network.Mode != NetworkMode.None)
                {
                    withNetwork.Add(live);
                }
            }
            else
            {
                if (sandbox is not null)
                {
                    await sandbox.DisposeAsync().ConfigureAwait(false);
                }

                await runtime.DestroyAsync(record.Id, cancellationToken).ConfigureAwait(false);
                await store.DeleteAsync(record.Id, cancellationToken).ConfigureAwait(false);
                reaped++;
            }
        }

        // Rules survive in the kernel; the DNS forwarders and the server's own state do not. All
        // networks at once, after every sandbox is known: restoring them one by one would rewrite
        // the host's dispatch without the ones still to come, and those could reach the host.
        var restored = withNetwork.Count == 0
            ? new Dictionary<string, RestoredNetwork>()
            : await network.RestoreAsync(withNetwork.Select(l => l.Record).ToList(), cancellationToken).ConfigureAwait(false);
        foreach (var live in withNetwork)
        {
            try
            {
                var result = restored.GetValueOrDefault(live.Record.Id);
                WriteResolvConf(live, result.Nameserver ?? throw result.Error ?? new AirlockException("network_unavailable", 503, "the sandbox network was not restored"));
            }
            catch (Exception ex)
            {
                LogAdoptFailed(live.Record.Id, ex);
                await StopAsync(live, "network could not be restored").ConfigureAwait(false);
            }
        }

        await runtime.SweepAsync(_live.Keys.ToHashSet(StringComparer.Ordinal), cancellationToken).ConfigureAwait(false);
        await network.SweepAsync(_live.Keys.ToHashSet(StringComparer.Ordinal), cancellationToken).ConfigureAwait(false);
        LogRecovered(adopted, reaped);
    }

    private LiveSandbox Register(SandboxRecord record, IRuntimeSandbox sandbox, TemplateSpec spec)
    {
        var live = new LiveSandbox(record, sandbox, spec, _options.FinishedProcessesKept);
        quotas.Track(record);
        _live[record.Id] = live;
        ScheduleExpiry(live);
        // The init can die on its own (OOM killer, a host admin): clean up after it too.
        _ = sandbox.Exited.ContinueWith(_ => StopAsync(live, "init exited"), TaskScheduler.Default);
        return live;
    }

    private void ScheduleExpiry(LiveSandbox live)
    {
        var due = live.Record.ExpiresAt - time.GetUtcNow();
        if (due < TimeSpan.Zero)
        {
            due = TimeSpan.Zero;
        }

        lock (live)
        {
            live.ExpiryTimer?.Dispose();
            live.ExpiryTimer = time.CreateTimer(_ => _ = StopAsync(live, "timeout"), null, due, Timeout.InfiniteTimeSpan);
        }
    }

    private async Task StopAsync(LiveSandbox live, string reason)
    {
        lock (live)
        {
            if (live.Record.State != SandboxState.Running)
            {
                return;
            }

            live.Record.State = SandboxState.Stopping;
            live.ExpiryTimer?.Dispose();
        }

        try
        {
            await store.UpdateAsync(live.Record).ConfigureAwait(false);
            await live.Runtime.DisposeAsync().ConfigureAwait(false);
            try
            {
                await runtime.DestroyAsync(live.Record.Id).ConfigureAwait(false);
            }
            finally
            {
                // After the destroy (the sandbox must not outlive its rules), but even when it
                // failed: the DNS forwarder, netns fd, rules and veth are this server's to release.
                await network.RemoveAsync(live.Record.Id).ConfigureAwait(false);
            }

            await store.DeleteAsync(live.Record.Id).ConfigureAwait(false);
            LogStopped(live.Record.Id, reason);
        }
        catch (Exception ex)
        {
            // The record stays in Stopping: the next start finishes the job.
            LogStopFailed(live.Record.Id, ex);
        }
        finally
        {
            quotas.Untrack(live.Record);
            _live.TryRemove(new KeyValuePair<string, LiveSandbox>(live.Record.Id, live));
        }
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw AirlockException.Invalid(message);
        }
    }

    /// <summary>20 characters of [a-z0-9], like E2B's ids: safe in host names and paths.</summary>
    internal static string NewId() => RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyz0123456789", 20);

    /// <summary>A sandbox secret (access or traffic token): 24 random bytes as 48 lowercase hex digits.</summary>
    internal static string NewToken() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "sandbox {Id} created from {Template}")]
    private partial void LogCreated(string id, string template);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "sandbox {Id} stopped ({Reason})")]
    private partial void LogStopped(string id, string reason);

    [LoggerMessage(EventId = 102, Level = LogLevel.Error, Message = "sandbox {Id} could not be stopped; recovery will retry")]
    private partial void LogStopFailed(string id, Exception ex);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "sandbox {Id} could not be re-adopted")]
    private partial void LogAdoptFailed(string id, Exception ex);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information, Message = "recovery: {Adopted} sandboxes re-adopted, {Reaped} reaped")]
    private partial void LogRecovered(int adopted, int reaped);
}
