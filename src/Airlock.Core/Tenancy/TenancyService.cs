using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Airlock.Core.Store;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Tenancy;

/// <summary>A key that authenticated: what the auth middleware turns into a <see cref="Caller"/>.</summary>
internal sealed record ValidKey(string Id, string TeamId, string Prefix, Scopes Scopes, bool InstanceAdmin, long? ExpiresAt);

/// <summary>
/// Teams, API keys and quota limits. Keys are validated from memory: a key (or an unknown hash) is
/// read from the store once and trusted for <see cref="TenancyOptions.CacheSeconds"/>, so a request
/// costs a SHA-256 and a dictionary lookup, not a database round trip. Valid keys and unknown
/// hashes are cached apart, each bounded, so a flood of guesses (one query each) never evicts a
/// valid key. A revoke in this process takes effect at once; another server sharing PostgreSQL
/// sees it within that TTL.
/// </summary>
internal sealed partial class TenancyService(
    SqlTenancyStore store,
    AuditLog audit,
    IOptions<TenancyOptions> options,
    IOptions<PlanOptions> plans,
    TimeProvider time,
    ILogger<TenancyService> logger)
{
    public const string DefaultTeamId = "default";
    public const string BootstrapKeyId = "bootstrap";
    private const int MaxCachedKeys = 100_000;
    private const int MaxCachedUnknown = 10_000;

    private readonly ConcurrentDictionary<string, (ValidKey Key, long LoadedAt)> _keys = new(StringComparer.Ordinal);
    // Unknown, revoked (and not yet expired-out) hashes: a repeated bad key costs no query.
    private readonly ConcurrentDictionary<string, long> _unknown = new(StringComparer.Ordinal);
    // Cache writes and revokes are ordered by this lock and _revocations (see CacheLoaded).
    private readonly Lock _cacheWrite = new();
    private long _revocations;
    private readonly ConcurrentDictionary<string, (TeamRow? Team, long LoadedAt)> _teams = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _lastUsedWritten = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _lastUsedPending = new(StringComparer.Ordinal);
    private readonly TenancyOptions _options = options.Value;

    /// <summary>The first team and the bootstrap key (instance admin, every scope), made or updated at start.</summary>
    public async Task InitializeAsync(string bootstrapKey, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await store.InsertTeamAsync(new TeamRow { Id = DefaultTeamId, Name = "default", Plan = _options.BootstrapPlan, CreatedAt = now }, ignoreExisting: true, cancellationToken).ConfigureAwait(false);
        await store.UpsertKeyAsync(
            new ApiKeyRow
            {
                Id = BootstrapKeyId,
                TeamId = DefaultTeamId,
                Name = "bootstrap admin key",
                Prefix = PrefixOf(bootstrapKey),
                Hash = HashKey(bootstrapKey),
                Scopes = ScopeNames.Format(Scopes.All),
                InstanceAdmin = 1,
                CreatedAt = now,
            },
            cancellationToken).ConfigureAwait(false);
        lock (_cacheWrite)
        {
            _revocations++;
            _keys.Clear();
            _unknown.Clear();
        }
    }

    public static string HashKey(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>What is shown to tell keys apart: <c>e2b_</c> and the first 8 hex digits.</summary>
    public static string PrefixOf(string key) => key.Length > 12 ? key[..12] : key[..Math.Min(4, key.Length)];

    /// <summary>The key, or null when unknown, revoked or expired.</summary>
    public async ValueTask<ValidKey?> AuthenticateAsync(string presented, CancellationToken cancellationToken = default)
    {
        if (presented.Length is 0 or > 256)
        {
            return null;
        }

        var hash = HashKey(presented);
        var now = time.GetTimestamp();
        ValidKey valid;
        if (_keys.TryGetValue(hash, out var cached) && time.GetElapsedTime(cached.LoadedAt, now).TotalSeconds < _options.CacheSeconds)
        {
            valid = cached.Key;
        }
        else if (_unknown.TryGetValue(hash, out var seen) && time.GetElapsedTime(seen, now).TotalSeconds < _options.CacheSeconds)
        {
            return null;
        }
        else
        {
            // Read before the query: a revoke that lands while it runs makes its result too old to cache.
            var generation = Volatile.Read(ref _revocations);
            var row = await store.GetKeyByHashAsync(hash, cancellationToken).ConfigureAwait(false);
            var key = row is null || row.RevokedAt is not null
                ? null
                : new ValidKey(row.Id, row.TeamId, row.Prefix, ScopeNames.ParseStored(row.Scopes), row.InstanceAdmin != 0, row.ExpiresAt);
            CacheLoaded(hash, key, generation, now);
            if (key is null)
            {
                return null;
            }

            valid = key;
        }

        var nowMs = time.GetUtcNow().ToUnixTimeMilliseconds();
        if (valid.ExpiresAt is { } expires && nowMs >= expires)
        {
            return null;
        }

        // last_used_at is written behind, at most once per LastUsedWriteSeconds per key.
        if (!_lastUsedWritten.TryGetValue(valid.Id, out var written) || nowMs - written >= _options.LastUsedWriteSeconds * 1000L)
        {
            _lastUsedWritten[valid.Id] = nowMs;
            _lastUsedPending[valid.Id] = nowMs;
        }

        return valid;
    }

    /// <summary>
    /// Caches what one lookup read, unless a revoke ran since <paramref name="generation"/> was read
    /// (before the query): that result may predate the revoke and must not overwrite its "no such
    /// key". Under the lock, a revoke's entry and this check cannot interleave.
    /// </summary>
    internal void CacheLoaded(string hash, ValidKey? key, long generation, long loadedAt)
    {
        lock (_cacheWrite)
        {
            if (_revocations != generation)
            {
                return;
            }

            if (key is null)
            {
                if (_unknown.Count >= MaxCachedUnknown)
                {
                    // Each distinct guess is one query and one entry here; guesses fill only this
                    // cache, never the valid keys'.
                    _unknown.Clear();
                }

                _keys.TryRemove(hash, out _);
                _unknown[hash] = loadedAt;
            }
            else
            {
                if (_keys.Count >= MaxCachedKeys)
                {
                    _keys.Clear();
                }

                _unknown.TryRemove(hash, out _);
                _keys[hash] = (key, loadedAt);
            }
        }
    }

    /// <summary>How many revokes this process has made (for <see cref="CacheLoaded"/>).</summary>
    internal long RevocationGeneration => Volatile.Read(ref _revocations);

    public async Task FlushLastUsedAsync(CancellationToken cancellationToken = default)
    {
        var batch = new List<(string, long)>();
        foreach (var id in _lastUsedPending.Keys)
        {
            if (_lastUsedPending.TryRemove(id, out var at))
            {
                batch.Add((id, at));
            }
        }

        if (batch.Count > 0)
        {
            await store.UpdateLastUsedAsync(batch, cancellationToken).ConfigureAwait(false);
        }
    }

    // Teams

    public async Task<TeamRow> CreateTeamAsync(Caller caller, string? name, CancellationToken cancellationToken = default)
    {
        if (!caller.InstanceAdmin)
        {
            throw new AirlockException("instance_admin_required", 403, "only an instance admin may create teams");
        }

        name = name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 100)
        {
            throw AirlockException.Invalid("name is required (at most 100 characters)");
        }

        var team = new TeamRow { Id = NewId("team_"), Name = name, Plan = _options.DefaultPlan, CreatedAt = time.GetUtcNow().ToUnixTimeMilliseconds() };
        await store.InsertTeamAsync(team, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (caller.Kind == CallerKind.User)
        {
            await store.UpsertMemberAsync(team.Id, caller.ActorId, Roles.Owner, team.CreatedAt, cancellationToken).ConfigureAwait(false);
        }

        audit.Record(team.Id, "team.create", team.Id, $"name={name}");
        if (caller.TeamId is { } own && own != team.Id)
        {
            audit.Record(own, "team.create", team.Id, $"name={name}");
        }

        return team;
    }

    /// <summary>The teams a caller may see: every team for an instance admin, else its own.</summary>
    public async Task<IReadOnlyList<TeamRow>> ListTeamsAsync(Caller caller, CancellationToken cancellationToken = default)
    {
        var all = await store.ListTeamsAsync(cancellationToken).ConfigureAwait(false);
        if (caller.InstanceAdmin)
        {
            return all;
        }

        if (caller.Kind == CallerKind.User)
        {
            var mine = (await store.ListMembershipsAsync(caller.ActorId, cancellationToken).ConfigureAwait(false)).Select(m => m.TeamId).ToHashSet(StringComparer.Ordinal);
            return all.Where(t => mine.Contains(t.Id)).ToList();
        }

        return all.Where(t => t.Id == caller.TeamId).ToList();
    }

    /// <summary>
    /// Checks that <paramref name="caller"/> may act on team <paramref name="teamId"/> with
    /// <paramref name="scope"/>. A team the caller is not part of is "not found" (never 403), as
    /// for sandboxes; a missing scope in its own team is 403 <c>insufficient_scope</c>.
    /// </summary>
    public async Task<TeamRow> RequireTeamAsync(Caller caller, string teamId, Scopes scope, CancellationToken cancellationToken = default)
    {
        var team = await store.GetTeamAsync(teamId, cancellationToken).ConfigureAwait(false);
        if (team is null)
        {
            throw AirlockException.NotFound($"team '{teamId}'");
        }

        if (caller.InstanceAdmin)
        {
            return team;
        }

        Scopes granted;
        if (caller.Kind == CallerKind.User)
        {
            var membership = (await store.ListMembershipsAsync(caller.ActorId, cancellationToken).ConfigureAwait(false)).FirstOrDefault(m => m.TeamId == teamId);
            granted = membership is null ? Scopes.None : Roles.ScopesOf(membership.Role);
            if (membership is null)
            {
                throw AirlockException.NotFound($"team '{teamId}'");
            }
        }
        else if (caller.Kind == CallerKind.ApiKey && caller.TeamId == teamId)
        {
            granted = caller.Scopes;
        }
        else
        {
            throw AirlockException.NotFound($"team '{teamId}'");
        }

        if ((granted & scope) != scope)
        {
            throw InsufficientScope(scope);
        }

        return team;
    }

    public static AirlockException InsufficientScope(Scopes scope) =>
        new("insufficient_scope", 403, $"this key or role lacks the scope '{ScopeNames.Format(scope)}'");

    // Quotas

    public QuotaLimits Plan(string plan) =>
        plans.Value.Plans.TryGetValue(plan, out var limits) ? limits : throw AirlockException.Invalid($"unknown plan '{plan}' (configured: {string.Join(", ", plans.Value.Plans.Keys)})");

    /// <summary>The team's effective limits (plan, then its overrides), cached like keys.</summary>
    public async ValueTask<QuotaLimits> GetLimitsAsync(string teamId, CancellationToken cancellationToken = default)
    {
        var team = await GetTeamCachedAsync(teamId, cancellationToken).ConfigureAwait(false);
        if (team is null)
        {
            return new QuotaLimits();
        }

        var plan = plans.Value.Plans.TryGetValue(team.Plan, out var p) ? p : new QuotaLimits();
        return team.Overrides.Over(plan);
    }

    public async Task SetQuotaAsync(Caller caller, string teamId, string? plan, QuotaLimits overrides, CancellationToken cancellationToken = default)
    {
        // A team's own admin may not raise its limits: quotas are the instance admin's.
        if (!caller.InstanceAdmin)
        {
            await RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
            throw new AirlockException("instance_admin_required", 403, "only an instance admin may change quotas");
        }

        var team = await RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        plan ??= team.Plan;
        Plan(plan);
        Check(overrides.MaxConcurrentSandboxes, "maxConcurrentSandboxes");
        Check(overrides.MaxCpus, "maxCpus");
        Check(overrides.MaxMemoryMb, "maxMemoryMb");
        Check(overrides.MaxTimeoutSeconds, "maxTimeoutSeconds");
        Check(overrides.RequestsPerMinute, "requestsPerMinute");
        if (overrides.MonthlySandboxHours is < 0 or double.NaN)
        {
            throw AirlockException.Invalid("monthlySandboxHours must be at least 0");
        }

        await store.UpdateQuotaAsync(teamId, plan, overrides, cancellationToken).ConfigureAwait(false);
        _teams.TryRemove(teamId, out _);
        audit.Record(teamId, "team.quota", teamId, $"plan={plan} {Describe(overrides)}");

        static void Check(int? value, string name)
        {
            if (value is < 0)
            {
                throw AirlockException.Invalid($"{name} must be at least 0");
            }
        }
    }

    public static string Describe(QuotaLimits q) =>
        $"maxConcurrentSandboxes={q.MaxConcurrentSandboxes?.ToString() ?? "-"} maxCpus={q.MaxCpus?.ToString() ?? "-"} maxMemoryMb={q.MaxMemoryMb?.ToString() ?? "-"} " +
        $"maxTimeoutSeconds={q.MaxTimeoutSeconds?.ToString() ?? "-"} monthlySandboxHours={q.MonthlySandboxHours?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-"} requestsPerMinute={q.RequestsPerMinute?.ToString() ?? "-"}";

    private async ValueTask<TeamRow?> GetTeamCachedAsync(string teamId, CancellationToken cancellationToken)
    {
        var now = time.GetTimestamp();
        if (_teams.TryGetValue(teamId, out var cached) && time.GetElapsedTime(cached.LoadedAt, now).TotalSeconds < _options.CacheSeconds)
        {
            return cached.Team;
        }

        var team = await store.GetTeamAsync(teamId, cancellationToken).ConfigureAwait(false);
        _teams[teamId] = (team, now);
        return team;
    }

    // API keys

    public async Task<(ApiKeyRow Row, string Secret)> CreateKeyAsync(Caller caller, string teamId, string? name, IReadOnlyList<string>? scopes, DateTimeOffset? expiresAt, CancellationToken cancellationToken = default)
    {
        await RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        name = name?.Trim();
        if (string.IsNullOrEmpty(name) || name.Length > 100)
        {
            throw AirlockException.Invalid("name is required (at most 100 characters)");
        }

        var wanted = scopes is null ? ScopeNames.DefaultForKeys : ScopeNames.Parse(scopes);
        if (!caller.InstanceAdmin && caller.Kind == CallerKind.ApiKey && (wanted & ~caller.Scopes) != 0)
        {
            // No escalation: a key can only hand out scopes it has.
            throw InsufficientScope(wanted & ~caller.Scopes);
        }

        var now = time.GetUtcNow();
        if (expiresAt is { } e && e <= now)
        {
            throw AirlockException.Invalid("expiresAt must be in the future");
        }

        // e2b_ + 40 hex digits: the form the E2B SDKs check (Python: ^e2b_[0-9a-f]+$).
        var secret = "e2b_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        var row = new ApiKeyRow
        {
            Id = NewId("key_"),
            TeamId = teamId,
            Name = name,
            Prefix = PrefixOf(secret),
            Hash = HashKey(secret),
            Scopes = ScopeNames.Format(wanted),
            CreatedAt = now.ToUnixTimeMilliseconds(),
            CreatedBy = caller.ActorLabel ?? caller.ActorId,
            ExpiresAt = expiresAt?.ToUnixTimeMilliseconds(),
        };
        await store.InsertKeyAsync(row, cancellationToken).ConfigureAwait(false);
        audit.Record(teamId, "apikey.create", row.Id, $"name={name} prefix={row.Prefix} scopes={row.Scopes}");
        return (row, secret);
    }

    public async Task<IReadOnlyList<ApiKeyRow>> ListKeysAsync(Caller caller, string teamId, CancellationToken cancellationToken = default)
    {
        await RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        var rows = await store.ListKeysAsync(teamId, cancellationToken).ConfigureAwait(false);
        foreach (var row in rows)
        {
            // What has not been written behind yet is newer than the stored value.
            if (_lastUsedWritten.TryGetValue(row.Id, out var at) && (row.LastUsedAt is null || at > row.LastUsedAt))
            {
                row.LastUsedAt = at;
            }
        }

        return rows;
    }

    public async Task RevokeKeyAsync(Caller caller, string keyId, CancellationToken cancellationToken = default)
    {
        var row = await store.GetKeyAsync(keyId, cancellationToken).ConfigureAwait(false);
        if (row is null || row.RevokedAt is not null)
        {
            throw AirlockException.NotFound($"API key '{keyId}'");
        }

        try
        {
            await RequireTeamAsync(caller, row.TeamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        }
        catch (AirlockException ex) when (ex.Status == 404)
        {
            throw AirlockException.NotFound($"API key '{keyId}'");
        }

        if (row.Id == BootstrapKeyId)
        {
            throw AirlockException.Invalid("the bootstrap key comes from the server's configuration (AIRLOCK_BOOTSTRAP_API_KEY or <data>/admin.key); change it there");
        }

        await store.RevokeKeyAsync(keyId, time.GetUtcNow().ToUnixTimeMilliseconds(), cancellationToken).ConfigureAwait(false);
        // At once in this process: the cached entry becomes "no such key", and a lookup that read the
        // row before the revoke can no longer cache it as valid (CacheLoaded).
        lock (_cacheWrite)
        {
            _revocations++;
            _keys.TryRemove(row.Hash, out _);
            _unknown[row.Hash] = time.GetTimestamp();
        }

        audit.Record(row.TeamId, "apikey.revoke", row.Id, $"name={row.Name} prefix={row.Prefix}");
        LogRevoked(row.Id, row.Prefix);
    }

    internal static string NewId(string prefix) => prefix + RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyz0123456789", 16);

    [LoggerMessage(EventId = 410, Level = LogLevel.Information, Message = "API key {Id} ({Prefix}) revoked")]
    private partial void LogRevoked(string id, string prefix);
}
