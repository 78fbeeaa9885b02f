using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>A server whose quota loop runs every second, shared by the tests of a class.</summary>
public sealed class TenancyServerFixture : IAsyncLifetime
{
    public AirlockServer Server { get; private set; } = null!;

    /// <summary>The bootstrap admin key's client (team "default", instance admin).</summary>
    public HttpClient Admin => Server.Client;

    public async ValueTask InitializeAsync() => Server = await AirlockServer.StartAsync(
        environment: new Dictionary<string, string>
        {
            ["Airlock__Quotas__EnforceIntervalSeconds"] = "1",
            // Cheaper PBKDF2 in tests; the stored hash carries its count, production uses 600,000.
            ["Airlock__Tenancy__PasswordIterations"] = "10000",
            // No warm pool: quota tests count exactly the sandboxes they make.
            ["Airlock__Sandboxes__WarmPoolSize"] = "0",
        });

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>A team made for one test, with a key and its clients (native and E2B).</summary>
public sealed record TestTeam(string Id, string KeyId, string Key, HttpClient Client, HttpClient E2b);

/// <summary>Helpers over the tenancy API, so tests read as what they check.</summary>
public static class Tenants
{
    public static readonly string[] AllScopes = ["sandboxes:read", "sandboxes:write", "templates:read", "templates:write", "team:admin", "usage:read"];

    public static async Task<TestTeam> NewTeamAsync(this AirlockServer server, string? name = null, string[]? scopes = null)
    {
        using var cts = Api.NewTimeout();
        var response = await server.Client.PostAsJsonAsync("/v1/teams", new { name = name ?? "team-" + Guid.NewGuid().ToString("N")[..8] }, cts.Token);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var teamId = (await response.JsonAsync()).GetProperty("id").GetString()!;
        var (keyId, key) = await server.Client.NewKeyAsync(teamId, scopes ?? AllScopes);
        return new TestTeam(teamId, keyId, key, server.CreateClient(key), server.E2bClient(key));
    }

    public static async Task<(string Id, string Key)> NewKeyAsync(this HttpClient client, string teamId, string[]? scopes, DateTimeOffset? expiresAt = null, string name = "test")
    {
        using var cts = Api.NewTimeout();
        var response = await client.PostAsJsonAsync($"/v1/teams/{teamId}/api-keys", new { name, scopes, expiresAt }, cts.Token);
        var json = await response.JsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"create key: {(int)response.StatusCode} {json}");
        return (json.GetProperty("id").GetString()!, json.GetProperty("key").GetString()!);
    }

    /// <summary>A client for the E2B control plane (<c>X-API-KEY</c>, as the SDKs send it).</summary>
    public static HttpClient E2bClient(this AirlockServer server, string key)
    {
        var client = server.CreateClient(null);
        client.DefaultRequestHeaders.Add("X-API-KEY", key);
        return client;
    }

    public static async Task SetQuotaAsync(this AirlockServer server, string teamId, object quota)
    {
        using var cts = Api.NewTimeout();
        var response = await server.Client.PutAsJsonAsync($"/v1/teams/{teamId}/quota", quota, cts.Token);
        Assert.True(response.StatusCode == HttpStatusCode.NoContent, $"quota: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cts.Token)}");
    }

    /// <summary>The ProblemDetails' <c>code</c>, asserting the status.</summary>
    public static async Task<JsonElement> ExpectProblemAsync(this HttpResponseMessage response, HttpStatusCode status, string code)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status} {code}, got {(int)response.StatusCode} {text}");
        var json = JsonDocument.Parse(text).RootElement;
        Assert.Equal(code, json.GetProperty("code").GetString());
        return json;
    }

    public static async Task<HttpResponseMessage> SendAsync(this HttpClient client, HttpMethod method, string path, object? body = null)
    {
        using var cts = Api.NewTimeout();
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = Api.Json(body);
        }

        return await client.SendAsync(request, cts.Token);
    }

    /// <summary>Deletes the sandboxes a team key can see (the server's own cleanup only sees the admin's team).</summary>
    public static async Task CleanupAsync(this TestTeam team)
    {
        using var cts = Api.NewTimeout();
        try
        {
            var list = await team.Client.GetFromJsonAsync<JsonElement>("/v1/sandboxes", cts.Token);
            foreach (var sandbox in list.EnumerateArray())
            {
                await team.Client.DeleteAsync($"/v1/sandboxes/{sandbox.GetProperty("id").GetString()}", cts.Token);
            }
        }
        catch (HttpRequestException)
        {
        }
    }
}
