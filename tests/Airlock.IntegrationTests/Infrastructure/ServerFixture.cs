using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Airlock.IntegrationTests.Infrastructure;

/// <summary>One real server shared by the tests of a class (each test makes its own sandboxes).</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public AirlockServer Server { get; private set; } = null!;

    public HttpClient Client => Server.Client;

    public async ValueTask InitializeAsync() => Server = await AirlockServer.StartAsync();

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>Small helpers over the native API, so tests read as what they check.</summary>
public static class Api
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static async Task<string> CreateSandboxAsync(this HttpClient client, object? body = null)
    {
        using var cts = new CancellationTokenSource(Timeout);
        var response = await client.PostAsJsonAsync("/v1/sandboxes", body ?? new { }, cts.Token);
        var text = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"create: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    public static async Task<ExecResult> ExecAsync(this HttpClient client, string id, string cmd, string? user = null, int timeoutSeconds = 60, string? stdin = null)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds + 30));
        var response = await client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd, user, timeoutSeconds, stdin }, cts.Token);
        var text = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(response.IsSuccessStatusCode, $"exec: {(int)response.StatusCode} {text}");
        var json = JsonDocument.Parse(text).RootElement;
        return new ExecResult(json.GetProperty("exitCode").GetInt32(), json.GetProperty("stdout").GetString()!, json.GetProperty("stderr").GetString()!);
    }

    /// <summary>Runs <paramref name="test"/> with a fresh sandbox that is deleted afterwards, pass or fail.</summary>
    public static async Task WithSandboxAsync(this HttpClient client, Func<string, Task> test)
    {
        var id = await client.CreateSandboxAsync();
        try
        {
            await test(id);
        }
        finally
        {
            await client.DeleteSandboxAsync(id);
        }
    }

    /// <summary>Cancelled when the test is or after <paramref name="timeout"/> (default <see cref="Timeout"/>).</summary>
    public static CancellationTokenSource NewTimeout(TimeSpan? timeout = null)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(timeout ?? Timeout);
        return cts;
    }

    public static async Task DeleteSandboxAsync(this HttpClient client, string id)
    {
        using var cts = new CancellationTokenSource(Timeout);
        await client.DeleteAsync($"/v1/sandboxes/{id}", cts.Token);
    }

    public static async Task<JsonElement> JsonAsync(this HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text.Length == 0 ? "null" : text).RootElement;
    }

    public static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
}

public sealed record ExecResult(int ExitCode, string Stdout, string Stderr);
