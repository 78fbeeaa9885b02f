using System.Threading.Channels;
using Airlock.Core.Store;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Airlock.Core.Tenancy;

/// <summary>
/// The append-only audit log. <see cref="Record"/> only enqueues (no database round trip on the
/// exec path); a background writer appends batches in one transaction each, and the queue is
/// drained on shutdown and before every audit query, so a query sees what this process recorded.
/// </summary>
internal sealed partial class AuditLog(SqlTenancyStore store, TimeProvider time, ILogger<AuditLog> logger) : BackgroundService
{
    private const int MaxBatch = 500;
    private const int MaxDetail = 2000;
    private readonly Channel<AuditEvent> _queue = Channel.CreateUnbounded<AuditEvent>(new UnboundedChannelOptions { SingleReader = false });
    private readonly SemaphoreSlim _writeLock = new(1, 1);

    /// <summary>Records an action by the current caller (<see cref="Caller.Current"/>; none means the server itself).</summary>
    public void Record(string teamId, string action, string? target, string? detail = null)
    {
        var caller = Caller.Current;
        var (type, id, label) = caller?.Kind switch
        {
            CallerKind.ApiKey => ("key", caller.ActorId, caller.ActorLabel),
            CallerKind.User => ("user", caller.ActorId, caller.ActorLabel),
            CallerKind.SandboxToken => ("sandbox", caller.ActorId, caller.ActorLabel),
            _ => ("system", caller?.ActorId ?? "airlock", caller?.ActorLabel),
        };
        _queue.Writer.TryWrite(new AuditEvent
        {
            TeamId = teamId,
            At = time.GetUtcNow().ToUnixTimeMilliseconds(),
            ActorType = type,
            ActorId = id,
            ActorLabel = label,
            Action = action,
            Target = target,
            Detail = detail is { Length: > MaxDetail } ? detail[..MaxDetail] + "…" : detail,
            RemoteAddress = caller?.RemoteAddress,
        });
    }

    /// <summary>Writes everything recorded before this call.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (await DrainOnceAsync(cancellationToken).ConfigureAwait(false))
            {
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async Task<IReadOnlyList<AuditEvent>> QueryAsync(AuditQuery query, CancellationToken cancellationToken = default)
    {
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return await store.QueryAuditAsync(query, cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await FlushAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogWriteFailed(ex);
                    await Task.Delay(TimeSpan.FromSeconds(1), time, stoppingToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogWriteFailed(ex);
        }
    }

    /// <summary>One batch; false when the queue was empty. A failed batch is put back (at the end) and rethrown.</summary>
    private async Task<bool> DrainOnceAsync(CancellationToken cancellationToken)
    {
        var batch = new List<AuditEvent>();
        while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var e))
        {
            batch.Add(e);
        }

        if (batch.Count == 0)
        {
            return false;
        }

        try
        {
            await store.AppendAuditAsync(batch, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            foreach (var e in batch)
            {
                _queue.Writer.TryWrite(e);
            }

            throw;
        }

        return true;
    }

    [LoggerMessage(EventId = 400, Level = LogLevel.Error, Message = "audit events could not be written; retrying")]
    private partial void LogWriteFailed(Exception ex);
}
