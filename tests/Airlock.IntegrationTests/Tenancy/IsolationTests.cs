using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>One team never sees another's sandbox: 404 (never 403) on every route of every surface.</summary>
public sealed class IsolationTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task EveryNativeRoute_OtherTeamsSandbox_Answers404AndLeavesItUntouched()
    {
        var a = await Server.NewTeamAsync("a");
        var b = await Server.NewTeamAsync("b");
        try
        {
            var id = await a.Client.CreateSandboxAsync();
            var pid = (await (await a.Client.SendAsync(HttpMethod.Post, $"/v1/sandboxes/{id}/processes", new { cmd = "sleep 60", tag = "t" })).JsonAsync()).GetProperty("pid").GetInt32();
            await a.Client.SendAsync(HttpMethod.Put, $"/v1/sandboxes/{id}/files?path=/tmp/secret.txt", null);

            (HttpMethod Method, string Path, object? Body)[] routes =
            [
                (HttpMethod.Get, $"/v1/sandboxes/{id}", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/timeout", new { timeoutSeconds = 5 }),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/metrics", null),
                (HttpMethod.Put, $"/v1/sandboxes/{id}/network", new { mode = "none" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/exec", new { cmd = "touch /tmp/pwned" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes", new { cmd = "touch /tmp/pwned" }),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/processes", null),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/processes/{pid}", null),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/processes/t/events", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes/{pid}/signal", new { signal = "SIGKILL" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes/{pid}/stdin", null),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/files?path=/tmp/secret.txt", null),
                (HttpMethod.Put, $"/v1/sandboxes/{id}/files?path=/tmp/pwned", null),
                (HttpMethod.Delete, $"/v1/sandboxes/{id}/files?path=/tmp/secret.txt", null),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/files/stat?path=/tmp", null),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/files/list?path=/tmp", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/files/mkdir", new { path = "/tmp/pwned-dir" }),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/files/move", new { source = "/tmp/secret.txt", destination = "/tmp/moved" }),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/files/watch?path=/tmp", null),
                (HttpMethod.Delete, $"/v1/sandboxes/{id}", null),
            ];
            foreach (var (method, path, body) in routes)
            {
                using var response = await b.Client.SendAsync(method, path, body);
                Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{method} {path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            }

            var listed = await b.Client.GetFromJsonAsync<JsonElement>("/v1/sandboxes");
            Assert.DoesNotContain(listed.EnumerateArray(), s => s.GetProperty("id").GetString() == id);
            // The admin key is another team too (the first one): isolation holds for it as well.
            Assert.Equal(HttpStatusCode.NotFound, (await Server.Client.SendAsync(HttpMethod.Get, $"/v1/sandboxes/{id}")).StatusCode);

            // Nothing reached the sandbox: it runs, its process runs, no file was made or removed.
            var check = await a.Client.ExecAsync(id, "ls /tmp; kill -0 " + pid + " && echo alive");
            Assert.Contains("secret.txt", check.Stdout);
            Assert.DoesNotContain("pwned", check.Stdout);
            Assert.Contains("alive", check.Stdout);
        }
        finally
        {
            await a.CleanupAsync();
            await b.CleanupAsync();
        }
    }

    [Fact]
    public async Task EveryE2bRoute_OtherTeamsSandbox_Answers404()
    {
        var a = await Server.NewTeamAsync("a");
        var b = await Server.NewTeamAsync("b");
        try
        {
            var created = await a.E2b.SendAsync(HttpMethod.Post, "/sandboxes", new { templateID = "base", timeout = 120 });
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var sandbox = await created.JsonAsync();
            var id = sandbox.GetProperty("sandboxID").GetString()!;
            var token = sandbox.GetProperty("envdAccessToken").GetString()!;

            (HttpMethod Method, string Path, object? Body)[] routes =
            [
                (HttpMethod.Get, $"/sandboxes/{id}", null),
                (HttpMethod.Post, $"/sandboxes/{id}/connect", new { timeout = 60 }),
                (HttpMethod.Post, $"/v2/sandboxes/{id}/connect", new { timeout = 60 }),
                (HttpMethod.Post, $"/sandboxes/{id}/timeout", new { timeout = 5 }),
                (HttpMethod.Get, $"/sandboxes/{id}/metrics", null),
                (HttpMethod.Post, $"/sandboxes/{id}/pause", null),
                (HttpMethod.Post, $"/sandboxes/{id}/resume", null),
                (HttpMethod.Post, $"/sandboxes/{id}/snapshots", null),
                (HttpMethod.Post, $"/sandboxes/{id}/fork", null),
                (HttpMethod.Delete, $"/sandboxes/{id}", null),
            ];
            foreach (var (method, path, body) in routes)
            {
                using var response = await b.E2b.SendAsync(method, path, body);
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{method} {path}: {(int)response.StatusCode} {text}");
                // Above all, connect must not hand out the envd access token.
                Assert.DoesNotContain(token, text);
            }

            foreach (var list in new[] { "/v2/sandboxes", "/sandboxes" })
            {
                using var response = await b.E2b.SendAsync(HttpMethod.Get, list);
                var json = await response.JsonAsync();
                Assert.DoesNotContain(json.EnumerateArray(), s => s.GetProperty("sandboxID").GetString() == id);
            }

            // The sandbox surface stays guarded by the sandbox's own token: a key of any team is not it.
            using var envd = Server.CreateClient(null);
            envd.DefaultRequestHeaders.Add("E2b-Sandbox-Id", id);
            envd.DefaultRequestHeaders.Add("X-API-KEY", b.Key);
            using var files = await envd.GetAsync("/files?path=/etc/hostname");
            Assert.Equal(HttpStatusCode.Unauthorized, files.StatusCode);

            // Still there for its team.
            Assert.Equal(HttpStatusCode.OK, (await a.E2b.SendAsync(HttpMethod.Get, $"/sandboxes/{id}")).StatusCode);
        }
        finally
        {
            await a.CleanupAsync();
            await b.CleanupAsync();
        }
    }

    [Fact]
    public async Task TeamRoutes_OtherTeam_Answer404()
    {
        var a = await Server.NewTeamAsync("a");
        var b = await Server.NewTeamAsync("b");
        (HttpMethod Method, string Path, object? Body)[] routes =
        [
            (HttpMethod.Get, $"/v1/teams/{a.Id}", null),
            (HttpMethod.Get, $"/v1/teams/{a.Id}/api-keys", null),
            (HttpMethod.Post, $"/v1/teams/{a.Id}/api-keys", new { name = "stolen" }),
            (HttpMethod.Get, $"/v1/teams/{a.Id}/usage", null),
            (HttpMethod.Get, $"/v1/teams/{a.Id}/quota", null),
            (HttpMethod.Get, $"/v1/teams/{a.Id}/members", null),
            (HttpMethod.Post, $"/v1/teams/{a.Id}/members", new { email = "x@example.com", password = "password123" }),
            (HttpMethod.Post, $"/v1/teams/{a.Id}/invitations", new { email = "x@example.com" }),
            (HttpMethod.Delete, $"/v1/api-keys/{a.KeyId}", null),
        ];
        foreach (var (method, path, body) in routes)
        {
            using var response = await b.Client.SendAsync(method, path, body);
            Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{method} {path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }

        var teams = await b.Client.GetFromJsonAsync<JsonElement>("/v1/teams");
        Assert.Equal([b.Id], teams.EnumerateArray().Select(t => t.GetProperty("id").GetString()!).ToArray());
        // A's key still works (B's DELETE did nothing).
        Assert.Equal(HttpStatusCode.OK, (await a.Client.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);
    }
}
