using Airlock.Core.Sandboxes;
using Airlock.Core.Store;
using Airlock.Core.Templates;

namespace Airlock.Core.Tests.Store;

public sealed class SqliteSandboxStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("al-store-").FullName;

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_dir, recursive: true);
    }

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
    };

    [Fact]
    public async Task InsertGetUpdateDelete_RoundTrips()
    {
        var ct = TestContext.Current.CancellationToken;
        var store = new SqliteSandboxStore(Path.Combine(_dir, "a.db"));
        await store.InitializeAsync(ct);
        await store.InsertAsync(Record("one"), ct);
        var got = await store.GetAsync("one", ct);
        Assert.NotNull(got);
        Assert.Equal("v", got.Metadata["k"]);
        Assert.Equal("b", got.Env["A"]);
        Assert.Equal(2, got.Cpus);
        Assert.Equal(42, got.InitPid);
        Assert.Equal(Record("one").ExpiresAt, got.ExpiresAt);

        got.State = SandboxState.Stopping;
        got.ExpiresAt = got.ExpiresAt.AddMinutes(1);
        await store.UpdateAsync(got, ct);
        var updated = await store.GetAsync("one", ct);
        Assert.Equal(SandboxState.Stopping, updated!.State);
        Assert.Equal(got.ExpiresAt, updated.ExpiresAt);

        await store.DeleteAsync("one", ct);
        Assert.Null(await store.GetAsync("one", ct));
        Assert.Empty(await store.ListAsync(ct));
    }

    [Fact]
    public async Task Initialize_Twice_KeepsDataAndSchema()
    {
        var ct = TestContext.Current.CancellationToken;
        var path = Path.Combine(_dir, "b.db");
        var store = new SqliteSandboxStore(path);
        await store.InitializeAsync(ct);
        await store.InsertAsync(Record("keep"), ct);
        await store.UpsertTemplateAsync(new TemplateRecord("base", "h1", TemplateStatus.Building, null, DateTimeOffset.UnixEpoch), ct);
        await store.UpsertTemplateAsync(new TemplateRecord("base", "h1", TemplateStatus.Ready, null, DateTimeOffset.UnixEpoch), ct);

        var again = new SqliteSandboxStore(path);
        await again.InitializeAsync(ct);
        Assert.Single(await again.ListAsync(ct));
        var template = Assert.Single(await again.ListTemplatesAsync(ct));
        Assert.Equal(TemplateStatus.Ready, template.Status);
    }
}
