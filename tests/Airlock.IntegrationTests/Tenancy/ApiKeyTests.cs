using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>Keys: shown once, stored hashed, listed by prefix, revocable at once, expiring, scoped.</summary>
public sealed class ApiKeyTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task CreateKey_ContractAndListing_SecretShownOnceWithPrefix()
    {
        var team = await Server.NewTeamAsync();
        using var response = await Server.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/api-keys", new { name = "ci", scopes = new[] { "sandboxes:read" }, expiresAt = (DateTimeOffset?)null });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = await response.JsonAsync();
        var key = created.GetProperty("key").GetString()!;
        Assert.Matches("^e2b_[0-9a-f]{40}$", key);
        Assert.Equal(key[..12], created.GetProperty("prefix").GetString());

        using var client = Server.CreateClient(key);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);

        var listText = await team.Client.GetStringAsync($"/v1/teams/{team.Id}/api-keys");
        Assert.DoesNotContain(key, listText);
        var listed = JsonDocument.Parse(listText).RootElement.EnumerateArray().Single(k => k.GetProperty("id").GetString() == created.GetProperty("id").GetString());
        Assert.Equal("ci", listed.GetProperty("name").GetString());
        Assert.Equal(key[..12], listed.GetProperty("prefix").GetString());
        Assert.Equal(["sandboxes:read"], listed.GetProperty("scopes").EnumerateArray().Select(s => s.GetString()!).ToArray());
        Assert.NotEqual(JsonValueKind.Null, listed.GetProperty("lastUsedAt").ValueKind);
        Assert.False(string.IsNullOrEmpty(listed.GetProperty("createdBy").GetString()));

        // Only hashes are stored: the secret appears nowhere in the data directory (SQLite) nor the log.
        Assert.DoesNotContain(key, Server.Log);
        foreach (var file in Directory.EnumerateFiles(Server.DataDir, "airlock.db*"))
        {
            var bytes = await File.ReadAllBytesAsync(file);
            Assert.DoesNotContain(key, System.Text.Encoding.ASCII.GetString(bytes));
        }
    }

    [Fact]
    public async Task RevokedKey_AnyRoute_Answers401AtOnce()
    {
        var team = await Server.NewTeamAsync();
        var (keyId, key) = await team.Client.NewKeyAsync(team.Id, ["sandboxes:read", "sandboxes:write"]);
        using var client = Server.CreateClient(key);
        using var e2b = Server.E2bClient(key);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await e2b.SendAsync(HttpMethod.Get, "/v2/sandboxes")).StatusCode);

        using var revoke = await team.Client.SendAsync(HttpMethod.Delete, $"/v1/api-keys/{keyId}");
        Assert.Equal(HttpStatusCode.NoContent, revoke.StatusCode);

        await (await client.SendAsync(HttpMethod.Get, "/v1/sandboxes")).ExpectProblemAsync(HttpStatusCode.Unauthorized, "unauthorized");
        await (await client.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { })).ExpectProblemAsync(HttpStatusCode.Unauthorized, "unauthorized");
        using var e2bList = await e2b.SendAsync(HttpMethod.Get, "/v2/sandboxes");
        Assert.Equal(HttpStatusCode.Unauthorized, e2bList.StatusCode);
        Assert.Equal(401, (await e2bList.JsonAsync()).GetProperty("code").GetInt32());
        // Revoking twice: it is gone.
        Assert.Equal(HttpStatusCode.NotFound, (await team.Client.SendAsync(HttpMethod.Delete, $"/v1/api-keys/{keyId}")).StatusCode);
        Assert.DoesNotContain(keyId, await team.Client.GetStringAsync($"/v1/teams/{team.Id}/api-keys"));
    }

    [Fact]
    public async Task ExpiredKey_AfterExpiry_Answers401()
    {
        var team = await Server.NewTeamAsync();
        var (_, key) = await team.Client.NewKeyAsync(team.Id, ["sandboxes:read"], DateTimeOffset.UtcNow.AddSeconds(2));
        using var client = Server.CreateClient(key);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);
        await Task.Delay(TimeSpan.FromSeconds(2.5), TestContext.Current.CancellationToken);
        await (await client.SendAsync(HttpMethod.Get, "/v1/sandboxes")).ExpectProblemAsync(HttpStatusCode.Unauthorized, "unauthorized");
        using var e2b = Server.E2bClient(key);
        Assert.Equal(HttpStatusCode.Unauthorized, (await e2b.SendAsync(HttpMethod.Get, "/v2/sandboxes")).StatusCode);
    }

    [Fact]
    public async Task WrongOrMissingKey_Answers401()
    {
        using var wrong = Server.CreateClient("e2b_" + new string('0', 40));
        await (await wrong.SendAsync(HttpMethod.Get, "/v1/sandboxes")).ExpectProblemAsync(HttpStatusCode.Unauthorized, "unauthorized");
        using var none = Server.CreateClient(null);
        await (await none.SendAsync(HttpMethod.Get, "/v1/teams")).ExpectProblemAsync(HttpStatusCode.Unauthorized, "unauthorized");
        Assert.Equal(HttpStatusCode.Unauthorized, (await none.SendAsync(HttpMethod.Get, "/v2/sandboxes")).StatusCode);
    }

    [Fact]
    public async Task ReadOnlyKey_WriteRoutes_Answer403InsufficientScope()
    {
        var team = await Server.NewTeamAsync();
        var (_, readKey) = await team.Client.NewKeyAsync(team.Id, ["sandboxes:read"]);
        using var reader = Server.CreateClient(readKey);
        using var readerE2b = Server.E2bClient(readKey);
        try
        {
            var id = await team.Client.CreateSandboxAsync();

            // Reads work, without the envd access token (it would grant exec).
            using var get = await reader.SendAsync(HttpMethod.Get, $"/v1/sandboxes/{id}");
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(JsonValueKind.Null, (await get.JsonAsync()).GetProperty("envdAccessToken").ValueKind);
            using var e2bGet = await readerE2b.SendAsync(HttpMethod.Get, $"/sandboxes/{id}");
            Assert.Equal(HttpStatusCode.OK, e2bGet.StatusCode);
            Assert.Equal(JsonValueKind.Null, (await e2bGet.JsonAsync()).GetProperty("envdAccessToken").ValueKind);
            Assert.Equal(HttpStatusCode.OK, (await reader.SendAsync(HttpMethod.Get, $"/v1/sandboxes/{id}/files?path=/etc/hostname")).StatusCode);

            (HttpMethod Method, string Path, object? Body)[] writes =
            [
                (HttpMethod.Post, "/v1/sandboxes", new { }),
                (HttpMethod.Delete, $"/v1/sandboxes/{id}", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/exec", new { cmd = "true" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes", new { cmd = "true" }),
                (HttpMethod.Put, $"/v1/sandboxes/{id}/files?path=/tmp/x", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/timeout", new { timeoutSeconds = 60 }),
                (HttpMethod.Put, $"/v1/sandboxes/{id}/network", new { mode = "internet" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes/1/stdin", null),
                (HttpMethod.Delete, $"/v1/sandboxes/{id}/processes/1/stdin", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes/1/signal", new { signal = "SIGKILL" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes/1/resize", new { cols = 80, rows = 24 }),
                (HttpMethod.Delete, $"/v1/sandboxes/{id}/files?path=/etc/hostname", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/files/mkdir", new { path = "/tmp/d" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/files/move", new { source = "/etc/hostname", destination = "/tmp/h" }),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/processes/1/pty", null),
                (HttpMethod.Get, "/v1/audit", null),
            ];
            foreach (var (method, path, body) in writes)
            {
                using var response = await reader.SendAsync(method, path, body);
                await response.ExpectProblemAsync(HttpStatusCode.Forbidden, "insufficient_scope");
            }

            foreach (var (method, path) in new[] { (HttpMethod.Post, "/v2/sandboxes"), (HttpMethod.Post, $"/sandboxes/{id}/connect"), (HttpMethod.Delete, $"/sandboxes/{id}") })
            {
                using var response = await readerE2b.SendAsync(method, path, new { templateID = "base" });
                Assert.True(response.StatusCode == HttpStatusCode.Forbidden, $"{method} {path}: {(int)response.StatusCode}");
                Assert.Equal(403, (await response.JsonAsync()).GetProperty("code").GetInt32());
            }

            // Without team:admin: no keys (and a key can never mint scopes it lacks).
            await (await reader.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/api-keys", new { name = "x" })).ExpectProblemAsync(HttpStatusCode.Forbidden, "insufficient_scope");
            var (_, adminNoWrite) = await team.Client.NewKeyAsync(team.Id, ["team:admin"]);
            using var limitedAdmin = Server.CreateClient(adminNoWrite);
            await (await limitedAdmin.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/api-keys", new { name = "x", scopes = new[] { "sandboxes:write" } })).ExpectProblemAsync(HttpStatusCode.Forbidden, "insufficient_scope");

            // Only the instance admin makes teams and sets quotas.
            await (await team.Client.SendAsync(HttpMethod.Post, "/v1/teams", new { name = "x" })).ExpectProblemAsync(HttpStatusCode.Forbidden, "instance_admin_required");
            await (await team.Client.SendAsync(HttpMethod.Put, $"/v1/teams/{team.Id}/quota", new { maxCpus = 64 })).ExpectProblemAsync(HttpStatusCode.Forbidden, "instance_admin_required");
        }
        finally
        {
            await team.CleanupAsync();
        }
    }

    [Fact]
    public async Task UnknownScope_Answers400()
    {
        var team = await Server.NewTeamAsync();
        await (await team.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/api-keys", new { name = "x", scopes = new[] { "root" } })).ExpectProblemAsync(HttpStatusCode.BadRequest, "invalid_argument");
    }
}
