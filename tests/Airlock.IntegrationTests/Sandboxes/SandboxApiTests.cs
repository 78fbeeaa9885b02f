using System.Net;
using System.Net.Http.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Sandboxes;

/// <summary>The fixed contract of the native API for sandboxes, auth and exec.</summary>
public sealed class SandboxApiTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Fact]
    public async Task Health_NeedsNoKey_Answers200()
    {
        using var anonymous = fixture.Server.CreateClient(key: null);
        var response = await anonymous.GetAsync("/health", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Health_NamesTheStoreTheServerRunsOn()
    {
        // test.sh runs the API tests twice: on SQLite, then with AIRLOCK_TEST_STORE=postgres.
        var health = await (await _client.GetAsync("/health", TestContext.Current.CancellationToken)).JsonAsync();
        var expected = Environment.GetEnvironmentVariable("AIRLOCK_TEST_STORE") == "postgres" ? "postgres" : "sqlite";
        Assert.Equal(expected, health.GetProperty("database").GetString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("e2b_wrong")]
    public async Task V1_MissingOrWrongKey_Answers401Problem(string? key)
    {
        using var client = fixture.Server.CreateClient(key);
        var response = await client.GetAsync("/v1/sandboxes", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("unauthorized", (await response.JsonAsync()).GetProperty("code").GetString());
    }

    [Fact]
    public async Task XApiKeyHeader_Authenticates()
    {
        using var client = fixture.Server.CreateClient(key: null);
        client.DefaultRequestHeaders.Add("X-API-Key", AirlockServer.ApiKey);
        var response = await client.GetAsync("/v1/sandboxes", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Create_WithEveryField_ReturnsContractShape()
    {
        var ct = TestContext.Current.CancellationToken;
        var response = await _client.PostAsJsonAsync("/v1/sandboxes", new
        {
            template = "base",
            timeoutSeconds = 120,
            metadata = new Dictionary<string, string> { ["k"] = "v" },
            env = new Dictionary<string, string> { ["A"] = "b" },
            cpus = 1,
            memoryMb = 256,
        }, ct);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var json = await response.JsonAsync();
        var id = json.GetProperty("id").GetString()!;
        Assert.Equal("base", json.GetProperty("template").GetString());
        Assert.Equal("running", json.GetProperty("state").GetString());
        Assert.Equal("v", json.GetProperty("metadata").GetProperty("k").GetString());
        Assert.Equal(1, json.GetProperty("cpus").GetInt32());
        Assert.Equal(256, json.GetProperty("memoryMb").GetInt32());
        var created = json.GetProperty("createdAt").GetDateTimeOffset();
        var expires = json.GetProperty("expiresAt").GetDateTimeOffset();
        Assert.InRange((expires - created).TotalSeconds, 119, 121);

        var exec = await _client.ExecAsync(id, "echo $A");
        Assert.Equal("b\n", exec.Stdout);

        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync($"/v1/sandboxes/{id}", ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync($"/v1/sandboxes/{id}", ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync($"/v1/sandboxes/{id}", ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _client.DeleteAsync($"/v1/sandboxes/{id}", ct)).StatusCode);
    }

    [Fact]
    public async Task Create_EmptyBody_UsesDefaults()
    {
        var ct = TestContext.Current.CancellationToken;
        var response = await _client.PostAsync("/v1/sandboxes", null, ct);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var json = await response.JsonAsync();
        Assert.Equal("base", json.GetProperty("template").GetString());
        await _client.DeleteSandboxAsync(json.GetProperty("id").GetString()!);
    }

    [Theory]
    [InlineData("{\"timeoutSeconds\":0}", "invalid_argument")]
    [InlineData("{\"memoryMb\":1}", "invalid_argument")]
    [InlineData("{\"template\":\"nope\"}", "not_found")]
    [InlineData("{not json", "invalid_json")]
    [InlineData("{\"cpus\":\"x\"}", "invalid_json")]
    public async Task Create_BadInput_AnswersProblemWithCode(string body, string code)
    {
        var response = await _client.PostAsync("/v1/sandboxes", new StringContent(body, System.Text.Encoding.UTF8, "application/json"), TestContext.Current.CancellationToken);
        Assert.InRange((int)response.StatusCode, 400, 499);
        Assert.Equal(code, (await response.JsonAsync()).GetProperty("code").GetString());
    }

    [Fact]
    public async Task List_FiltersByMetadata_AllPairsMustMatch()
    {
        var ct = TestContext.Current.CancellationToken;
        var tag = Guid.NewGuid().ToString("N");
        var a = await _client.CreateSandboxAsync(new { metadata = new Dictionary<string, string> { ["run"] = tag, ["role"] = "a" } });
        var b = await _client.CreateSandboxAsync(new { metadata = new Dictionary<string, string> { ["run"] = tag, ["role"] = "b" } });
        try
        {
            var both = await (await _client.GetAsync($"/v1/sandboxes?metadata.run={tag}", ct)).JsonAsync();
            Assert.Equal(2, both.GetArrayLength());
            var onlyA = await (await _client.GetAsync($"/v1/sandboxes?metadata.run={tag}&metadata.role=a", ct)).JsonAsync();
            Assert.Equal(a, Assert.Single(onlyA.EnumerateArray()).GetProperty("id").GetString());
        }
        finally
        {
            await _client.DeleteSandboxAsync(a);
            await _client.DeleteSandboxAsync(b);
        }
    }

    [Fact]
    public async Task Timeout_Expires_SandboxIsKilled()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await _client.CreateSandboxAsync(new { timeoutSeconds = 300 });
        Assert.Equal(HttpStatusCode.NoContent, (await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/timeout", new { timeoutSeconds = 1 }, ct)).StatusCode);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await _client.GetAsync($"/v1/sandboxes/{id}", ct)).StatusCode != HttpStatusCode.NotFound)
        {
            Assert.True(DateTime.UtcNow < deadline, "sandbox outlived its timeout");
            await Task.Delay(200, ct);
        }
    }

    [Fact]
    public async Task Exec_ReturnsExitCodeStdoutStderr()
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ExecAsync(id, "echo out; echo err >&2; exit 7");
            Assert.Equal(new ExecResult(7, "out\n", "err\n"), result);
            var whoami = await _client.ExecAsync(id, "whoami; pwd");
            Assert.Equal("user\n/home/user\n", whoami.Stdout);
            var root = await _client.ExecAsync(id, "whoami", user: "root");
            Assert.Equal("root\n", root.Stdout);
            var stdin = await _client.ExecAsync(id, "tr a-z A-Z", stdin: "hello");
            Assert.Equal("HELLO", stdin.Stdout);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Exec_Timeout_KillsTheCommand()
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var ct = TestContext.Current.CancellationToken;
            var response = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd = "sleep 30", timeoutSeconds = 1 }, ct);
            var json = await response.JsonAsync();
            Assert.Equal(-1, json.GetProperty("exitCode").GetInt32());
            Assert.Equal(9, json.GetProperty("signal").GetInt32());
            Assert.True(json.GetProperty("durationMs").GetInt64() < 10_000);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Exec_EventStream_StreamsStartOutputEnd()
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var ct = TestContext.Current.CancellationToken;
            using var request = new HttpRequestMessage(HttpMethod.Post, $"/v1/sandboxes/{id}/exec") { Content = Api.Json(new { cmd = "echo one; sleep 0.3; echo two >&2; exit 2" }) };
            request.Headers.Accept.ParseAdd("text/event-stream");
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var events = await Sse.ReadAllAsync(response, ct);
            Assert.Equal(["start", "stdout", "stderr", "end"], events.Select(e => e.Name).ToArray());
            Assert.Equal("one\n", events[1].Data.GetProperty("data").GetString());
            Assert.Equal(2, events[3].Data.GetProperty("exitCode").GetInt32());
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Metrics_ReflectWhatTheSandboxUses()
    {
        var id = await _client.CreateSandboxAsync(new { memoryMb = 256, diskMb = 128 });
        try
        {
            var ct = TestContext.Current.CancellationToken;
            var before = await (await _client.GetAsync($"/v1/sandboxes/{id}/metrics", ct)).JsonAsync();
            Assert.Equal(256L << 20, before.GetProperty("memoryLimitBytes").GetInt64());
            Assert.Equal(128L << 20, before.GetProperty("diskTotalBytes").GetInt64());

            // 48 MiB written to the tmpfs disk shows up as disk and, being tmpfs, as memory.
            Assert.Equal(0, (await _client.ExecAsync(id, "head -c 50331648 /dev/zero > /home/user/blob")).ExitCode);
            var after = await (await _client.GetAsync($"/v1/sandboxes/{id}/metrics", ct)).JsonAsync();
            Assert.InRange(after.GetProperty("diskUsedBytes").GetInt64() - before.GetProperty("diskUsedBytes").GetInt64(), 47L << 20, 50L << 20);
            Assert.True(after.GetProperty("memoryUsedBytes").GetInt64() >= 48L << 20, after.ToString());
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task UnknownSandbox_Answers404Problem()
    {
        var response = await _client.PostAsJsonAsync("/v1/sandboxes/doesnotexist/exec", new { cmd = "true" }, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not_found", (await response.JsonAsync()).GetProperty("code").GetString());
    }
}
