using Airlock.Core.Runtime;
using Airlock.Core.Templates;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Sandboxes;

/// <summary>A sandbox made ahead of time, waiting in the pool; nobody sees it until it is claimed.</summary>
internal sealed record PooledSandbox(SandboxRecord Record, IRuntimeSandbox Sandbox, TemplateInfo Template);

/// <summary>What a sandbox is made of, as far as the warm pool is concerned: a pooled sandbox serves only a create of its shape.</summary>
internal readonly record struct SandboxShape(string Template, int Cpus, int MemoryMb, int DiskMb);

/// <summary>
/// Keeps <see cref="SandboxOptions.WarmPoolSize"/> sandboxes of the default shape (default template,
/// cpus, memory, disk) started, so a create of that shape costs a claim instead of a start.
/// Refilled one at a time in the background after each take, never on the request path.
/// Pooled sandboxes have store records in state <see cref="SandboxState.Pooled"/>: a crashed
/// server's recovery reaps them (they never outlive their server), and List/Get/quotas never see
/// them because they are not live. A graceful shutdown destroys them.
/// Hosted after the startup service, so it starts filling only once recovery has swept.
/// </summary>
internal sealed partial class WarmPool(
    ISandboxStore store,
    ISandboxRuntime runtime,
    TemplateService templates,
    IOptions<SandboxOptions> options,
    TimeProvider time,
    ILogger<WarmPool> logger) : IHostedService
{
    private readonly SandboxOptions _options = options.Value;
    private readonly List<PooledSandbox> _ready = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private Task _filler = Task.CompletedTask;
    private long _lastTake;

    public int Size => Math.Max(0, _options.WarmPoolSize);

    /// <summary>Sandboxes ready to be claimed now.</summary>
    public int Count
    {
        get
        {
            lock (_ready)
            {
                return _ready.Count;
            }
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (Size > 0)
        {
            _filler = Task.Run(() => FillAsync(_stop.Token), CancellationToken.None);
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _filler.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        List<PooledSandbox> left;
        lock (_ready)
        {
            left = [.. _ready];
            _ready.Clear();
        }

        foreach (var pooled in left)
        {
            await DiscardAsync(pooled).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A pooled sandbox of exactly this shape, or null (pool off, other shape, empty). The caller
    /// owns it from here: it must claim it (new record) or destroy it. Every take wakes the filler.
    /// </summary>
    public PooledSandbox? TryTake(TemplateInfo template, SandboxShape shape)
    {
        if (Size == 0 || shape != _options.DefaultShape)
        {
            return null;
        }

        PooledSandbox? taken = null;
        List<PooledSandbox> stale = [];
        lock (_ready)
        {
            while (_ready.Count > 0)
            {
                var candidate = _ready[0];
                _ready.RemoveAt(0);
                // A pooled init that died, or one made from a template that has since been rebuilt, is not handed out.
                if (candidate.Sandbox.Exited.IsCompleted || candidate.Template.RootfsPath != template.RootfsPath)
                {
                    stale.Add(candidate);
                    continue;
                }

                taken = candidate;
                break;
            }
        }

        foreach (var s in stale)
        {
            _ = DiscardAsync(s);
        }

        Interlocked.Exchange(ref _lastTake, time.GetTimestamp());
        _wake.Release();
        return taken;
    }

    /// <summary>Destroys a pooled sandbox that will not be used (stale, failed claim, shutdown).</summary>
    public async Task DiscardAsync(PooledSandbox pooled)
    {
        try
        {
            await pooled.Sandbox.DisposeAsync().ConfigureAwait(false);
            await runtime.DestroyAsync(pooled.Record.Id, CancellationToken.None).ConfigureAwait(false);
            await store.DeleteAsync(pooled.Record.Id, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // The record stays: the next start's recovery reaps it.
            LogDiscardFailed(pooled.Record.Id, ex);
        }
    }

    /// <summary>Waits until no take has happened for the refill delay (at most 1 s in all).</summary>
    private async Task QuietAfterTakesAsync(CancellationToken stop)
    {
        var delay = TimeSpan.FromMilliseconds(Math.Max(0, _options.WarmPoolRefillDelayMs));
        var started = time.GetTimestamp();
        while (delay > TimeSpan.Zero && time.GetElapsedTime(started) < TimeSpan.FromSeconds(1))
        {
            var quiet = time.GetElapsedTime(Interlocked.Read(ref _lastTake));
            if (quiet >= delay)
            {
                return;
            }

            await Task.Delay(delay - quiet, time, stop).ConfigureAwait(false);
        }
    }

    private async Task FillAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                while (Count < Size)
                {
                    stop.ThrowIfCancellationRequested();
                    TemplateInfo template;
                    try
                    {
                        template = templates.GetReady(_options.DefaultTemplate);
                    }
                    catch (AirlockException)
                    {
                        // Building (or failed): look again shortly, never trigger a build from here.
                        await Task.Delay(TimeSpan.FromSeconds(1), time, stop).ConfigureAwait(false);
                        continue;
                    }

                    var pooled = await MakeAsync(template, stop).ConfigureAwait(false);
                    lock (_ready)
                    {
                        _ready.Add(pooled);
                    }

                    // If its init dies while it waits (OOM killer, an admin), drop it and make another.
                    _ = pooled.Sandbox.Exited.ContinueWith(_ => OnPooledExited(pooled), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
                }

                await _wake.WaitAsync(stop).ConfigureAwait(false);
                await QuietAfterTakesAsync(stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                LogFillFailed(ex);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), time, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task<PooledSandbox> MakeAsync(TemplateInfo template, CancellationToken stop)
    {
        var now = time.GetUtcNow();
        var shape = _options.DefaultShape;
        var record = new SandboxRecord
        {
            Id = SandboxService.NewId(),
            Template = template.Spec.Name,
            State = SandboxState.Pooled,
            CreatedAt = now,
            ExpiresAt = now,
            Cpus = shape.Cpus,
            MemoryMb = shape.MemoryMb,
            DiskMb = shape.DiskMb,
            AccessToken = SandboxService.NewToken(),
        };

        // As any create: a crash before the insert leaves nothing recovery's sweep misses, one after
        // it a Pooled record that recovery reaps.
        var sandbox = await SandboxService.StartRecordedAsync(runtime, store, record, template, stop).ConfigureAwait(false);
        return new PooledSandbox(record, sandbox, template);
    }

    private void OnPooledExited(PooledSandbox pooled)
    {
        bool removed;
        lock (_ready)
        {
            removed = _ready.Remove(pooled);
        }

        // Not in the pool any more: claimed (its owner watches it now) or already discarded.
        if (removed)
        {
            _ = DiscardAsync(pooled);
            _wake.Release();
        }
    }

    [LoggerMessage(EventId = 110, Level = LogLevel.Warning, Message = "warm pool: could not start a sandbox; retrying")]
    private partial void LogFillFailed(Exception ex);

    [LoggerMessage(EventId = 111, Level = LogLevel.Warning, Message = "warm pool: could not destroy pooled sandbox {Id}; recovery will")]
    private partial void LogDiscardFailed(string id, Exception ex);
}
