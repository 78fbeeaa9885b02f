using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>The audit log records who did what, from where; each team reads only its own.</summary>
public sealed class AuditTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task CreateExecKill_AreRecordedWithKeyAndAddress_NewestFirst()
    {
        var team = await Server.NewTeamAsync();
        var id = await team.Client.CreateSandboxAsync();
        await team.Client.ExecAsync(id, "echo audited");
        using (var started = await team.Client.SendAsync(HttpMethod.Post, $"/v1/sandboxes/{id}/processes", new { cmd = "sleep", args = new[] { "1" } }))
        {
            Assert.Equal(HttpStatusCode.Created, started.StatusCode);
        }

        Assert.Equal(HttpStatusCode.NoContent, (await team.Client.SendAsync(HttpMethod.Post, $"/v1/sandboxes/{id}/timeout", new { timeoutSeconds = 100 })).StatusCode);
        await team.Client.DeleteSandboxAsync(id);

        var page = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/audit?sandboxId={id}");
        var events = page.GetProperty("events").EnumerateArray().ToList();
        Assert.Equal(["sandbox.kill", "sandbox.timeout", "process.start", "process.start", "sandbox.create"], events.Select(e => e.GetProperty("action").GetString()!).ToArray());
        foreach (var e in events)
        {
            Assert.Equal("key", e.GetProperty("actorType").GetString());
            Assert.Equal(team.KeyId, e.GetProperty("actorId").GetString());
            Assert.Equal(team.Key[..12], e.GetProperty("actorLabel").GetString());
            Assert.Equal("127.0.0.1", e.GetProperty("remoteAddress").GetString());
            Assert.Equal(team.Id, e.GetProperty("teamId").GetString());
        }

        Assert.Contains("echo audited", events[3].GetProperty("detail").GetString());
        Assert.Contains("sleep 1", events[2].GetProperty("detail").GetString());
        Assert.Null(page.GetProperty("nextCursor").GetString());

        // Another team sees none of it.
        var other = await Server.NewTeamAsync();
        var theirs = await other.Client.GetFromJsonAsync<JsonElement>($"/v1/audit?sandboxId={id}");
        Assert.Empty(theirs.GetProperty("events").EnumerateArray());
    }

    [Fact]
    public async Task Audit_Paging_CursorWalksAllEventsOnce()
    {
        var team = await Server.NewTeamAsync();
        for (var i = 0; i < 5; i++)
        {
            await team.Client.NewKeyAsync(team.Id, ["sandboxes:read"], name: "k" + i);
        }

        var seen = new List<string>();
        string? cursor = null;
        do
        {
            var page = await team.Client.GetFromJsonAsync<JsonElement>("/v1/audit?action=apikey.create&limit=2" + (cursor is null ? "" : "&cursor=" + cursor));
            var events = page.GetProperty("events").EnumerateArray().ToList();
            Assert.True(events.Count <= 2);
            seen.AddRange(events.Select(e => e.GetProperty("id").GetString()!));
            cursor = page.GetProperty("nextCursor").GetString();
        }
        while (cursor is not null);

        // The team's first key (made by the admin) plus five.
        Assert.Equal(6, seen.Count);
        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.Equal(seen.OrderByDescending(long.Parse), seen);

        var none = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/audit?since={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddHours(1).ToString("O"))}");
        Assert.Empty(none.GetProperty("events").EnumerateArray());
        await (await team.Client.SendAsync(HttpMethod.Get, "/v1/audit?limit=0")).ExpectProblemAsync(HttpStatusCode.BadRequest, "invalid_argument");
    }

    [Fact]
    public async Task E2bProcessStart_IsRecordedAsTheSandboxToken()
    {
        var team = await Server.NewTeamAsync();
        try
        {
            using var created = await team.E2b.SendAsync(HttpMethod.Post, "/sandboxes", new { templateID = "code-interpreter-v1", timeout = 120 });
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var sandbox = await created.JsonAsync();
            var id = sandbox.GetProperty("sandboxID").GetString()!;
            using var ci = Server.CreateClient(null);
            ci.DefaultRequestHeaders.Add("E2b-Sandbox-Id", id);
            ci.DefaultRequestHeaders.Add("E2b-Sandbox-Port", "49999");
            ci.DefaultRequestHeaders.Add("X-Access-Token", sandbox.GetProperty("envdAccessToken").GetString());
            using var cts = Api.NewTimeout();
            using var run = await ci.PostAsync("/execute", Api.Json(new { code = "1+1" }), cts.Token);
            Assert.Equal(HttpStatusCode.OK, run.StatusCode);
            await run.Content.ReadAsStringAsync(cts.Token);

            var page = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/audit?action=process.start&sandboxId={id}");
            var e = page.GetProperty("events").EnumerateArray().First();
            Assert.Equal("sandbox", e.GetProperty("actorType").GetString());
            Assert.Equal(id, e.GetProperty("actorId").GetString());
            Assert.Equal("127.0.0.1", e.GetProperty("remoteAddress").GetString());
        }
        finally
        {
            await team.CleanupAsync();
        }
    }
}
