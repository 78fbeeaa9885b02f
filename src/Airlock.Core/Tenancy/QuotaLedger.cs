using System.Globalization;
using Airlock.Core.Sandboxes;
using Airlock.Core.Store;
using Microsoft.Extensions.Logging;

namespace Airlock.Core.Tenancy;

/// <summary>
/// Quotas at create and while running, per team: the sandboxes it has running in this process
/// (plus creates in flight, so two creates at the limit cannot both pass), the size limits, and
/// metered sandbox-time per calendar month (UTC), which is flushed to the store by
/// <see cref="QuotaEnforcer"/> and re-read from it, so servers sharing PostgreSQL see each other's hours.
/// </summary>
internal sealed partial class QuotaLedger(TenancyService tenancy, SqlTenancyStore store, TimeProvider time, ILogger<QuotaLedger> logger)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TeamState> _teams = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string TeamId, long MeteredAt)> _running = new(StringComparer.Ordinal);

    /// <summary>
    /// Checks the size, timeout, hours and concurrency limits and holds a slot until the returned
    /// reservation is disposed (by then the sandbox is tracked, or its create failed).
    /// </summary>
    public async ValueTask<IDisposable> ReserveAsync(string teamId, int cpus, int memoryMb, int timeoutSeconds, CancellationToken cancellationToken = default)
    {
        var limits = await tenancy.GetLimitsAsync(teamId, cancellationToken).ConfigureAwait(false);
        Refuse(limits.MaxCpus, cpus, "quota_cpus", "maxCpus", "cpus");
        Refuse(limits.MaxMemoryMb, memoryMb, "quota_memory", "maxMemoryMb", "memoryMb");
        Refuse(limits.MaxTimeoutSeconds, timeoutSeconds, "quota_timeout", "maxTimeoutSeconds", "timeoutSeconds");
        if (limits.MonthlySandboxHours is { } hours)
        {
            var used = await UsedMsAsync(teamId, cancellationToken).ConfigureAwait(false);
            if (used >= hours * 3_600_000)
            {
                throw new AirlockException("quota_sandbox_hours", 403, $"the team used {used / 3_600_000.0:0.###} of its {hours.ToString(CultureInfo.InvariantCulture)} sandbox-hours this month")
                {
                    Limit = "monthlySandboxHours",
                    Value = hours,
                };
            }
        }

        lock (_lock)
        {
            var team = Team(teamId);
            if (limits.MaxConcurrentSandboxes is { } max && team.Active.Count + team.Pending >= max)
            {
                throw new AirlockException("quota_concurrent_sandboxes", 429, $"the team has {team.Active.Count + team.Pending} sandboxes running; its limit is {max}")
                {
                    Limit = "maxConcurrentSandboxes",
                    Value = max,
                };
            }

            team.Pending++;
        }

        return new Reservation(this, teamId);
    }

    public async ValueTask CheckTimeoutAsync(string teamId, int timeoutSeconds, CancellationToken cancellationToken = default)
    {
        var limits = await tenancy.GetLimitsAsync(teamId, cancellationToken).ConfigureAwait(false);
        Refuse(limits.MaxTimeoutSeconds, timeoutSeconds, "quota_timeout", "maxTimeoutSeconds", "timeoutSeconds");
    }

    /// <summary>A sandbox now runs for its team (created, claimed from the pool or re-adopted): counted and metered from now.</summary>
    public void Track(SandboxRecord record)
    {
        lock (_lock)
        {
            if (_running.TryAdd(record.Id, (record.TeamId, time.GetUtcNow().ToUnixTimeMilliseconds())))
            {
                Team(record.TeamId).Active.Add(record.Id);
            }
        }
    }

    /// <summary>The sandbox stopped: its last stretch is metered, its slot freed.</summary>
    public void Untrack(SandboxRecord record)
    {
        lock (_lock)
        {
            if (_running.Remove(record.Id, out var entry))
            {
                var team = Team(entry.TeamId);
                team.Active.Remove(record.Id);
                team.UnflushedMs += Math.Max(0, time.GetUtcNow().ToUnixTimeMilliseconds() - entry.MeteredAt);
            }
        }
    }

    /// <summary>Running sandboxes of a team in this process.</summary>
    public IReadOnlyList<string> RunningOf(string teamId)
    {
        lock (_lock)
        {
            return _teams.TryGetValue(teamId, out var team) ? team.Active.ToList() : [];
        }
    }

    /// <summary>This month's metered use of a team, in milliseconds (stored + not yet flushed).</summary>
    public async ValueTask<long> UsedMsAsync(string teamId, CancellationToken cancellationToken = default)
    {
        await EnsureLoadedAsync(teamId, cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            var team = Team(teamId);
            var running = 0L;
            var now = time.GetUtcNow().ToUnixTimeMilliseconds();
            foreach (var id in team.Active)
            {
                running += Math.Max(0, now - _running[id].MeteredAt);
            }

            return team.StoredMs + team.InFlightMs + team.UnflushedMs + running;
        }
    }

    public static string MonthOf(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM", CultureInfo.InvariantCulture);

    /// <summary>
    /// Meters every running sandbox up to now, adds the deltas to the store and re-reads the
    /// totals of the teams involved (which then include other servers' use).
    /// </summary>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        var month = MonthOf(time.GetUtcNow());
        var deltas = new List<(string TeamId, string Month, long Ms)>();
        lock (_lock)
        {
            var now = time.GetUtcNow().ToUnixTimeMilliseconds();
            foreach (var (id, entry) in _running.ToList())
            {
                Team(entry.TeamId).UnflushedMs += Math.Max(0, now - entry.MeteredAt);
                _running[id] = (entry.TeamId, now);
            }

            foreach (var (teamId, team) in _teams)
            {
                RollOver(team, month);
                if (team.UnflushedMs > 0)
                {
                    deltas.Add((teamId, month, team.UnflushedMs));
                    team.InFlightMs += team.UnflushedMs;
                    team.UnflushedMs = 0;
                }
            }
        }

        if (deltas.Count == 0)
        {
            return;
        }

        try
        {
            await store.AddUsageAsync(deltas, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (_lock)
            {
                foreach (var (teamId, _, ms) in deltas)
                {
                    Team(teamId).InFlightMs -= ms;
                    Team(teamId).UnflushedMs += ms;
                }
            }

            throw;
        }

        foreach (var (teamId, _, ms) in deltas)
        {
            var stored = await store.GetUsageAsync(teamId, month, cancellationToken).ConfigureAwait(false);
            lock (_lock)
            {
                var team = Team(teamId);
                team.InFlightMs -= ms;
                if (team.Month == month)
                {
                    team.StoredMs = stored;
                }
            }
        }
    }

    /// <summary>Teams with running sandboxes that used up their monthly hours.</summary>
    public async Task<IReadOnlyList<(string TeamId, double Hours)>> TeamsOverHoursAsync(CancellationToken cancellationToken = default)
    {
        List<string> active;
        lock (_lock)
        {
            active = _teams.Where(t => t.Value.Active.Count > 0).Select(t => t.Key).ToList();
        }

        var over = new List<(string, double)>();
        foreach (var teamId in active)
        {
            var limits = await tenancy.GetLimitsAsync(teamId, cancellationToken).ConfigureAwait(false);
            if (limits.MonthlySandboxHours is { } hours && await UsedMsAsync(teamId, cancellationToken).ConfigureAwait(false) >= hours * 3_600_000)
            {
                over.Add((teamId, hours));
            }
        }

        return over;
    }

    private async ValueTask EnsureLoadedAsync(string teamId, CancellationToken cancellationToken)
    {
        var month = MonthOf(time.GetUtcNow());
        lock (_lock)
        {
            var team = Team(teamId);
            RollOver(team, month);
            if (team.Loaded)
            {
                return;
            }
        }

        var stored = await store.GetUsageAsync(teamId, month, cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            var team = Team(teamId);
            if (!team.Loaded && team.Month == month)
            {
                team.StoredMs = stored;
                team.Loaded = true;
            }
        }
    }

    /// <summary>A new month starts from zero (what runs across midnight counts for the new month).</summary>
    private void RollOver(TeamState team, string month)
    {
        if (team.Month != month)
        {
            if (team.Month.Length > 0)
            {
                LogNewMonth(month);
            }

            team.Month = month;
            team.StoredMs = 0;
            team.Loaded = false;
        }
    }

    private TeamState Team(string teamId)
    {
        if (!_teams.TryGetValue(teamId, out var team))
        {
            team = new TeamState();
            _teams[teamId] = team;
        }

        return team;
    }

    private static void Refuse(int? limit, int requested, string code, string limitName, string field)
    {
        if (limit is { } max && requested > max)
        {
            throw new AirlockException(code, 403, $"{field} {requested} exceeds the team's {limitName} of {max}") { Limit = limitName, Value = max };
        }
    }

    private void Release(string teamId)
    {
        lock (_lock)
        {
            Team(teamId).Pending--;
        }
    }

    [LoggerMessage(EventId = 420, Level = LogLevel.Information, Message = "usage metering: month {Month} starts")]
    private partial void LogNewMonth(string month);

    private sealed class TeamState
    {
        public HashSet<string> Active { get; } = new(StringComparer.Ordinal);

        public int Pending { get; set; }

        public string Month { get; set; } = "";

        public bool Loaded { get; set; }

        public long StoredMs { get; set; }

        public long InFlightMs { get; set; }

        public long UnflushedMs { get; set; }
    }

    private sealed class Reservation(QuotaLedger ledger, string teamId) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                ledger.Release(teamId);
            }
        }
    }
}
