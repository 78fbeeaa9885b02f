using Airlock.Core.Store;
using Dapper;
using Npgsql;

namespace Airlock.Core.Tests.Store;

/// <summary>
/// A fresh, empty database of either kind for one test: a SQLite file in a temp dir, or a new
/// database on the PostgreSQL that test.sh starts (AIRLOCK_TEST_POSTGRES, an admin URL), dropped after.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    public const string PostgresVariable = "AIRLOCK_TEST_POSTGRES";
    private readonly string? _dir;
    private readonly string? _postgresName;

    private TestDatabase(Database database, string? dir, string? postgresName)
    {
        Database = database;
        _dir = dir;
        _postgresName = postgresName;
    }

    internal Database Database { get; }

    /// <summary>The kinds every store test runs against.</summary>
    public static TheoryData<string> Kinds => new("sqlite", "postgres");

    public static async Task<TestDatabase> CreateAsync(string kind, CancellationToken cancellationToken)
    {
        if (kind == "sqlite")
        {
            var dir = Directory.CreateTempSubdirectory("al-store-").FullName;
            return new TestDatabase(Database.Sqlite(Path.Combine(dir, "airlock.db")), dir, null);
        }

        var admin = Environment.GetEnvironmentVariable(PostgresVariable);
        if (string.IsNullOrEmpty(admin))
        {
            // test.sh always sets it; only a bare `dotnet test` without PostgreSQL gets here.
            Assert.Skip($"{PostgresVariable} is not set (test.sh starts PostgreSQL and sets it)");
        }

        var name = "airlock_t_" + Guid.NewGuid().ToString("N")[..12];
        var builder = Database.ParsePostgres(admin);
        await using (var connection = new NpgsqlConnection(builder.ConnectionString))
        {
            await connection.OpenAsync(cancellationToken);
            await connection.ExecuteAsync($"CREATE DATABASE {name}");
        }

        builder.Database = name;
        return new TestDatabase(Database.Postgres(builder.ConnectionString), null, name);
    }

    public async ValueTask DisposeAsync()
    {
        await Database.DisposeAsync();
        if (_dir is not null)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(_dir, recursive: true);
        }

        if (_postgresName is not null)
        {
            var builder = Database.ParsePostgres(Environment.GetEnvironmentVariable(PostgresVariable)!);
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync();
            await connection.ExecuteAsync($"DROP DATABASE IF EXISTS {_postgresName} WITH (FORCE)");
        }
    }
}
