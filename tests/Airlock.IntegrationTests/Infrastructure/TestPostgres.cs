using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Airlock.IntegrationTests.Infrastructure;

/// <summary>
/// With AIRLOCK_TEST_STORE=postgres (test.sh's second pass), every test server gets its own fresh
/// database on the local PostgreSQL (AIRLOCK_TEST_POSTGRES, an admin URL), named after its data
/// dir so a restarted "same" server finds its state again; dropped with the data dir.
/// </summary>
internal static class TestPostgres
{
    public static bool Enabled => Environment.GetEnvironmentVariable("AIRLOCK_TEST_STORE") == "postgres";

    private static string AdminUrl => Environment.GetEnvironmentVariable("AIRLOCK_TEST_POSTGRES")
        ?? throw new InvalidOperationException("AIRLOCK_TEST_STORE=postgres needs AIRLOCK_TEST_POSTGRES (test.sh sets both)");

    private static string Name(string dataDir) =>
        "airlock_it_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(dataDir))))[..16];

    /// <summary>The AIRLOCK_DATABASE for a server on <paramref name="dataDir"/>, or null for SQLite.</summary>
    public static async Task<string?> DatabaseUrlAsync(string dataDir, CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return null;
        }

        var name = Name(dataDir);
        var admin = new Uri(AdminUrl);
        await using var connection = new NpgsqlConnection(ConnectionString(admin, admin.AbsolutePath.TrimStart('/')));
        await connection.OpenAsync(cancellationToken);
        await using var exists = new NpgsqlCommand($"SELECT 1 FROM pg_database WHERE datname = '{name}'", connection);
        if (await exists.ExecuteScalarAsync(cancellationToken) is null)
        {
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await create.ExecuteNonQueryAsync(cancellationToken);
        }

        return new UriBuilder(admin) { Path = "/" + name }.Uri.ToString();
    }

    public static async Task DropAsync(string dataDir)
    {
        if (!Enabled)
        {
            return;
        }

        var admin = new Uri(AdminUrl);
        await using var connection = new NpgsqlConnection(ConnectionString(admin, admin.AbsolutePath.TrimStart('/')));
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Name(dataDir)} WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }

    private static string ConnectionString(Uri url, string database)
    {
        var user = url.UserInfo.Split(':', 2);
        return new NpgsqlConnectionStringBuilder
        {
            Host = url.Host,
            Port = url.Port > 0 ? url.Port : 5432,
            Username = Uri.UnescapeDataString(user[0]),
            Password = user.Length > 1 ? Uri.UnescapeDataString(user[1]) : null,
            Database = database,
            Pooling = false,
        }.ConnectionString;
    }
}
