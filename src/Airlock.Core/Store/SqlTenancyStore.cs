using System.Text;
using Airlock.Core.Tenancy;
using Dapper;

namespace Airlock.Core.Store;

/// <summary>
/// Teams, keys, users, sessions, invitations, usage and the audit log in the <see cref="Database"/>
/// (SQLite or PostgreSQL, the same SQL: upserts are <c>INSERT … ON CONFLICT</c>, which both run).
/// </summary>
internal sealed class SqlTenancyStore(Database database)
{
    private const string TeamColumns = "id AS Id, name AS Name, plan AS Plan, created_at AS CreatedAt, max_concurrent_sandboxes AS MaxConcurrentSandboxes, max_cpus AS MaxCpus, max_memory_mb AS MaxMemoryMb, max_timeout_seconds AS MaxTimeoutSeconds, monthly_sandbox_hours AS MonthlySandboxHours, requests_per_minute AS RequestsPerMinute";
    private const string KeyColumns = "id AS Id, team_id AS TeamId, name AS Name, prefix AS Prefix, hash AS Hash, scopes AS Scopes, instance_admin AS InstanceAdmin, created_at AS CreatedAt, created_by AS CreatedBy, expires_at AS ExpiresAt, last_used_at AS LastUsedAt, revoked_at AS RevokedAt";
    private const string UserColumns = "id AS Id, email AS Email, name AS Name, password_hash AS PasswordHash, instance_admin AS InstanceAdmin, created_at AS CreatedAt";
    private const string InvitationColumns = "id AS Id, hash AS Hash, team_id AS TeamId, email AS Email, role AS Role, created_by AS CreatedBy, created_at AS CreatedAt, expires_at AS ExpiresAt, accepted_at AS AcceptedAt";
    private const string AuditColumns = "id AS Id, team_id AS TeamId, at AS At, actor_type AS ActorType, actor_id AS ActorId, actor_label AS ActorLabel, action AS Action, target AS Target, detail AS Detail, remote_address AS RemoteAddress";

    public Task InitializeAsync(CancellationToken cancellationToken = default) => Migrations.ApplyAsync(database, cancellationToken);

    // Teams

    /// <summary>Inserts the team unless one with its id exists (servers starting together on one PostgreSQL).</summary>
    public async Task<bool> InsertTeamAsync(TeamRow team, bool ignoreExisting = false, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        var sql = "INSERT INTO teams (id, name, plan, created_at) VALUES (@Id, @Name, @Plan, @CreatedAt)" + (ignoreExisting ? " ON CONFLICT (id) DO NOTHING" : "");
        return await connection.ExecuteAsync(sql, team).ConfigureAwait(false) > 0;
    }

    public async Task<TeamRow?> GetTeamAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<TeamRow>($"SELECT {TeamColumns} FROM teams WHERE id = @id", new { id }).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<TeamRow>> ListTeamsAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return (await connection.QueryAsync<TeamRow>($"SELECT {TeamColumns} FROM teams ORDER BY created_at, id").ConfigureAwait(false)).ToList();
    }

    public async Task UpdateQuotaAsync(string id, string plan, QuotaLimits overrides, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            """
            UPDATE teams SET plan = @plan, max_concurrent_sandboxes = @MaxConcurrentSandboxes, max_cpus = @MaxCpus, max_memory_mb = @MaxMemoryMb,
                max_timeout_seconds = @MaxTimeoutSeconds, monthly_sandbox_hours = @MonthlySandboxHours, requests_per_minute = @RequestsPerMinute
            WHERE id = @id
            """,
            new { id, plan, overrides.MaxConcurrentSandboxes, overrides.MaxCpus, overrides.MaxMemoryMb, overrides.MaxTimeoutSeconds, overrides.MonthlySandboxHours, overrides.RequestsPerMinute })
            .ConfigureAwait(false);
    }

    // API keys

    public async Task InsertKeyAsync(ApiKeyRow key, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            """
            INSERT INTO api_keys (id, team_id, name, prefix, hash, scopes, instance_admin, created_at, created_by, expires_at, last_used_at, revoked_at)
            VALUES (@Id, @TeamId, @Name, @Prefix, @Hash, @Scopes, @InstanceAdmin, @CreatedAt, @CreatedBy, @ExpiresAt, NULL, NULL)
            """,
            key).ConfigureAwait(false);
    }

    /// <summary>The bootstrap key: its hash follows the configured key (which may change between starts).</summary>
    public async Task UpsertKeyAsync(ApiKeyRow key, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            """
            INSERT INTO api_keys (id, team_id, name, prefix, hash, scopes, instance_admin, created_at, created_by, expires_at, last_used_at, revoked_at)
            VALUES (@Id, @TeamId, @Name, @Prefix, @Hash, @Scopes, @InstanceAdmin, @CreatedAt, @CreatedBy, NULL, NULL, NULL)
            ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, prefix = excluded.prefix, scopes = excluded.scopes, instance_admin = excluded.instance_admin, revoked_at = NULL
            """,
            key).ConfigureAwait(false);
    }

    public async Task<ApiKeyRow?> GetKeyByHashAsync(string hash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<ApiKeyRow>($"SELECT {KeyColumns} FROM api_keys WHERE hash = @hash", new { hash }).ConfigureAwait(false);
    }

    public async Task<ApiKeyRow?> GetKeyAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<ApiKeyRow>($"SELECT {KeyColumns} FROM api_keys WHERE id = @id", new { id }).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<ApiKeyRow>> ListKeysAsync(string teamId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return (await connection.QueryAsync<ApiKeyRow>($"SELECT {KeyColumns} FROM api_keys WHERE team_id = @teamId AND revoked_at IS NULL ORDER BY created_at, id", new { teamId }).ConfigureAwait(false)).ToList();
    }

    public async Task<bool> RevokeKeyAsync(string id, long at, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.ExecuteAsync("UPDATE api_keys SET revoked_at = @at WHERE id = @id AND revoked_at IS NULL", new { id, at }).ConfigureAwait(false) > 0;
    }

    public async Task UpdateLastUsedAsync(IReadOnlyCollection<(string Id, long At)> uses, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var (id, at) in uses)
        {
            await connection.ExecuteAsync("UPDATE api_keys SET last_used_at = @at WHERE id = @id", new { id, at }, tx).ConfigureAwait(false);
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    // Users, members, sessions, invitations

    public async Task InsertUserAsync(UserRow user, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            "INSERT INTO users (id, email, name, password_hash, instance_admin, created_at) VALUES (@Id, @Email, @Name, @PasswordHash, @InstanceAdmin, @CreatedAt)", user).ConfigureAwait(false);
    }

    public async Task<UserRow?> GetUserByEmailAsync(string email, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<UserRow>($"SELECT {UserColumns} FROM users WHERE email = @email", new { email }).ConfigureAwait(false);
    }

    public async Task<UserRow?> GetUserAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<UserRow>($"SELECT {UserColumns} FROM users WHERE id = @id", new { id }).ConfigureAwait(false);
    }

    public async Task UpsertMemberAsync(string teamId, string userId, string role, long at, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES (@teamId, @userId, @role, @at) ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
            new { teamId, userId, role, at }).ConfigureAwait(false);
    }

    public async Task<bool> RemoveMemberAsync(string teamId, string userId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.ExecuteAsync("DELETE FROM team_members WHERE team_id = @teamId AND user_id = @userId", new { teamId, userId }).ConfigureAwait(false) > 0;
    }

    public async Task<IReadOnlyList<MemberRow>> ListMembersAsync(string teamId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return (await connection.QueryAsync<MemberRow>(
            "SELECT m.team_id AS TeamId, m.user_id AS UserId, u.email AS Email, m.role AS Role, m.created_at AS CreatedAt FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = @teamId ORDER BY m.created_at, u.email",
            new { teamId }).ConfigureAwait(false)).ToList();
    }

    /// <summary>A user's memberships, oldest first (the first is their default team).</summary>
    public async Task<IReadOnlyList<MemberRow>> ListMembershipsAsync(string userId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return (await connection.QueryAsync<MemberRow>(
            "SELECT m.team_id AS TeamId, m.user_id AS UserId, u.email AS Email, m.role AS Role, m.created_at AS CreatedAt FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.user_id = @userId ORDER BY m.created_at, m.team_id",
            new { userId }).ConfigureAwait(false)).ToList();
    }

    public async Task InsertSessionAsync(SessionRow session, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            "INSERT INTO sessions (hash, user_id, csrf_hash, created_at, expires_at) VALUES (@Hash, @UserId, @CsrfHash, @CreatedAt, @ExpiresAt)", session).ConfigureAwait(false);
    }

    public async Task<SessionRow?> GetSessionAsync(string hash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<SessionRow>(
            "SELECT hash AS Hash, user_id AS UserId, csrf_hash AS CsrfHash, created_at AS CreatedAt, expires_at AS ExpiresAt FROM sessions WHERE hash = @hash", new { hash }).ConfigureAwait(false);
    }

    public async Task DeleteSessionAsync(string hash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync("DELETE FROM sessions WHERE hash = @hash", new { hash }).ConfigureAwait(false);
    }

    public async Task InsertInvitationAsync(InvitationRow invitation, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            "INSERT INTO invitations (id, hash, team_id, email, role, created_by, created_at, expires_at, accepted_at) VALUES (@Id, @Hash, @TeamId, @Email, @Role, @CreatedBy, @CreatedAt, @ExpiresAt, NULL)",
            invitation).ConfigureAwait(false);
    }

    public async Task<InvitationRow?> GetInvitationByHashAsync(string hash, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.QuerySingleOrDefaultAsync<InvitationRow>($"SELECT {InvitationColumns} FROM invitations WHERE hash = @hash", new { hash }).ConfigureAwait(false);
    }

    /// <summary>True for the one caller that accepts it (an invitation is single-use).</summary>
    public async Task<bool> MarkInvitationAcceptedAsync(string id, long at, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.ExecuteAsync("UPDATE invitations SET accepted_at = @at WHERE id = @id AND accepted_at IS NULL", new { id, at }).ConfigureAwait(false) > 0;
    }

    // Usage (sandbox-milliseconds per team per calendar month)

    public async Task AddUsageAsync(IReadOnlyCollection<(string TeamId, string Month, long Ms)> deltas, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var (teamId, month, ms) in deltas)
        {
            await connection.ExecuteAsync(
                "INSERT INTO team_usage (team_id, month, sandbox_ms) VALUES (@teamId, @month, @ms) ON CONFLICT (team_id, month) DO UPDATE SET sandbox_ms = team_usage.sandbox_ms + excluded.sandbox_ms",
                new { teamId, month, ms }, tx).ConfigureAwait(false);
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<long> GetUsageAsync(string teamId, string month, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return await connection.ExecuteScalarAsync<long?>("SELECT sandbox_ms FROM team_usage WHERE team_id = @teamId AND month = @month", new { teamId, month }).ConfigureAwait(false) ?? 0;
    }

    // Audit (append-only: there is no update or delete)

    public async Task AppendAuditAsync(IReadOnlyCollection<AuditEvent> events, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            "INSERT INTO audit_events (team_id, at, actor_type, actor_id, actor_label, action, target, detail, remote_address) VALUES (@TeamId, @At, @ActorType, @ActorId, @ActorLabel, @Action, @Target, @Detail, @RemoteAddress)",
            events, tx).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Newest first; <see cref="AuditQuery.Before"/> is the cursor (an event id).</summary>
    public async Task<IReadOnlyList<AuditEvent>> QueryAuditAsync(AuditQuery query, CancellationToken cancellationToken = default)
    {
        var sql = new StringBuilder($"SELECT {AuditColumns} FROM audit_events WHERE team_id = @TeamId");
        if (query.Before is not null)
        {
            sql.Append(" AND id < @Before");
        }

        if (query.Action is not null)
        {
            sql.Append(" AND action = @Action");
        }

        if (query.SandboxId is not null)
        {
            sql.Append(" AND target = @SandboxId");
        }

        if (query.Since is not null)
        {
            sql.Append(" AND at >= @Since");
        }

        if (query.Until is not null)
        {
            sql.Append(" AND at < @Until");
        }

        sql.Append(" ORDER BY id DESC LIMIT @Limit");
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        return (await connection.QueryAsync<AuditEvent>(sql.ToString(), query).ConfigureAwait(false)).ToList();
    }
}
