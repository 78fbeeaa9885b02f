using Airlock.Core.Sandboxes;
using Airlock.Core.Store;
using Airlock.Core.Templates;
using Dapper;

namespace Airlock.Core.Tests.Store;

public sealed class SqlSandboxStoreTests
{
    private static SandboxRecord Record(string id) => new()
    {
        Id = id,
        Template = "base",
        State = SandboxState.Running,
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000),
        ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_300_000),
        Metadata = new() { ["k"] = "v" },
        Env = new() { ["A"] = "b" },
        Cpus = 2,
        MemoryMb = 256,
        DiskMb = 64,
        InitPid = 42,
        InitStartTime = 123,
        AccessToken = "token",
    };

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task InsertGetUpdateDelete_RoundTrips(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var store = new SqlSandboxStore(db.Database);
        await store.InitializeAsync(ct);
        await store.InsertAsync(Record("one"), ct);
        var got = await store.GetAsync("one", ct);
        Assert.NotNull(got);
        Assert.Equal("v", got.Metadata["k"]);
        Assert.Equal("b", got.Env["A"]);
        Assert.Equal(2, got.Cpus);
        Assert.Equal(42, got.InitPid);
        Assert.Equal(123, got.InitStartTime);
        Assert.Equal("token", got.AccessToken);
        Assert.Equal(Record("one").ExpiresAt, got.ExpiresAt);

        got.State = SandboxState.Stopping;
        got.ExpiresAt = got.ExpiresAt.AddMinutes(1);
        got.Metadata["k"] = "claimed"; // a warm-pool claim rewrites the whole record through UpdateAsync
        await store.UpdateAsync(got, ct);
        var updated = await store.GetAsync("one", ct);
        Assert.Equal(SandboxState.Stopping, updated!.State);
        Assert.Equal("claimed", updated.Metadata["k"]);
        Assert.Equal(got.ExpiresAt, updated.ExpiresAt);

        await store.DeleteAsync("one", ct);
        Assert.Null(await store.GetAsync("one", ct));
        Assert.Empty(await store.ListAsync(ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task Update_ClaimOfPooledRecord_WritesEveryColumnButNode(string kind)
    {
        // A warm-pool claim replaces a Pooled record by the request's in one UpdateAsync: a column it
        // forgets keeps the pooled value (no team: nobody could see the sandbox; the pool's token).
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var store = new SqlSandboxStore(db.Database, "node-a");
        await store.InitializeAsync(ct);
        await store.InsertAsync(
            new SandboxRecord
            {
                Id = "one",
                Template = "base",
                State = SandboxState.Pooled,
                CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000),
                ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000),
                Cpus = 1,
                MemoryMb = 512,
                DiskMb = 1024,
                InitPid = 10,
                InitStartTime = 20,
                AccessToken = "pool-token",
            },
            ct);

        var claimed = new SandboxRecord
        {
            Id = "one",
            Template = "other",
            State = SandboxState.Running,
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_500_000),
            ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_800_000),
            Metadata = new() { ["k"] = "claimed" },
            Env = new() { ["A"] = "b" },
            Cpus = 2,
            MemoryMb = 256,
            DiskMb = 64,
            InitPid = 42,
            InitStartTime = 123,
            AccessToken = "claimed-token",
            Network = new NetworkConfig { Mode = NetworkMode.Internet, Allow = ["10.0.0.0/8"], Deny = ["example.com"], AllowPublicTraffic = false },
            TrafficAccessToken = "traffic-token",
            TeamId = "team-a",
        };
        await store.UpdateAsync(claimed, ct);

        var got = Assert.Single(await store.ListAsync(ct)); // still this node's
        Assert.Equal("one", got.Id);
        Assert.Equal("other", got.Template);
        Assert.Equal(SandboxState.Running, got.State);
        Assert.Equal(claimed.CreatedAt, got.CreatedAt);
        Assert.Equal(claimed.ExpiresAt, got.ExpiresAt);
        Assert.Equal(claimed.Metadata, got.Metadata);
        Assert.Equal(claimed.Env, got.Env);
        Assert.Equal((2, 256, 64), (got.Cpus, got.MemoryMb, got.DiskMb));
        Assert.Equal((42, 123L), (got.InitPid, got.InitStartTime));
        Assert.Equal("claimed-token", got.AccessToken);
        Assert.Equal(NetworkMode.Internet, got.Network.Mode);
        Assert.Equal(["10.0.0.0/8"], got.Network.Allow);
        Assert.Equal(["example.com"], got.Network.Deny);
        Assert.False(got.Network.AllowPublicTraffic);
        Assert.Equal("traffic-token", got.TrafficAccessToken);
        Assert.Equal("team-a", got.TeamId);
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task Initialize_Twice_KeepsDataAndSchema(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var store = new SqlSandboxStore(db.Database);
        await store.InitializeAsync(ct);
        await store.InsertAsync(Record("keep"), ct);
        await store.UpsertTemplateAsync(new TemplateRecord("base", "h1", TemplateStatus.Building, null, DateTimeOffset.UnixEpoch), ct);
        await store.UpsertTemplateAsync(new TemplateRecord("base", "h1", TemplateStatus.Ready, null, DateTimeOffset.UnixEpoch), ct);

        var again = new SqlSandboxStore(db.Database);
        await again.InitializeAsync(ct);
        Assert.Single(await again.ListAsync(ct));
        var template = Assert.Single(await again.ListTemplatesAsync(ct));
        Assert.Equal(TemplateStatus.Ready, template.Status);
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task Migrations_ServersStartingTogether_ApplyEachOnce(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => Migrations.ApplyAsync(db.Database, ct), ct)));

        await using var connection = await db.Database.OpenAsync(ct);
        var versions = (await connection.QueryAsync<int>("SELECT version FROM schema_version ORDER BY version")).ToList();
        Assert.Equal(Enumerable.Range(1, Migrations.All.Length), versions);
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task List_ServersSharingADatabase_SeeOnlyTheirOwnSandboxes(string kind)
    {
        // Recovery reaps every listed record it cannot adopt: listing a neighbour's would kill its sandboxes' records.
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var a = new SqlSandboxStore(db.Database, "node-a");
        var b = new SqlSandboxStore(db.Database, "node-b");
        await a.InitializeAsync(ct);
        await b.InitializeAsync(ct);
        await a.InsertAsync(Record("on-a"), ct);
        await b.InsertAsync(Record("on-b"), ct);

        Assert.Equal("on-a", Assert.Single(await a.ListAsync(ct)).Id);
        Assert.Equal("on-b", Assert.Single(await b.ListAsync(ct)).Id);
    }

    [Fact]
    public void PostgresUrl_ParsesUserPasswordHostPortDatabaseAndParameters()
    {
        var b = Database.ParsePostgres("postgres://al%40ice:p%3Ass@db.example:6543/airlock_prod?sslmode=require&search_path=tenant1");
        Assert.Equal("al@ice", b.Username);
        Assert.Equal("p:ss", b.Password);
        Assert.Equal("db.example", b.Host);
        Assert.Equal(6543, b.Port);
        Assert.Equal("airlock_prod", b.Database);
        Assert.Equal(Npgsql.SslMode.Require, b.SslMode);
        Assert.Equal("tenant1", b.SearchPath);
        Assert.Throws<InvalidOperationException>(() => Database.ParsePostgres("postgres://h/db?no_such_knob=1"));
    }
}
