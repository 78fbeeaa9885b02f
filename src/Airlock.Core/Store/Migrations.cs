using System.Data.Common;
using Dapper;

namespace Airlock.Core.Store;

/// <summary>
/// The schema, as numbered migrations applied in order at start (<c>schema_version</c> holds the
/// ones applied). One list for SQLite and PostgreSQL: append, never edit an applied entry. The
/// SQL is the subset both run; the words that differ are written as tokens:
/// <c>{identity}</c> (an auto-numbered BIGINT primary key) and <c>{blob}</c>.
/// </summary>
internal static class Migrations
{
    public static readonly string[] All =
    [
        // 1: sandboxes and templates.
        """
        CREATE TABLE IF NOT EXISTS sandboxes (
            id TEXT PRIMARY KEY,
            template TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            metadata TEXT NOT NULL,
            env TEXT NOT NULL,
            cpus INTEGER NOT NULL,
            memory_mb INTEGER NOT NULL,
            disk_mb INTEGER NOT NULL,
            init_pid INTEGER NOT NULL,
            init_start_time BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS templates (
            name TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT NULL,
            updated_at BIGINT NOT NULL
        );
        """,
        // 2: the E2B per-sandbox access token.
        "ALTER TABLE sandboxes ADD COLUMN access_token TEXT NOT NULL DEFAULT ''",
        // 3: network mode and rules (JSON text; '' is the default, mode none) and the traffic access token.
        """
        ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT '';
        ALTER TABLE sandboxes ADD COLUMN traffic_access_token TEXT NULL;
        """,
        // 4: tenancy (docs/architecture.md, "Tenancy"): teams and their quota overrides, API keys
        // (SHA-256 hashes), users, memberships, sessions, invitations, monthly usage, the audit log,
        // and the team of every sandbox (existing ones belong to the first team, "default").
        """
        CREATE TABLE IF NOT EXISTS teams (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            plan TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            max_concurrent_sandboxes INTEGER NULL,
            max_cpus INTEGER NULL,
            max_memory_mb INTEGER NULL,
            max_timeout_seconds INTEGER NULL,
            monthly_sandbox_hours DOUBLE PRECISION NULL,
            requests_per_minute INTEGER NULL
        );
        CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY,
            team_id TEXT NOT NULL,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            instance_admin INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            created_by TEXT NULL,
            expires_at BIGINT NULL,
            last_used_at BIGINT NULL,
            revoked_at BIGINT NULL
        );
        CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys (team_id);
        CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            name TEXT NULL,
            password_hash TEXT NOT NULL,
            instance_admin INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS team_members (
            team_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (team_id, user_id)
        );
        CREATE TABLE IF NOT EXISTS sessions (
            hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            csrf_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS invitations (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            team_id TEXT NOT NULL,
            email TEXT NOT NULL,
            role TEXT NOT NULL,
            created_by TEXT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            accepted_at BIGINT NULL
        );
        CREATE TABLE IF NOT EXISTS team_usage (
            team_id TEXT NOT NULL,
            month TEXT NOT NULL,
            sandbox_ms BIGINT NOT NULL,
            PRIMARY KEY (team_id, month)
        );
        CREATE TABLE IF NOT EXISTS audit_events (
            id {identity},
            team_id TEXT NOT NULL,
            at BIGINT NOT NULL,
            actor_type TEXT NOT NULL,
            actor_id TEXT NOT NULL,
            actor_label TEXT NULL,
            action TEXT NOT NULL,
            target TEXT NULL,
            detail TEXT NULL,
            remote_address TEXT NULL
        );
        CREATE INDEX IF NOT EXISTS audit_events_team ON audit_events (team_id, id);
        ALTER TABLE sandboxes ADD COLUMN team_id TEXT NOT NULL DEFAULT 'default';
        """,
        // The node (server) that runs the sandbox: servers sharing one PostgreSQL each own theirs.
        "ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT ''",
    ];

    public static string Render(string sql, SqlDialect dialect) => dialect switch
    {
        SqlDialect.Postgres => sql
            .Replace("{identity}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", StringComparison.Ordinal)
            .Replace("{blob}", "BYTEA", StringComparison.Ordinal),
        _ => sql
            .Replace("{identity}", "INTEGER PRIMARY KEY AUTOINCREMENT", StringComparison.Ordinal)
            .Replace("{blob}", "BLOB", StringComparison.Ordinal),
    };

    /// <summary>Brings the schema up to date. Safe with several servers starting at once on one PostgreSQL.</summary>
    public static async Task ApplyAsync(Database database, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        if (database.Dialect == SqlDialect.Sqlite)
        {
            // WAL lets readers proceed while a writer commits (a property of the file, set once).
            await connection.ExecuteAsync("PRAGMA journal_mode=WAL").ConfigureAwait(false);
        }

        await using var tx = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        if (database.Dialect == SqlDialect.Postgres)
        {
            // Servers starting together would race to apply the same migration: serialise them on
            // a transaction-scoped advisory lock (the number is arbitrary, fixed: "airlock" in ASCII).
            await connection.ExecuteAsync("SELECT pg_advisory_xact_lock(97105114108111)", transaction: tx).ConfigureAwait(false);
        }

        await connection.ExecuteAsync("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", transaction: tx).ConfigureAwait(false);
        var version = await connection.ExecuteScalarAsync<int?>("SELECT MAX(version) FROM schema_version", transaction: tx).ConfigureAwait(false) ?? 0;
        if (version > All.Length)
        {
            throw new InvalidOperationException($"the database ({database.Description}) has schema version {version}, newer than this server's {All.Length}: upgrade the server");
        }

        for (var i = version; i < All.Length; i++)
        {
            await connection.ExecuteAsync(Render(All[i], database.Dialect), transaction: tx).ConfigureAwait(false);
            await connection.ExecuteAsync("INSERT INTO schema_version (version) VALUES (@v)", new { v = i + 1 }, tx).ConfigureAwait(false);
        }

        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The version the database is at (for tests and /health).</summary>
    public static async Task<int> CurrentAsync(DbConnection connection) =>
        await connection.ExecuteScalarAsync<int?>("SELECT MAX(version) FROM schema_version").ConfigureAwait(false) ?? 0;
}
