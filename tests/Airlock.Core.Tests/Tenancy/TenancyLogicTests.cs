using Airlock.Core.Sandboxes;
using Airlock.Core.Store;
using Airlock.Core.Tenancy;
using Airlock.Core.Tests.Store;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Tests.Tenancy;

public sealed class TenancyLogicTests
{
    private static readonly DateTimeOffset s_start = new(2025, 3, 15, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void PasswordHasher_VerifiesOnlyTheRightPassword_WithPerUserSalt()
    {
        var a = PasswordHasher.Hash("hunter2hunter2", 1000);
        var b = PasswordHasher.Hash("hunter2hunter2", 1000);
        Assert.StartsWith("pbkdf2-sha256$1000$", a);
        Assert.NotEqual(a, b);
        Assert.True(PasswordHasher.Verify("hunter2hunter2", a));
        Assert.False(PasswordHasher.Verify("hunter2hunter3", a));
        Assert.False(PasswordHasher.Verify("hunter2hunter2", "plain"));
    }

    [Fact]
    public void RateLimiter_AllowsAMinutesWorth_ThenRefillsWithRetryAfter()
    {
        var time = new ManualTime(s_start);
        var limiter = new RateLimiter(time);
        for (var i = 0; i < 60; i++)
        {
            Assert.Null(limiter.TryAcquire("k", 60));
        }

        Assert.Equal(1, limiter.TryAcquire("k", 60));
        Assert.Null(limiter.TryAcquire("other", 60));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(limiter.TryAcquire("k", 60));
        Assert.Equal(1, limiter.TryAcquire("k", 60));
        Assert.Null(limiter.TryAcquire("k", 0));

        for (var i = 0; i < 2; i++)
        {
            limiter.TryAcquire("slow", 2);
        }

        Assert.Equal(30, limiter.TryAcquire("slow", 2));
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task Keys_ValidatedFromCache_RevokeAtOnce_ExpiryAndStaleness(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var (tenancy, store, time) = await TenancyAsync(db.Database, ct);
        await tenancy.InitializeAsync("e2b_" + new string('a', 40), ct);
        var admin = await tenancy.AuthenticateAsync("e2b_" + new string('a', 40), ct);
        Assert.True(admin!.InstanceAdmin);
        var caller = new Caller(CallerKind.ApiKey, admin.TeamId, admin.Scopes, true, admin.Id, admin.Prefix, null);

        var team = await tenancy.CreateTeamAsync(caller, "t", ct);
        var (row, secret) = await tenancy.CreateKeyAsync(caller, team.Id, "k", ["sandboxes:read"], s_start.AddMinutes(10), ct);
        Assert.Equal(Scopes.SandboxesRead, (await tenancy.AuthenticateAsync(secret, ct))!.Scopes);
        Assert.NotEqual(secret, row.Hash);

        // Another server revokes it in the shared store: this one notices within the cache TTL.
        await store.RevokeKeyAsync(row.Id, 1, ct);
        Assert.NotNull(await tenancy.AuthenticateAsync(secret, ct));
        time.Advance(TimeSpan.FromSeconds(11));
        Assert.Null(await tenancy.AuthenticateAsync(secret, ct));

        // Revoked here: at once.
        var (row2, secret2) = await tenancy.CreateKeyAsync(caller, team.Id, "k2", null, null, ct);
        Assert.NotNull(await tenancy.AuthenticateAsync(secret2, ct));
        await tenancy.RevokeKeyAsync(caller, row2.Id, ct);
        Assert.Null(await tenancy.AuthenticateAsync(secret2, ct));

        // Expiry.
        var (_, secret3) = await tenancy.CreateKeyAsync(caller, team.Id, "k3", null, time.GetUtcNow().AddMinutes(1), ct);
        Assert.NotNull(await tenancy.AuthenticateAsync(secret3, ct));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Null(await tenancy.AuthenticateAsync(secret3, ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task AuthenticateAsync_LookupThatReadTheKeyBeforeARevoke_NeverCachesItAsValid(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var (tenancy, store, time) = await TenancyAsync(db.Database, ct);
        await tenancy.InitializeAsync("e2b_" + new string('a', 40), ct);
        var admin = (await tenancy.AuthenticateAsync("e2b_" + new string('a', 40), ct))!;
        var caller = new Caller(CallerKind.ApiKey, admin.TeamId, admin.Scopes, true, admin.Id, admin.Prefix, null);
        var (row, secret) = await tenancy.CreateKeyAsync(caller, admin.TeamId, "k", null, null, ct);

        // The interleaving, step by step: a lookup (cache miss) reads the row while it is valid...
        var generation = tenancy.RevocationGeneration;
        var read = (await store.GetKeyByHashAsync(row.Hash, ct))!;
        var stale = new ValidKey(read.Id, read.TeamId, read.Prefix, ScopeNames.ParseStored(read.Scopes), false, read.ExpiresAt);
        // ...the key is revoked here...
        await tenancy.RevokeKeyAsync(caller, row.Id, ct);
        // ...and only then does the lookup store what it read.
        tenancy.CacheLoaded(row.Hash, stale, generation, time.GetTimestamp());

        Assert.Null(await tenancy.AuthenticateAsync(secret, ct));
    }

    [Fact]
    public async Task AuthenticateAsync_FloodOfUnknownKeys_DoesNotEvictValidKeys()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync("sqlite", ct);
        var (tenancy, store, _) = await TenancyAsync(db.Database, ct);
        await tenancy.InitializeAsync("e2b_" + new string('a', 40), ct);
        var admin = (await tenancy.AuthenticateAsync("e2b_" + new string('a', 40), ct))!;
        var caller = new Caller(CallerKind.ApiKey, admin.TeamId, admin.Scopes, true, admin.Id, admin.Prefix, null);
        var (row, secret) = await tenancy.CreateKeyAsync(caller, admin.TeamId, "k", null, null, ct);
        Assert.NotNull(await tenancy.AuthenticateAsync(secret, ct));

        // Revoked behind this server's back (another server on the same store): only a re-read notices,
        // so the key still authenticating proves its cache entry survived.
        await store.RevokeKeyAsync(row.Id, 1, ct);
        // More guesses than any cache bound (each distinct one is a query and an entry).
        for (var i = 0; i <= 100_000; i++)
        {
            Assert.Null(await tenancy.AuthenticateAsync($"e2b_guess{i}", ct));
        }

        Assert.NotNull(await tenancy.AuthenticateAsync(secret, ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabase.Kinds), MemberType = typeof(TestDatabase))]
    public async Task QuotaLedger_ConcurrencyHoursAndMonthlyReset(string kind)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabase.CreateAsync(kind, ct);
        var (tenancy, store, time) = await TenancyAsync(db.Database, ct);
        await store.InsertTeamAsync(new TeamRow { Id = "t", Name = "t", Plan = "free", CreatedAt = 0 }, cancellationToken: ct);
        await store.UpdateQuotaAsync("t", "free", new QuotaLimits { MaxConcurrentSandboxes = 1, MonthlySandboxHours = 1 }, ct);
        var ledger = new QuotaLedger(tenancy, store, time, NullLogger<QuotaLedger>.Instance);

        using (await ledger.ReserveAsync("t", 1, 512, 60, ct))
        {
            // The slot is held while the first create is in flight.
            var refused = await Assert.ThrowsAsync<AirlockException>(async () => await ledger.ReserveAsync("t", 1, 512, 60, ct));
            Assert.Equal("quota_concurrent_sandboxes", refused.Code);
            ledger.Track(Record("s1"));
        }

        Assert.Equal("quota_concurrent_sandboxes", (await Assert.ThrowsAsync<AirlockException>(async () => await ledger.ReserveAsync("t", 1, 512, 60, ct))).Code);
        Assert.Equal("quota_cpus", (await Assert.ThrowsAsync<AirlockException>(async () => await ledger.ReserveAsync("t", 3, 512, 60, ct))).Code);

        // 50 minutes metered and flushed, then 15 more at stop: over the hour.
        time.Advance(TimeSpan.FromMinutes(50));
        await ledger.FlushAsync(ct);
        Assert.Equal(50 * 60_000, await store.GetUsageAsync("t", "2025-04", ct) + await store.GetUsageAsync("t", "2025-03", ct));
        Assert.Empty(await ledger.TeamsOverHoursAsync(ct));
        time.Advance(TimeSpan.FromMinutes(15));
        Assert.Equal([("t", 1.0)], await ledger.TeamsOverHoursAsync(ct));
        ledger.Untrack(Record("s1"));
        await ledger.FlushAsync(ct);
        Assert.Equal("quota_sandbox_hours", (await Assert.ThrowsAsync<AirlockException>(async () => await ledger.ReserveAsync("t", 1, 512, 60, ct))).Code);

        // A new month starts from zero.
        time.Advance(TimeSpan.FromDays(31));
        using (await ledger.ReserveAsync("t", 1, 512, 60, ct))
        {
        }
    }

    private static SandboxRecord Record(string id) => new() { Id = id, Template = "base", TeamId = "t" };

    private static async Task<(TenancyService, SqlTenancyStore, ManualTime)> TenancyAsync(Database database, CancellationToken ct)
    {
        var store = new SqlTenancyStore(database);
        await store.InitializeAsync(ct);
        var time = new ManualTime(s_start);
        var audit = new AuditLog(store, time, NullLogger<AuditLog>.Instance);
        var tenancy = new TenancyService(store, audit, Options.Create(new TenancyOptions()), Options.Create(new PlanOptions()), time, NullLogger<TenancyService>.Instance);
        return (tenancy, store, time);
    }
}
