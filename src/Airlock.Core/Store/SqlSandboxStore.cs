using System.Text.Json;
using Airlock.Core.Sandboxes;
using Airlock.Core.Templates;
using Dapper;

namespace Airlock.Core.Store;

/// <summary>
/// Sandboxes and templates in the <see cref="Database"/> (SQLite or PostgreSQL, the same SQL).
/// Times are stored as unix milliseconds, maps as JSON text. Each sandbox row names the node (server)
/// that runs it: several servers may share one PostgreSQL, and each lists, recovers and reaps only
/// its own sandboxes.
/// </summary>
internal sealed class SqlSandboxStore(Database database, string node = "") : ISandboxStore
{
    public Task InitializeAsync(CancellationToken cancellationToken = default) => Migrations.ApplyAsync(database, cancellationToken);

    public async Task InsertAsync(SandboxRecord record, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            """
            INSERT INTO sandboxes (node, id, template, state, created_at, expires_at, metadata, env, cpus, memory_mb, disk_mb, init_pid, init_start_time, access_token, network, traffic_access_token, team_id)
            VALUES (@Node, @Id, @Template, @State, @CreatedAt, @ExpiresAt, @Metadata, @Env, @Cpus, @MemoryMb, @DiskMb, @InitPid, @InitStartTime, @AccessToken, @Network, @TrafficAccessToken, @TeamId)
            """,
            Row.From(record, node)).ConfigureAwait(false);
    }

    public async Task UpdateAsync(SandboxRecord record, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync(
            // Every column but the key and the node: a warm-pool claim rewrites the whole record in one statement.
            """
            UPDATE sandboxes SET template = @Template, state = @State, created_at = @CreatedAt, expires_at = @ExpiresAt, metadata = @Metadata, env = @Env,
                cpus = @Cpus, memory_mb = @MemoryMb, disk_mb = @DiskMb, init_pid = @InitPid, init_start_time = @InitStartTime, access_token = @AccessToken,
                network = @Network, traffic_access_token = @TrafficAccessToken, team_id = @TeamId
            WHERE id = @Id
            """,
            Row.From(record)).ConfigureAwait(false);
    }

    public async Task DeleteAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        await connection.ExecuteAsync("DELETE FROM sandboxes WHERE id = @id", new { id }).ConfigureAwait(false);
    }

    public async Task<SandboxRecord?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        var row = await connection.QuerySingleOrDefaultAsync<Row>(Row.Select + " WHERE id = @id", new { id }).ConfigureAwait(false);
        return row?.ToRecord();
    }

    public async Task<IReadOnlyList<SandboxRecord>> ListAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        var rows = await connection.QueryAsync<Row>(Row.Select + " WHERE node = @node OR node = '' ORDER BY created_at", new { node }).ConfigureAwait(false);
        return rows.Select(r => r.ToRecord()).ToList();
    }

    public async Task UpsertTemplateAsync(TemplateRecord template, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        var args = new { template.Name, template.Hash, Status = template.Status.ToString(), template.Error, UpdatedAt = template.UpdatedAt.ToUnixTimeMilliseconds() };
        // UPDATE then INSERT: portable, unlike SQLite's and PostgreSQL's different upsert spellings.
        var updated = await connection.ExecuteAsync(
            "UPDATE templates SET hash = @Hash, status = @Status, error = @Error, updated_at = @UpdatedAt WHERE name = @Name", args).ConfigureAwait(false);
        if (updated == 0)
        {
            await connection.ExecuteAsync(
                "INSERT INTO templates (name, hash, status, error, updated_at) VALUES (@Name, @Hash, @Status, @Error, @UpdatedAt)", args).ConfigureAwait(false);
        }
    }

    public async Task<IReadOnlyList<TemplateRecord>> ListTemplatesAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken).ConfigureAwait(false);
        var rows = await connection.QueryAsync<(string Name, string Hash, string Status, string? Error, long UpdatedAt)>(
            "SELECT name, hash, status, error, updated_at FROM templates ORDER BY name").ConfigureAwait(false);
        return rows.Select(r => new TemplateRecord(r.Name, r.Hash, Enum.Parse<TemplateStatus>(r.Status), r.Error, DateTimeOffset.FromUnixTimeMilliseconds(r.UpdatedAt))).ToList();
    }

    private sealed class Row
    {
        public const string Select = "SELECT id AS Id, template AS Template, state AS State, created_at AS CreatedAt, expires_at AS ExpiresAt, metadata AS Metadata, env AS Env, cpus AS Cpus, memory_mb AS MemoryMb, disk_mb AS DiskMb, init_pid AS InitPid, init_start_time AS InitStartTime, access_token AS AccessToken, network AS Network, traffic_access_token AS TrafficAccessToken, team_id AS TeamId FROM sandboxes";

        public string Id { get; set; } = "";

        public string Template { get; set; } = "";

        public string State { get; set; } = "";

        public long CreatedAt { get; set; }

        public long ExpiresAt { get; set; }

        public string Metadata { get; set; } = "{}";

        public string Env { get; set; } = "{}";

        public int Cpus { get; set; }

        public int MemoryMb { get; set; }

        public int DiskMb { get; set; }

        public int InitPid { get; set; }

        public long InitStartTime { get; set; }

        public string AccessToken { get; set; } = "";

        public string Network { get; set; } = "";

        public string? TrafficAccessToken { get; set; }

        public string TeamId { get; set; } = "";

        public string Node { get; set; } = "";

        public static Row From(SandboxRecord r, string node = "") => new()
        {
            Node = node,
            Id = r.Id,
            Template = r.Template,
            State = r.State.ToString(),
            CreatedAt = r.CreatedAt.ToUnixTimeMilliseconds(),
            ExpiresAt = r.ExpiresAt.ToUnixTimeMilliseconds(),
            Metadata = JsonSerializer.Serialize(r.Metadata, CoreJsonContext.Default.DictionaryStringString),
            Env = JsonSerializer.Serialize(r.Env, CoreJsonContext.Default.DictionaryStringString),
            Cpus = r.Cpus,
            MemoryMb = r.MemoryMb,
            DiskMb = r.DiskMb,
            InitPid = r.InitPid,
            InitStartTime = r.InitStartTime,
            AccessToken = r.AccessToken,
            Network = JsonSerializer.Serialize(r.Network, CoreJsonContext.Default.NetworkConfig),
            TrafficAccessToken = r.TrafficAccessToken,
            TeamId = r.TeamId,
        };

        public SandboxRecord ToRecord() => new()
        {
            Id = Id,
            Template = Template,
            State = Enum.Parse<SandboxState>(State),
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(CreatedAt),
            ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds(ExpiresAt),
            Metadata = JsonSerializer.Deserialize(Metadata, CoreJsonContext.Default.DictionaryStringString) ?? [],
            Env = JsonSerializer.Deserialize(Env, CoreJsonContext.Default.DictionaryStringString) ?? [],
            Cpus = Cpus,
            MemoryMb = MemoryMb,
            DiskMb = DiskMb,
            InitPid = InitPid,
            InitStartTime = InitStartTime,
            AccessToken = AccessToken,
            Network = Network.Length == 0 ? NetworkConfig.Default : JsonSerializer.Deserialize(Network, CoreJsonContext.Default.NetworkConfig) ?? NetworkConfig.Default,
            TrafficAccessToken = TrafficAccessToken,
            TeamId = TeamId,
        };
    }
}
