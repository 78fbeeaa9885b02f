using System.Collections.Concurrent;
using System.Security.Cryptography;
using Airlock.Core.Runtime;
using Airlock.Core.Templates;
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
    TemplateService templates,
    IOptions<SandboxOptions> options,
    TimeProvider time,
    ILogger<SandboxService> logger)
{
    private readonly ConcurrentDictionary<string, LiveSandbox> _live = new(StringComparer.Ordinal);
    private readonly SandboxOptions _options = options.Value;

    public async Task<LiveSandbox> CreateAsync(CreateSandboxRequest request, CancellationToken cancellationToken = default)
    {
        var template = templates.GetReady(request.Template ?? _options.DefaultTemplate);
        var timeout = request.TimeoutSeconds ?? _options.DefaultTimeoutSeconds;
        Require(timeout is >= 1 && timeout <= _options.MaxTimeoutSeconds, $"timeoutSeconds must be between 1 and {_options.MaxTimeoutSeconds}");
        var cpus = request.Cpus ?? _options.DefaultCpus;
        Require(cpus >= 1 && cpus <= _options.MaxCpus, $"cpus must be between 1 and {_options.MaxCpus}");
        var memory = request.MemoryMb ?? _options.DefaultMemoryMb;
        Require(memory >= 64 && memory <= _options.MaxMemoryMb, $"memoryMb must be between 64 and {_options.MaxMemoryMb}");
        var disk = request.DiskMb ?? _options.DefaultDiskMb;
        Require(disk >= 16 && disk <= _options.MaxDiskMb, $"diskMb must be between 16 and {_options.MaxDiskMb}");
        foreach (var key in request.Env?.Keys ?? Enumerable.Empty<string>())
        {
            Require(key.Length > 0 && !key.Contains('=') && !key.Contains('\0'), $"env name '{key}' is invalid");
        }

        var now = time.GetUtcNow();
        var record = new SandboxRecord
        {
            Id = NewId(),
            Template = template.Spec.Name,
            State = SandboxState.Starting,
            CreatedAt = now,
            ExpiresAt = now.AddSeconds(timeout),
            Metadata = request.Metadata ?? [],
            Env = request.Env ?? [],
            Cpus = cpus,
            MemoryMb = memory,
            DiskMb = disk,
            AccessToken = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24)),
        };

        // The record goes first: if this process dies mid-create, recovery finds it and reaps what was made.
        await store.InsertAsync(record, cancellationToken).ConfigureAwait(false);
        IRuntimeSandbox sandbox;
        try
        {
            sandbox = await runtime.CreateAsync(record, template, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await runtime.DestroyAsync(record.Id, CancellationToken.None).ConfigureAwait(false);
            await store.DeleteAsync(record.Id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        record.State = SandboxState.Running;
        await store.UpdateAsync(record, cancellationToken).ConfigureAwait(false);
        var live = Register(record, sandbox, template.Spec);
        LogCreated(record.Id, record.Template);
        return live;
    }

    public LiveSandbox Get(string id) =>
        _live.TryGetValue(id, out var live) && live.Record.State == SandboxState.Running ? live : throw AirlockException.NotFound($"sandbox '{id}'");

    public IReadOnlyList<LiveSandbox> List(IReadOnlyDictionary<string, string>? metadataFilter = null) =>
        _live.Values
            .Where(s => s.Record.State == SandboxState.Running)
            .Where(s => metadataFilter is null || metadataFilter.All(f => s.Record.Metadata.TryGetValue(f.Key, out var v) && v == f.Value))
            .OrderBy(s => s.Record.CreatedAt)
            .ToList();

    /// <summary>Sets the TTL to <paramref name="timeoutSeconds"/> from now.</summary>
    public async Task SetTimeoutAsync(string id, int timeoutSeconds, CancellationToken cancellationToken = default)
    {
        Require(timeoutSeconds is >= 1 && timeoutSeconds <= _options.MaxTimeoutSeconds, $"timeoutSeconds must be between 1 and {_options.MaxTimeoutSeconds}");
        var live = Get(id);
        live.Record.ExpiresAt = time.GetUtcNow().AddSeconds(timeoutSeconds);
        await store.UpdateAsync(live.Record, cancellationToken).ConfigureAwait(false);
        ScheduleExpiry(live);
    }

    /// <summary>The sandbox's resource use now (every API's metrics come from here).</summary>
    public SandboxUsage GetUsage(string id) => runtime.GetUsage(Get(id).Record);

    public async Task KillAsync(string id, CancellationToken cancellationToken = default)
    {
        var live = Get(id);
        await StopAsync(live, "killed").ConfigureAwait(false);
    }

    /// <summary>
    /// After a restart: re-adopt every sandbox whose init still runs, reap the rest, and sweep
    /// host resources that no record owns.
    /// </summary>
    public async Task RecoverAsync(CancellationToken cancellationToken = default)
    {
        var adopted = 0;
        var reaped = 0;
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
                Register(record, sandbox, spec);
                adopted++;
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

        await runtime.SweepAsync(_live.Keys.ToHashSet(StringComparer.Ordinal), cancellationToken).ConfigureAwait(false);
        LogRecovered(adopted, reaped);
    }

    private LiveSandbox Register(SandboxRecord record, IRuntimeSandbox sandbox, TemplateSpec spec)
    {
        var live = new LiveSandbox(record, sandbox, spec, _options.FinishedProcessesKept);
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
            await runtime.DestroyAsync(live.Record.Id).ConfigureAwait(false);
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
    private static string NewId() => RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyz0123456789", 20);

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
