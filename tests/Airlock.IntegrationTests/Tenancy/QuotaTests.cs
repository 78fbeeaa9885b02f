using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>Each quota refuses at its limit with its code, naming the limit and its value.</summary>
public sealed class QuotaTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task Create_OverSizeLimits_Answers403WithLimitAndValue()
    {
        var team = await Server.NewTeamAsync();
        await Server.SetQuotaAsync(team.Id, new { maxCpus = 1, maxMemoryMb = 256, maxTimeoutSeconds = 60 });
        var cpus = await (await team.Client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { cpus = 2 })).ExpectProblemAsync(HttpStatusCode.Forbidden, "quota_cpus");
        Assert.Equal("maxCpus", cpus.GetProperty("limit").GetString());
        Assert.Equal(1, cpus.GetProperty("value").GetDouble());
        var memory = await (await team.Client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { memoryMb = 512 })).ExpectProblemAsync(HttpStatusCode.Forbidden, "quota_memory");
        Assert.Equal("maxMemoryMb", memory.GetProperty("limit").GetString());
        Assert.Equal(256, memory.GetProperty("value").GetDouble());
        var timeout = await (await team.Client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { memoryMb = 256, timeoutSeconds = 61 })).ExpectProblemAsync(HttpStatusCode.Forbidden, "quota_timeout");
        Assert.Equal(60, timeout.GetProperty("value").GetDouble());

        // E2B create: the same rule in E2B's error shape.
        using var e2b = await team.E2b.SendAsync(HttpMethod.Post, "/sandboxes", new { templateID = "base", timeout = 3600 });
        Assert.Equal(HttpStatusCode.Forbidden, e2b.StatusCode);
        Assert.Equal(403, (await e2b.JsonAsync()).GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task TimeoutExtension_OverLimit_Answers403()
    {
        var team = await Server.NewTeamAsync();
        try
        {
            await Server.SetQuotaAsync(team.Id, new { maxTimeoutSeconds = 120, maxMemoryMb = 512 });
            var id = await team.Client.CreateSandboxAsync(new { timeoutSeconds = 60 });
            Assert.Equal(HttpStatusCode.NoContent, (await team.Client.SendAsync(HttpMethod.Post, $"/v1/sandboxes/{id}/timeout", new { timeoutSeconds = 120 })).StatusCode);
            await (await team.Client.SendAsync(HttpMethod.Post, $"/v1/sandboxes/{id}/timeout", new { timeoutSeconds = 121 })).ExpectProblemAsync(HttpStatusCode.Forbidden, "quota_timeout");
            Assert.Equal(HttpStatusCode.Forbidden, (await team.E2b.SendAsync(HttpMethod.Post, $"/sandboxes/{id}/timeout", new { timeout = 3600 })).StatusCode);
        }
        finally
        {
            await team.CleanupAsync();
        }
    }

    [Fact]
    public async Task Create_AtConcurrencyLimit_Answers429AndConcurrentCreatesNeverExceedIt()
    {
        var team = await Server.NewTeamAsync();
        try
        {
            await Server.SetQuotaAsync(team.Id, new { maxConcurrentSandboxes = 2 });
            // Five at once: exactly two may pass (the check and the slot are one step).
            var attempts = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => team.Client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { })));
            Assert.Equal(2, attempts.Count(r => r.StatusCode == HttpStatusCode.Created));
            foreach (var refused in attempts.Where(r => r.StatusCode != HttpStatusCode.Created))
            {
                var problem = await refused.ExpectProblemAsync(HttpStatusCode.TooManyRequests, "quota_concurrent_sandboxes");
                Assert.Equal("maxConcurrentSandboxes", problem.GetProperty("limit").GetString());
                Assert.Equal(2, problem.GetProperty("value").GetDouble());
            }

            // A kill frees a slot.
            var first = (await attempts.First(r => r.StatusCode == HttpStatusCode.Created).JsonAsync()).GetProperty("id").GetString()!;
            await team.Client.DeleteSandboxAsync(first);
            await team.Client.CreateSandboxAsync();

            var usage = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/teams/{team.Id}/usage");
            Assert.Equal(2, usage.GetProperty("runningSandboxes").GetInt32());
        }
        finally
        {
            await team.CleanupAsync();
        }
    }

    [Fact]
    public async Task Create_NoHoursLeft_Answers403SandboxHours()
    {
        var team = await Server.NewTeamAsync();
        await Server.SetQuotaAsync(team.Id, new { monthlySandboxHours = 0 });
        var problem = await (await team.Client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { })).ExpectProblemAsync(HttpStatusCode.Forbidden, "quota_sandbox_hours");
        Assert.Equal("monthlySandboxHours", problem.GetProperty("limit").GetString());
    }

    [Fact]
    public async Task RunningSandboxes_MonthlyHoursUsedUp_AreStoppedWithReason()
    {
        var team = await Server.NewTeamAsync();
        try
        {
            // 0.001 h = 3.6 s of sandbox time for the team.
            await Server.SetQuotaAsync(team.Id, new { monthlySandboxHours = 0.001 });
            var id = await team.Client.CreateSandboxAsync();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            HttpStatusCode status;
            do
            {
                await Task.Delay(500, TestContext.Current.CancellationToken);
                status = (await team.Client.SendAsync(HttpMethod.Get, $"/v1/sandboxes/{id}")).StatusCode;
            }
            while (status == HttpStatusCode.OK && DateTime.UtcNow < deadline);
            Assert.Equal(HttpStatusCode.NotFound, status);

            var audit = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/audit?action=sandbox.stop&sandboxId={id}");
            var stop = Assert.Single(audit.GetProperty("events").EnumerateArray());
            Assert.Equal("system", stop.GetProperty("actorType").GetString());
            Assert.Contains("sandbox-hours", stop.GetProperty("detail").GetString());
            Assert.Contains($"stopping sandbox {id}", Server.Log);

            var usage = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/teams/{team.Id}/usage");
            Assert.True(usage.GetProperty("sandboxSeconds").GetDouble() >= 3.6);
            await (await team.Client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { })).ExpectProblemAsync(HttpStatusCode.Forbidden, "quota_sandbox_hours");
        }
        finally
        {
            await team.CleanupAsync();
        }
    }

    [Fact]
    public async Task GetQuota_ShowsPlanOverridesAndEffective()
    {
        var team = await Server.NewTeamAsync();
        await Server.SetQuotaAsync(team.Id, new { plan = "pro", maxCpus = 1 });
        var quota = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/teams/{team.Id}/quota");
        Assert.Equal("pro", quota.GetProperty("plan").GetString());
        Assert.Equal(1, quota.GetProperty("overrides").GetProperty("maxCpus").GetInt32());
        Assert.Equal(JsonValueKind.Null, quota.GetProperty("overrides").GetProperty("maxMemoryMb").ValueKind);
        Assert.Equal(1, quota.GetProperty("effective").GetProperty("maxCpus").GetInt32());
        Assert.Equal(50, quota.GetProperty("effective").GetProperty("maxConcurrentSandboxes").GetInt32());
        await (await Server.Client.SendAsync(HttpMethod.Put, $"/v1/teams/{team.Id}/quota", new { plan = "gold" })).ExpectProblemAsync(HttpStatusCode.BadRequest, "invalid_argument");
    }
}

/// <summary>Requests per minute per key: 429 with an integer Retry-After, in each surface's shape.</summary>
public sealed class RateLimitTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task Requests_OverPerMinuteLimit_Answer429WithRetryAfter()
    {
        var team = await Server.NewTeamAsync();
        await Server.SetQuotaAsync(team.Id, new { requestsPerMinute = 5 });
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? limited = null;
        for (var i = 0; i < 8 && limited is null; i++)
        {
            var response = await team.Client.SendAsync(HttpMethod.Get, "/v1/sandboxes");
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                limited = response;
            }
        }

        Assert.NotNull(limited);
        Assert.Equal(5, statuses.Count(s => s == HttpStatusCode.OK));
        var retryAfter = limited.Headers.GetValues("Retry-After").Single();
        Assert.Matches("^[0-9]+$", retryAfter);
        Assert.InRange(int.Parse(retryAfter), 1, 60);
        var problem = await limited.ExpectProblemAsync(HttpStatusCode.TooManyRequests, "rate_limited");
        Assert.Equal("requestsPerMinute", problem.GetProperty("limit").GetString());
        Assert.Equal(5, problem.GetProperty("value").GetDouble());

        // The E2B control plane: same bucket (per key), E2B's shape, Retry-After for the SDKs' retry.
        using var e2b = await team.E2b.SendAsync(HttpMethod.Get, "/v2/sandboxes");
        Assert.Equal(HttpStatusCode.TooManyRequests, e2b.StatusCode);
        Assert.Matches("^[0-9]+$", e2b.Headers.GetValues("Retry-After").Single());
        Assert.Equal(429, (await e2b.JsonAsync()).GetProperty("code").GetInt32());

        // Another key of the same team has its own bucket.
        var (_, other) = await Server.Client.NewKeyAsync(team.Id, ["sandboxes:read"]);
        using var otherClient = Server.CreateClient(other);
        Assert.Equal(HttpStatusCode.OK, (await otherClient.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);
    }
}
