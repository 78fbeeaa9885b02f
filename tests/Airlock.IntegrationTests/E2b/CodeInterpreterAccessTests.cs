using System.Net;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;
using Airlock.IntegrationTests.Tenancy;

namespace Airlock.IntegrationTests.E2b;

/// <summary>
/// Who may use a sandbox's code interpreter (port 49999). The requests are shaped exactly as
/// @e2b/code-interpreter 2.8.0 sends them: <c>/execute</c> with <c>X-Access-Token</c>, the
/// <c>/contexts</c> routes with only <c>E2B-Traffic-Access-Token</c> (when the sandbox has one).
/// </summary>
public sealed class CodeInterpreterAccessTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task Contexts_PrivateTrafficSandbox_OtherTeamAndAnonymousRefused_OwnerSdkCallsWork()
    {
        var a = await Server.NewTeamAsync("a");
        var b = await Server.NewTeamAsync("b");
        try
        {
            var sandbox = await CreateAsync(a, "code-interpreter-v1", publicTraffic: false);
            // B's credentials are all real: its key, and the tokens of its own private sandbox.
            var own = await CreateAsync(b, "base", publicTraffic: false);
            using var client = Server.CreateClient(null);

            var created = await SendAsync(client, Sdk(HttpMethod.Post, sandbox, "/contexts", new { language = "python", cwd = "/tmp" }));
            Assert.True(created.Status == HttpStatusCode.OK, $"owner create: {(int)created.Status} {created.Text}");
            var context = JsonDocument.Parse(created.Text).RootElement.GetProperty("id").GetString()!;
            var before = await ListAsync(client, sandbox);
            Assert.Contains(context, before);

            (string Name, string Header, string Value)[] attackers =
            [
                ("no credentials", "", ""),
                ("B's API key (X-API-Key)", "X-API-Key", b.Key),
                ("B's API key (Bearer)", "Authorization", "Bearer " + b.Key),
                ("B's sandbox access token", "X-Access-Token", own.AccessToken),
                ("B's sandbox traffic token", "E2B-Traffic-Access-Token", own.TrafficToken!),
            ];
            (HttpMethod Method, string Path, object? Body)[] routes =
            [
                (HttpMethod.Post, "/contexts", new { language = "python" }),
                (HttpMethod.Get, "/contexts", null),
                (HttpMethod.Post, $"/contexts/{context}/restart", null),
                (HttpMethod.Delete, $"/contexts/{context}", null),
                (HttpMethod.Post, "/execute", new { code = "open('/tmp/pwned', 'w')" }),
                (HttpMethod.Get, "/health", null),
            ];
            foreach (var (name, header, value) in attackers)
            {
                foreach (var (method, path, body) in routes)
                {
                    using var request = Request(method, sandbox.Id, path, body);
                    if (header.Length > 0)
                    {
                        request.Headers.TryAddWithoutValidation(header, value);
                    }

                    var (status, text) = await SendAsync(client, request);
                    Assert.True(status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden, $"{name}: {method} {path}: {(int)status} {text}");
                }
            }

            // Nothing changed: the same contexts, the owner's still there, no file written.
            Assert.Equal(before, await ListAsync(client, sandbox));
            var restarted = await SendAsync(client, Sdk(HttpMethod.Post, sandbox, $"/contexts/{context}/restart"));
            Assert.True(restarted.Status == HttpStatusCode.OK, $"owner restart: {(int)restarted.Status} {restarted.Text}");
            var run = await SendAsync(client, Sdk(HttpMethod.Post, sandbox, "/execute", new { code = "import os\nos.path.exists('/tmp/pwned')", context_id = context }, accessToken: true));
            Assert.True(run.Status == HttpStatusCode.OK, $"owner execute: {(int)run.Status} {run.Text}");
            Assert.Matches("\"text\":\\s*\"False\"", run.Text);
            var removed = await SendAsync(client, Sdk(HttpMethod.Delete, sandbox, $"/contexts/{context}"));
            Assert.True(removed.Status == HttpStatusCode.OK, $"owner delete: {(int)removed.Status} {removed.Text}");
            Assert.DoesNotContain(context, await ListAsync(client, sandbox));
        }
        finally
        {
            await a.CleanupAsync();
            await b.CleanupAsync();
        }
    }

    [Fact]
    public async Task Contexts_PublicTrafficSandbox_WrongAccessTokenRefused_SdkCallWithoutTokenWorks()
    {
        var a = await Server.NewTeamAsync("a");
        var b = await Server.NewTeamAsync("b");
        try
        {
            var sandbox = await CreateAsync(a, "code-interpreter-v1", publicTraffic: true);
            var own = await CreateAsync(b, "base", publicTraffic: true);
            using var client = Server.CreateClient(null);
            var before = await ListAsync(client, sandbox);

            // A token that is presented is checked, even where none is needed.
            foreach (var (method, path) in new[] { (HttpMethod.Post, "/contexts"), (HttpMethod.Get, "/contexts") })
            {
                using var request = Request(method, sandbox.Id, path, method == HttpMethod.Post ? new { language = "python" } : null);
                request.Headers.Add("X-Access-Token", own.AccessToken);
                var (status, text) = await SendAsync(client, request);
                Assert.True(status == HttpStatusCode.Unauthorized, $"{method} {path} with B's token: {(int)status} {text}");
            }

            Assert.Equal(before, await ListAsync(client, sandbox));

            // The SDK sends no token on /contexts: with public traffic (E2B's default) it works, as in E2B.
            var created = await SendAsync(client, Sdk(HttpMethod.Post, sandbox, "/contexts", new { language = "python" }));
            Assert.True(created.Status == HttpStatusCode.OK, $"SDK create: {(int)created.Status} {created.Text}");
        }
        finally
        {
            await a.CleanupAsync();
            await b.CleanupAsync();
        }
    }

    private sealed record Sandbox(string Id, string AccessToken, string? TrafficToken);

    private static async Task<Sandbox> CreateAsync(TestTeam team, string template, bool publicTraffic)
    {
        using var created = await team.E2b.SendAsync(HttpMethod.Post, "/sandboxes", new { templateID = template, timeout = 120, network = new { allowPublicTraffic = publicTraffic } });
        var json = await created.JsonAsync();
        Assert.True(created.StatusCode == HttpStatusCode.Created, $"create: {(int)created.StatusCode} {json}");
        var traffic = json.GetProperty("trafficAccessToken");
        return new Sandbox(json.GetProperty("sandboxID").GetString()!, json.GetProperty("envdAccessToken").GetString()!, traffic.ValueKind == JsonValueKind.String ? traffic.GetString() : null);
    }

    private static HttpRequestMessage Request(HttpMethod method, string id, string path, object? body)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Add("E2b-Sandbox-Id", id);
        request.Headers.Add("E2b-Sandbox-Port", "49999");
        if (body is not null)
        {
            request.Content = Api.Json(body);
        }

        return request;
    }

    /// <summary>What the SDK sends: the traffic token when the sandbox has one, the access token on /execute only.</summary>
    private static HttpRequestMessage Sdk(HttpMethod method, Sandbox sandbox, string path, object? body = null, bool accessToken = false)
    {
        var request = Request(method, sandbox.Id, path, body);
        if (sandbox.TrafficToken is { } traffic)
        {
            request.Headers.Add("E2B-Traffic-Access-Token", traffic);
        }

        if (accessToken)
        {
            request.Headers.Add("X-Access-Token", sandbox.AccessToken);
        }

        return request;
    }

    private static async Task<string[]> ListAsync(HttpClient client, Sandbox sandbox)
    {
        var (status, text) = await SendAsync(client, Sdk(HttpMethod.Get, sandbox, "/contexts"));
        Assert.True(status == HttpStatusCode.OK, $"owner list: {(int)status} {text}");
        return JsonDocument.Parse(text).RootElement.EnumerateArray().Select(c => c.GetProperty("id").GetString()!).Order(StringComparer.Ordinal).ToArray();
    }

    private static async Task<(HttpStatusCode Status, string Text)> SendAsync(HttpClient client, HttpRequestMessage request)
    {
        using (request)
        {
            using var cts = Api.NewTimeout();
            using var response = await client.SendAsync(request, cts.Token);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
        }
    }
}
