using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Airlock.Core.Store;

internal enum SqlDialect
{
    Sqlite,
    Postgres,
}

/// <summary>
/// Where state lives: an embedded SQLite file (the default) or PostgreSQL
/// (<c>AIRLOCK_DATABASE=postgres://user:pass@host:5432/db</c>). Both run the same SQL: the stores
/// are written in the subset the two share (docs/architecture.md, "One schema, two databases"),
/// and the few DDL words that differ are spelled once in <see cref="Migrations"/>.
/// </summary>
internal sealed class Database : IAsyncDisposable
{
    private readonly string? _sqliteConnectionString;
    private readonly NpgsqlDataSource? _postgres;

    private Database(SqlDialect dialect, string description, string? sqlite, NpgsqlDataSource? postgres)
    {
        Dialect = dialect;
        Description = description;
        _sqliteConnectionString = sqlite;
        _postgres = postgres;
    }

    public SqlDialect Dialect { get; }

    /// <summary>What to show an operator: the kind and place, never a password.</summary>
    public string Description { get; }

    public static Database Sqlite(string path) => new(
        SqlDialect.Sqlite,
        "sqlite:" + path,
        new SqliteConnectionStringBuilder { DataSource = path, Cache = SqliteCacheMode.Private, Pooling = true }.ToString(),
        null);

    /// <summary>A <c>postgres://</c> / <c>postgresql://</c> URL or an Npgsql key=value connection string.</summary>
    public static Database Postgres(string setting)
    {
        var builder = ParsePostgres(setting);
        var description = $"postgres://{builder.Host}:{builder.Port}/{builder.Database}";
        return new Database(SqlDialect.Postgres, description, null, new NpgsqlDataSourceBuilder(builder.ConnectionString).Build());
    }

    /// <summary>The <c>AIRLOCK_DATABASE</c> setting: empty means SQLite in the data directory.</summary>
    public static Database FromSetting(string? setting, string dataDir)
    {
        if (string.IsNullOrWhiteSpace(setting))
        {
            return Sqlite(Path.Combine(dataDir, "airlock.db"));
        }

        setting = setting.Trim();
        if (setting.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase))
        {
            var path = setting["sqlite:".Length..];
            return Sqlite(Path.GetFullPath(path.Length == 0 ? Path.Combine(dataDir, "airlock.db") : path));
        }

        return Postgres(setting);
    }

    internal static NpgsqlConnectionStringBuilder ParsePostgres(string setting)
    {
        if (!setting.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) && !setting.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                return new NpgsqlConnectionStringBuilder(setting);
            }
            catch (ArgumentException ex)
            {
                throw new InvalidOperationException($"AIRLOCK_DATABASE is neither a postgres:// URL nor a connection string: {ex.Message}");
            }
        }

        if (!Uri.TryCreate(setting, UriKind.Absolute, out var uri))
        {
            throw new InvalidOperationException("AIRLOCK_DATABASE is not a valid postgres:// URL");
        }

        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.Host,
            Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port,
            Database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')) is { Length: > 0 } db ? db : "airlock",
        };
        if (uri.UserInfo.Length > 0)
        {
            var parts = uri.UserInfo.Split(':', 2);
            builder.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2)
            {
                builder.Password = Uri.UnescapeDataString(parts[1]);
            }
        }

        // Query parameters are Npgsql keywords (sslmode=require, search_path=x, host=/var/run/postgresql, ...).
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var kv = pair.Split('=', 2);
            var key = Uri.UnescapeDataString(kv[0]).Replace('_', ' ');
            try
            {
                builder[key] = kv.Length == 2 ? Uri.UnescapeDataString(kv[1]) : "true";
            }
            catch (ArgumentException)
            {
                throw new InvalidOperationException($"AIRLOCK_DATABASE: unknown parameter '{kv[0]}'");
            }
        }

        return builder;
    }

    public DbConnection Open()
    {
        if (_postgres is not null)
        {
            return _postgres.OpenConnection();
        }

        var connection = new SqliteConnection(_sqliteConnectionString);
        connection.Open();
        // WAL + NORMAL: a commit is durable against a crash of this process (what recovery needs) and
        // skips the fsync per transaction that FULL costs on every create and kill. busy_timeout
        // absorbs short write contention between connections.
        using var pragma = connection.CreateCommand();
        pragma.CommandText = "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;";
        pragma.ExecuteNonQuery();
        return connection;
    }

    public async ValueTask<DbConnection> OpenAsync(CancellationToken cancellationToken = default)
    {
        if (_postgres is not null)
        {
            return await _postgres.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        }

        return Open();
    }

    public async ValueTask DisposeAsync()
    {
        if (_postgres is not null)
        {
            await _postgres.DisposeAsync().ConfigureAwait(false);
        }
    }
}
