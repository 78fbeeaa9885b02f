using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>Users, roles, invitations and the console's cookie session with its CSRF token.</summary>
public sealed class ConsoleLoginTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private const string Password = "correct horse battery";

    private AirlockServer Server => fixture.Server;

    /// <summary>A browser-like client: keeps cookies, sends no key.</summary>
    private HttpClient Browser() => new(new HttpClientHandler { UseCookies = true, CookieContainer = new CookieContainer() }) { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

    private static async Task<string> LoginAsync(HttpClient browser, string email, string password = Password)
    {
        using var response = await browser.SendAsync(HttpMethod.Post, "/v1/auth/login", new { email, password });
        var json = await response.JsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"login: {(int)response.StatusCode} {json}");
        var cookie = response.Headers.GetValues("Set-Cookie").Single(c => c.StartsWith("airlock_session=", StringComparison.Ordinal));
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        return json.GetProperty("csrfToken").GetString()!;
    }

    [Fact]
    public async Task Login_CookieSession_WorksAndUnsafeRequestsNeedCsrf()
    {
        var team = await Server.NewTeamAsync();
        var email = $"dev-{Guid.NewGuid():N}@example.com";
        using (var add = await team.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email, role = "member", password = Password }))
        {
            Assert.Equal(HttpStatusCode.Created, add.StatusCode);
        }

        using var browser = Browser();
        var csrf = await LoginAsync(browser, email);
        try
        {
            var me = await browser.GetFromJsonAsync<JsonElement>("/v1/auth/me");
            Assert.Equal(team.Id, me.GetProperty("teamId").GetString());
            Assert.Equal(csrf, me.GetProperty("csrfToken").GetString());
            Assert.Equal(HttpStatusCode.OK, (await browser.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);

            // A cross-site form post carries the cookie but not the header: refused.
            await (await browser.SendAsync(HttpMethod.Post, "/v1/sandboxes", new { })).ExpectProblemAsync(HttpStatusCode.Forbidden, "csrf_token_invalid");
            using var forged = new HttpRequestMessage(HttpMethod.Post, "/v1/sandboxes") { Content = Api.Json(new { }) };
            forged.Headers.Add("X-CSRF-Token", new string('0', 64));
            await (await browser.SendAsync(forged, TestContext.Current.CancellationToken)).ExpectProblemAsync(HttpStatusCode.Forbidden, "csrf_token_invalid");

            using var create = new HttpRequestMessage(HttpMethod.Post, "/v1/sandboxes") { Content = Api.Json(new { }) };
            create.Headers.Add("X-CSRF-Token", csrf);
            using var created = await browser.SendAsync(create, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var id = (await created.JsonAsync()).GetProperty("id").GetString()!;
            // The user's sandbox is the team's: its key sees it; the audit names the user.
            Assert.Equal(HttpStatusCode.OK, (await team.Client.SendAsync(HttpMethod.Get, $"/v1/sandboxes/{id}")).StatusCode);
            var audit = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/audit?action=sandbox.create&sandboxId={id}");
            var e = Assert.Single(audit.GetProperty("events").EnumerateArray());
            Assert.Equal("user", e.GetProperty("actorType").GetString());
            Assert.Equal(email, e.GetProperty("actorLabel").GetString());

            // A member is not a team admin.
            using var keys = new HttpRequestMessage(HttpMethod.Post, $"/v1/teams/{team.Id}/api-keys") { Content = Api.Json(new { name = "x" }) };
            keys.Headers.Add("X-CSRF-Token", csrf);
            await (await browser.SendAsync(keys, TestContext.Current.CancellationToken)).ExpectProblemAsync(HttpStatusCode.Forbidden, "insufficient_scope");

            using var logout = new HttpRequestMessage(HttpMethod.Post, "/v1/auth/logout");
            logout.Headers.Add("X-CSRF-Token", csrf);
            Assert.Equal(HttpStatusCode.NoContent, (await browser.SendAsync(logout, TestContext.Current.CancellationToken)).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await browser.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);
        }
        finally
        {
            await team.CleanupAsync();
        }
    }

    [Fact]
    public async Task Login_WrongPasswordOrUnknownUser_Answers401()
    {
        var team = await Server.NewTeamAsync();
        var email = $"dev-{Guid.NewGuid():N}@example.com";
        await team.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email, password = Password });
        using var browser = Browser();
        await (await browser.SendAsync(HttpMethod.Post, "/v1/auth/login", new { email, password = "wrong password" })).ExpectProblemAsync(HttpStatusCode.Unauthorized, "invalid_credentials");
        await (await browser.SendAsync(HttpMethod.Post, "/v1/auth/login", new { email = "nobody@example.com", password = Password })).ExpectProblemAsync(HttpStatusCode.Unauthorized, "invalid_credentials");
        Assert.DoesNotContain(Password, Server.Log);
        Assert.DoesNotContain("wrong password", Server.Log);
    }

    [Fact]
    public async Task Invitation_Accepted_JoinsWithRole_ViewerCannotWrite()
    {
        var team = await Server.NewTeamAsync();
        var email = $"viewer-{Guid.NewGuid():N}@example.com";
        using var invite = await team.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/invitations", new { email, role = "viewer" });
        Assert.Equal(HttpStatusCode.Created, invite.StatusCode);
        var token = (await invite.JsonAsync()).GetProperty("token").GetString()!;

        using var anonymous = Server.CreateClient(null);
        using var accept = await anonymous.SendAsync(HttpMethod.Post, "/v1/invitations/accept", new { token, password = Password });
        Assert.Equal(HttpStatusCode.OK, accept.StatusCode);
        // Single use.
        Assert.Equal(HttpStatusCode.NotFound, (await anonymous.SendAsync(HttpMethod.Post, "/v1/invitations/accept", new { token, password = Password })).StatusCode);

        var members = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/teams/{team.Id}/members");
        Assert.Contains(members.EnumerateArray(), m => m.GetProperty("email").GetString() == email && m.GetProperty("role").GetString() == "viewer");

        using var browser = Browser();
        var csrf = await LoginAsync(browser, email);
        Assert.Equal(HttpStatusCode.OK, (await browser.SendAsync(HttpMethod.Get, "/v1/sandboxes")).StatusCode);
        using var create = new HttpRequestMessage(HttpMethod.Post, "/v1/sandboxes") { Content = Api.Json(new { }) };
        create.Headers.Add("X-CSRF-Token", csrf);
        await (await browser.SendAsync(create, TestContext.Current.CancellationToken)).ExpectProblemAsync(HttpStatusCode.Forbidden, "insufficient_scope");

        // Only owners make owners.
        await (await team.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email = "o@example.com", role = "owner", password = Password }))
            .ExpectProblemAsync(HttpStatusCode.Forbidden, "owner_required");
    }
}
