using Airlock.Core.Store;
using Airlock.Core.Tenancy;
using Airlock.Core.Tests.Store;

namespace Airlock.Core.Tests.Tenancy;

/// <summary>The tenancy store on both databases: the same SQL must behave the same.</summary>
public sealed class SqlTenancyStoreTests
{
    private static async Task<(TestDatabase Db, SqlTenancyStore Store)> OpenAsync(string kind, CancellationToken ct)
    {
        var db = await TestDatabase.CreateAsync(kind, ct);
        var store = new SqlTenancyStore(db.Database);
        await store.InitializeAsync(ct);
        return (db, store);
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task TeamsAndKeys_RoundTrip_RevokeOnce(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, store) = await OpenAsync(kind, ct);
        await using var _ = db;
        Assert.True(await store.InsertTeamAsync(new TeamRow { Id = "t1", Name = "one", Plan = "free", CreatedAt = 1 }, cancellationToken: ct));
        Assert.False(await store.InsertTeamAsync(new TeamRow { Id = "t1", Name = "again", Plan = "free", CreatedAt = 2 }, ignoreExisting: true, ct));
        await store.UpdateQuotaAsync("t1", "pro", new QuotaLimits { MaxCpus = 3, MonthlySandboxHours = 0.5 }, ct);
        var team = await store.GetTeamAsync("t1", ct);
        Assert.Equal("one", team!.Name);
        Assert.Equal("pro", team.Plan);
        Assert.Equal(3, team.MaxCpus);
        Assert.Equal(0.5, team.MonthlySandboxHours);
        Assert.Null(team.MaxMemoryMb);

        var key = new ApiKeyRow { Id = "k1", TeamId = "t1", Name = "ci", Prefix = "e2b_01234567", Hash = "h1", Scopes = "sandboxes:read", CreatedAt = 5, ExpiresAt = 99 };
        await store.InsertKeyAsync(key, ct);
        var byHash = await store.GetKeyByHashAsync("h1", ct);
        Assert.Equal("k1", byHash!.Id);
        Assert.Equal(99, byHash.ExpiresAt);
        Assert.Equal(0, byHash.InstanceAdmin);
        await store.UpdateLastUsedAsync([("k1", 42)], ct);
        Assert.Equal(42, (await store.GetKeyAsync("k1", ct))!.LastUsedAt);
        Assert.True(await store.RevokeKeyAsync("k1", 7, ct));
        Assert.False(await store.RevokeKeyAsync("k1", 8, ct));
        Assert.Equal(7, (await store.GetKeyByHashAsync("h1", ct))!.RevokedAt);
        Assert.Empty(await store.ListKeysAsync("t1", ct));

        // The bootstrap key follows its configured secret and is never left revoked.
        await store.UpsertKeyAsync(new ApiKeyRow { Id = "boot", TeamId = "t1", Name = "b", Prefix = "p", Hash = "old", Scopes = "team:admin", InstanceAdmin = 1, CreatedAt = 1 }, ct);
        await store.UpsertKeyAsync(new ApiKeyRow { Id = "boot", TeamId = "t1", Name = "b", Prefix = "p2", Hash = "new", Scopes = "team:admin", InstanceAdmin = 1, CreatedAt = 1 }, ct);
        Assert.Null(await store.GetKeyByHashAsync("old", ct));
        Assert.Equal("p2", (await store.GetKeyByHashAsync("new", ct))!.Prefix);
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task Usage_AddsUpPerTeamAndMonth(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, store) = await OpenAsync(kind, ct);
        await using var _ = db;
        await store.AddUsageAsync([("t1", "2025-01", 1000), ("t2", "2025-01", 5)], ct);
        await store.AddUsageAsync([("t1", "2025-01", 500), ("t1", "2025-02", 7)], ct);
        Assert.Equal(1500, await store.GetUsageAsync("t1", "2025-01", ct));
        Assert.Equal(7, await store.GetUsageAsync("t1", "2025-02", ct));
        Assert.Equal(5, await store.GetUsageAsync("t2", "2025-01", ct));
        Assert.Equal(0, await store.GetUsageAsync("t3", "2025-01", ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task Audit_AppendsAndPagesNewestFirstPerTeam(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, store) = await OpenAsync(kind, ct);
        await using var _ = db;
        var events = Enumerable.Range(1, 5).Select(i => new AuditEvent
        {
            TeamId = i == 3 ? "other" : "t1", At = i * 1000, ActorType = "key", ActorId = "k1", ActorLabel = "e2b_0000", Action = i % 2 == 0 ? "sandbox.kill" : "sandbox.create",
            Target = "sb" + i, Detail = "d", RemoteAddress = "127.0.0.1",
        }).ToList();
        await store.AppendAuditAsync(events, ct);

        var first = await store.QueryAuditAsync(new AuditQuery("t1", 2, null, null, null, null, null), ct);
        Assert.Equal(["sb5", "sb4"], first.Select(e => e.Target!).ToArray());
        var second = await store.QueryAuditAsync(new AuditQuery("t1", 2, first[^1].Id, null, null, null, null), ct);
        Assert.Equal(["sb2", "sb1"], second.Select(e => e.Target!).ToArray());
        Assert.Equal(["sb4", "sb2"], (await store.QueryAuditAsync(new AuditQuery("t1", 10, null, "sandbox.kill", null, null, null), ct)).Select(e => e.Target!).ToArray());
        Assert.Equal(["sb4"], (await store.QueryAuditAsync(new AuditQuery("t1", 10, null, null, "sb4", null, null), ct)).Select(e => e.Target!).ToArray());
        Assert.Equal(["sb4", "sb2"], (await store.QueryAuditAsync(new AuditQuery("t1", 10, null, null, null, 2000, 5000), ct)).Select(e => e.Target!).ToArray());
        Assert.Equal("127.0.0.1", first[0].RemoteAddress);
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task UsersMembersSessionsInvitations_RoundTrip(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        var (db, store) = await OpenAsync(kind, ct);
        await using var _ = db;
        await store.InsertUserAsync(new UserRow { Id = "u1", Email = "a@example.com", PasswordHash = "x", CreatedAt = 1 }, ct);
        await store.UpsertMemberAsync("t1", "u1", "member", 1, ct);
        await store.UpsertMemberAsync("t1", "u1", "admin", 2, ct);
        await store.UpsertMemberAsync("t2", "u1", "viewer", 3, ct);
        Assert.Equal("admin", Assert.Single(await store.ListMembersAsync("t1", ct)).Role);
        Assert.Equal(["t1", "t2"], (await store.ListMembershipsAsync("u1", ct)).Select(m => m.TeamId).ToArray());
        Assert.True(await store.RemoveMemberAsync("t2", "u1", ct));
        Assert.False(await store.RemoveMemberAsync("t2", "u1", ct));

        await store.InsertSessionAsync(new SessionRow { Hash = "s", UserId = "u1", CsrfHash = "c", CreatedAt = 1, ExpiresAt = 2 }, ct);
        Assert.Equal("u1", (await store.GetSessionAsync("s", ct))!.UserId);
        await store.DeleteSessionAsync("s", ct);
        Assert.Null(await store.GetSessionAsync("s", ct));

        await store.InsertInvitationAsync(new InvitationRow { Id = "i1", Hash = "ih", TeamId = "t1", Email = "b@example.com", Role = "viewer", CreatedAt = 1, ExpiresAt = 10 }, ct);
        Assert.Equal("viewer", (await store.GetInvitationByHashAsync("ih", ct))!.Role);
        Assert.True(await store.MarkInvitationAcceptedAsync("i1", 5, ct));
        Assert.False(await store.MarkInvitationAcceptedAsync("i1", 6, ct));
    }
}
