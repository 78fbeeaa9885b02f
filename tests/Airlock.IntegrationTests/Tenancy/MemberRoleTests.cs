using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>Owners: only an owner demotes or removes one, and a team never loses its last owner.</summary>
public sealed class MemberRoleTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private const string Password = "correct horse battery";

    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task DemoteOrRemoveOwner_ByAdmin_Refused403_ByOwnerAllowed()
    {
        var team = await Server.NewTeamAsync();
        var owner = await AddAsync(team, "owner");
        var admin = await AddAsync(team, "admin");
        using var adminSession = await SessionAsync(admin.Email);

        // An admin may manage members, but not the owner: no demotion, no removal.
        await (await adminSession.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email = owner.Email, role = "member" }))
            .ExpectProblemAsync(HttpStatusCode.Forbidden, "owner_required");
        await (await adminSession.SendAsync(HttpMethod.Delete, $"/v1/teams/{team.Id}/members/{owner.UserId}"))
            .ExpectProblemAsync(HttpStatusCode.Forbidden, "owner_required");
        // Nor through an invitation it accepts itself (the token is the admin's, the owner exists).
        using (var invite = await adminSession.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/invitations", new { email = owner.Email, role = "viewer" }))
        {
            Assert.Equal(HttpStatusCode.Created, invite.StatusCode);
            var token = (await invite.JsonAsync()).GetProperty("token").GetString()!;
            using var anonymous = Server.CreateClient(null);
            Assert.Equal(HttpStatusCode.OK, (await anonymous.SendAsync(HttpMethod.Post, "/v1/invitations/accept", new { token })).StatusCode);
        }

        // A team key with team:admin is no owner either.
        await (await team.Client.SendAsync(HttpMethod.Delete, $"/v1/teams/{team.Id}/members/{owner.UserId}"))
            .ExpectProblemAsync(HttpStatusCode.Forbidden, "owner_required");
        Assert.Equal("owner", await RoleAsync(team, owner.UserId));

        // The owner can: make the admin an owner, then demote and remove them.
        using var ownerSession = await SessionAsync(owner.Email);
        Assert.Equal(HttpStatusCode.Created, (await ownerSession.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email = admin.Email, role = "owner" })).StatusCode);
        Assert.Equal(HttpStatusCode.Created, (await ownerSession.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email = admin.Email, role = "member" })).StatusCode);
        Assert.Equal("member", await RoleAsync(team, admin.UserId));
        Assert.Equal(HttpStatusCode.Created, (await ownerSession.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email = admin.Email, role = "owner" })).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await ownerSession.SendAsync(HttpMethod.Delete, $"/v1/teams/{team.Id}/members/{admin.UserId}")).StatusCode);
        Assert.Null(await RoleAsync(team, admin.UserId));

        // But not the last owner, not even themselves.
        await (await ownerSession.SendAsync(HttpMethod.Delete, $"/v1/teams/{team.Id}/members/{owner.UserId}"))
            .ExpectProblemAsync(HttpStatusCode.Conflict, "last_owner");
        await (await ownerSession.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email = owner.Email, role = "admin" }))
            .ExpectProblemAsync(HttpStatusCode.Conflict, "last_owner");
        Assert.Equal("owner", await RoleAsync(team, owner.UserId));
    }

    /// <summary>Adds a new user with a role, as the instance admin (who may make owners).</summary>
    private async Task<(string Email, string UserId)> AddAsync(TestTeam team, string role)
    {
        var email = $"{role}-{Guid.NewGuid():N}@example.com";
        using var response = await Server.Client.SendAsync(HttpMethod.Post, $"/v1/teams/{team.Id}/members", new { email, role, password = Password });
        var json = await response.JsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"add {role}: {(int)response.StatusCode} {json}");
        return (email, json.GetProperty("userId").GetString()!);
    }

    private static async Task<string?> RoleAsync(TestTeam team, string userId)
    {
        using var cts = Api.NewTimeout();
        var members = await team.Client.GetFromJsonAsync<JsonElement>($"/v1/teams/{team.Id}/members", cts.Token);
        return members.EnumerateArray().Where(m => m.GetProperty("userId").GetString() == userId).Select(m => m.GetProperty("role").GetString()).FirstOrDefault();
    }

    /// <summary>A logged-in console session that sends its CSRF token on every request.</summary>
    private async Task<HttpClient> SessionAsync(string email)
    {
        var browser = new HttpClient(new HttpClientHandler { UseCookies = true, CookieContainer = new CookieContainer() }) { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        using var login = await browser.SendAsync(HttpMethod.Post, "/v1/auth/login", new { email, password = Password });
        var json = await login.JsonAsync();
        Assert.True(login.StatusCode == HttpStatusCode.OK, $"login: {(int)login.StatusCode} {json}");
        browser.DefaultRequestHeaders.Add("X-CSRF-Token", json.GetProperty("csrfToken").GetString());
        return browser;
    }
}
