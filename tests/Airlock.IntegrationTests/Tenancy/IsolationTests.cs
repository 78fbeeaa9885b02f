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
                (HttpMethod.Delete, $"/v1/sandboxes/{id}/processes/{pid}/stdin", null),
                (HttpMethod.Post, $"/v1/sandboxes/{id}/processes/{pid}/resize", new { cols = 80, rows = 24 }),
                (HttpMethod.Get, $"/v1/sandboxes/{id}/processes/{pid}/pty", null),
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
    public async Task EnvdConnectRpc_OtherTeamsOwnSandboxToken_RefusedOnThisSandbox()
    {
        var a = await Server.NewTeamAsync("a");
        var b = await Server.NewTeamAsync("b");
        try
        {
            var (id, tokenA) = await CreateE2bSandboxAsync(a);
            // B's token is real and valid, for B's own sandbox: the attack is to aim it at A's id.
            var (idB, tokenB) = await CreateE2bSandboxAsync(b);
            using var envd = Server.CreateClient(null);
            using var cts = Api.NewTimeout();

            (string Path, string ContentType, byte[] Body)[] calls =
            [
                ("/process.Process/Start", "application/connect+json", Envelope("""{"process":{"cmd":"/bin/sh","args":["-c","touch /tmp/pwned"]}}""")),
                ("/process.Process/List", "application/json", "{}"u8.ToArray()),
                ("/filesystem.Filesystem/MakeDir", "application/json", """{"path":"/tmp/pwned-dir"}"""u8.ToArray()),
                ("/filesystem.Filesystem/ListDir", "application/json", """{"path":"/tmp"}"""u8.ToArray()),
            ];
            foreach (var (path, contentType, body) in calls)
            {
                // The same call with B's id is accepted: the request is well formed, only the target differs.
                using (var own = await envd.SendAsync(Rpc(idB, tokenB, path, contentType, body), HttpCompletionOption.ResponseHeadersRead, cts.Token))
                {
                    Assert.True(own.StatusCode == HttpStatusCode.OK, $"{path} on B's own sandbox: {(int)own.StatusCode}");
                }

                using var response = await envd.SendAsync(Rpc(id, tokenB, path, contentType, body), cts.Token);
                var text = await response.Content.ReadAsStringAsync(cts.Token);
                Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{path} with B's token on A's sandbox: {(int)response.StatusCode} {text}");
                Assert.Contains("unauthenticated", text);
            }

            // Nothing happened in A's sandbox; A's own token still works there.
            using var list = await envd.SendAsync(Rpc(id, tokenA, "/filesystem.Filesystem/ListDir", "application/json", """{"path":"/tmp"}"""u8.ToArray()), cts.Token);
            var listed = await list.Content.ReadAsStringAsync(cts.Token);
            Assert.True(list.StatusCode == HttpStatusCode.OK, listed);
            Assert.DoesNotContain("pwned", listed);
        }
        finally
        {
            await a.CleanupAsync();
            await b.CleanupAsync();
        }
    }

    private static async Task<(string Id, string Token)> CreateE2bSandboxAsync(TestTeam team)
    {
        using var created = await team.E2b.SendAsync(HttpMethod.Post, "/sandboxes", new { templateID = "base", timeout = 120 });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var sandbox = await created.JsonAsync();
        return (sandbox.GetProperty("sandboxID").GetString()!, sandbox.GetProperty("envdAccessToken").GetString()!);
    }

    private static HttpRequestMessage Rpc(string id, string token, string path, string contentType, byte[] body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
        request.Headers.Add("E2b-Sandbox-Id", id);
        request.Headers.Add("E2b-Sandbox-Port", "49983");
        request.Headers.Add("X-Access-Token", token);
        return request;
    }

    /// <summary>One Connect envelope: flags 0, big-endian length, the JSON message.</summary>
    private static byte[] Envelope(string json)
    {
        var message = System.Text.Encoding.UTF8.GetBytes(json);
        var envelope = new byte[5 + message.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(envelope.AsSpan(1), message.Length);
        message.CopyTo(envelope, 5);
        return envelope;
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
