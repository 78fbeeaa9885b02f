using System.Globalization;
using Airlock.Core.Sandboxes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Tenancy;

/// <summary>
/// Every <see cref="QuotaOptions.EnforceIntervalSeconds"/>: flushes metered usage and keys'
/// last-used times, then stops the running sandboxes of teams over their monthly hours (logged
/// and audited with the reason). Flushes once more on shutdown.
/// </summary>
internal sealed partial class QuotaEnforcer(
    QuotaLedger ledger,
    TenancyService tenancy,
    SandboxService sandboxes,
    AuditLog audit,
    IOptions<QuotaOptions> options,
    TimeProvider time,
    ILogger<QuotaEnforcer> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(Math.Max(1, options.Value.EnforceIntervalSeconds)), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await RunOnceAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogFailed(ex);
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
            await ledger.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            await tenancy.FlushLastUsedAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogFailed(ex);
        }
    }

    internal async Task RunOnceAsync(CancellationToken cancellationToken)
    {
        await ledger.FlushAsync(cancellationToken).ConfigureAwait(false);
        await tenancy.FlushLastUsedAsync(cancellationToken).ConfigureAwait(false);
        foreach (var (teamId, hours) in await ledger.TeamsOverHoursAsync(cancellationToken).ConfigureAwait(false))
        {
            var reason = $"quota: the team used its {hours.ToString(CultureInfo.InvariantCulture)} sandbox-hours for this month";
            foreach (var id in ledger.RunningOf(teamId))
            {
                LogStopping(id, teamId, reason);
                audit.Record(teamId, "sandbox.stop", id, reason);
                await sandboxes.StopUnscopedAsync(id, reason).ConfigureAwait(false);
            }
        }
    }

    [LoggerMessage(EventId = 430, Level = LogLevel.Warning, Message = "stopping sandbox {Id} of team {TeamId}: {Reason}")]
    private partial void LogStopping(string id, string teamId, string reason);

    [LoggerMessage(EventId = 431, Level = LogLevel.Error, Message = "quota enforcement failed; retrying next interval")]
    private partial void LogFailed(Exception ex);
}
