using System.Net;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.E2b;

/// <summary>
/// The E2B control plane as the Python SDK (which can't be installed here) speaks it: the v1
/// create/connect paths with the bodies Python sends, its metadata encoding, and the fields its
/// <c>from_dict</c> requires. The JS SDK paths are covered by tests/e2b/sandbox.test.mjs.
/// </summary>
public sealed class ControlPlaneTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly string[] s_sandboxFields = ["sandboxID", "clientID", "templateID", "envdVersion", "envdAccessToken", "domain"];
    private static readonly string[] s_listedFields = ["templateID", "sandboxID", "clientID", "startedAt", "endAt", "cpuCount", "memoryMB", "diskSizeMB", "state", "envdVersion", "metadata"];
    private static readonly string[] s_metricFields = ["timestamp", "timestampUnix", "cpuCount", "cpuUsedPct", "memUsed", "memTotal", "memCache", "diskUsed", "diskTotal"];

    private readonly HttpClient _e2b = E2bClient(fixture.Server, AirlockServer.ApiKey);

    [Fact]
    public async Task V1Create_PythonDefaultBody_Returns201WithEveryRequiredField()
    {
        using var cts = Api.NewTimeout();
        // Exactly what Python 2.45 sends by default (spec §1.2).
        var (status, json) = await SendAsync(HttpMethod.Post, "/sandboxes", """
            {"templateID":"base","timeout":300,"metadata":{"suite":"py"},"envVars":{"GREETING":"hi there"},"secure":true,"allow_internet_access":true}
            """, cts.Token);
        Assert.Equal(HttpStatusCode.Created, status);
        var id = json.GetProperty("sandboxID").GetString()!;
        try
        {
            foreach (var field in s_sandboxFields)
            {
                Assert.True(json.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.String && value.GetString()!.Length > 0, $"missing {field}: {json}");
            }

            Assert.Matches("^[a-z0-9]{20}$", id);
            Assert.Equal("base", json.GetProperty("templateID").GetString());
            Assert.Equal("6532622b", json.GetProperty("clientID").GetString());
            Assert.Equal("0.6.13", json.GetProperty("envdVersion").GetString());
            Assert.Equal(JsonValueKind.Null, json.GetProperty("trafficAccessToken").ValueKind);
            Assert.Equal(fixture.Server.BaseAddress.Authority, json.GetProperty("domain").GetString());

            var env = await fixture.Client.ExecAsync(id, "echo \"$GREETING\"");
            Assert.Equal("hi there\n", env.Stdout);

            var (_, detail) = await SendAsync(HttpMethod.Get, $"/sandboxes/{id}", null, cts.Token);
            var lifetime = detail.GetProperty("endAt").GetDateTimeOffset() - detail.GetProperty("startedAt").GetDateTimeOffset();
            Assert.InRange(lifetime.TotalSeconds, 299.5, 300.5);
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task V1Create_SnakeCaseFields_AreAccepted()
    {
        using var cts = Api.NewTimeout();
        var (status, json) = await SendAsync(HttpMethod.Post, "/sandboxes", """
            {"template_id":"base","timeout":60,"env_vars":{"SNAKE":"yes"},"auto_pause":false}
            """, cts.Token);
        Assert.Equal(HttpStatusCode.Created, status);
        var id = json.GetProperty("sandboxID").GetString()!;
        try
        {
            Assert.Equal("base", json.GetProperty("templateID").GetString());
            Assert.Equal("yes\n", (await fixture.Client.ExecAsync(id, "echo $SNAKE")).Stdout);
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task V1Create_WithoutTimeout_UsesTheV1Default15Seconds()
    {
        using var cts = Api.NewTimeout();
        var (status, json) = await SendAsync(HttpMethod.Post, "/sandboxes", """{"templateID":"base"}""", cts.Token);
        Assert.Equal(HttpStatusCode.Created, status);
        var id = json.GetProperty("sandboxID").GetString()!;
        try
        {
            var (_, detail) = await SendAsync(HttpMethod.Get, $"/sandboxes/{id}", null, cts.Token);
            var lifetime = detail.GetProperty("endAt").GetDateTimeOffset() - detail.GetProperty("startedAt").GetDateTimeOffset();
            Assert.InRange(lifetime.TotalSeconds, 14.5, 15.5);
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"templateID":""}""")]
    public async Task Create_WithoutTemplate_Answers400InE2bShape(string body)
    {
        using var cts = Api.NewTimeout();
        var (status, json) = await SendAsync(HttpMethod.Post, "/sandboxes", body, cts.Token);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(400, json.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Create_UnknownTemplate_Answers404TemplateNotFound()
    {
        using var cts = Api.NewTimeout();
        var (status, json) = await SendAsync(HttpMethod.Post, "/v2/sandboxes", """{"templateID":"nope"}""", cts.Token);
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal(404, json.GetProperty("code").GetInt32());
        Assert.Equal("template 'nope' not found", json.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("e2b_0000")]
    public async Task MissingOrWrongKey_Answers401WithIntegerCode(string? key)
    {
        using var cts = Api.NewTimeout();
        using var client = E2bClient(fixture.Server, key);
        foreach (var (method, path) in new[] { (HttpMethod.Post, "/sandboxes"), (HttpMethod.Get, "/v2/sandboxes"), (HttpMethod.Get, "/sandboxes/abc"), (HttpMethod.Post, "/v2/sandboxes/abc/connect") })
        {
            using var request = new HttpRequestMessage(method, path) { Content = method == HttpMethod.Post ? new StringContent("""{"templateID":"base"}""", System.Text.Encoding.UTF8, "application/json") : null };
            using var response = await client.SendAsync(request, cts.Token);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            var json = await response.JsonAsync();
            Assert.Equal(401, json.GetProperty("code").GetInt32());
        }

        // Nothing was created by the refused requests.
        var (_, list) = await SendAsync(HttpMethod.Get, "/v2/sandboxes?metadata=" + Uri.EscapeDataString("never=set"), null, cts.Token);
        Assert.Equal(0, list.GetArrayLength());
    }

    [Fact]
    public async Task ListV2_PythonEncodedMetadata_MatchesExactlyAndCarriesRequiredFields()
    {
        using var cts = Api.NewTimeout();
        var suite = Guid.NewGuid().ToString("N")[..12];
        var a = await CreateAsync(new Dictionary<string, string> { ["suite"] = suite, ["k"] = "v w", ["x"] = "a+b/c" }, cts.Token);
        var b = await CreateAsync(new Dictionary<string, string> { ["suite"] = suite, ["k"] = "v+w", ["x"] = "a b" }, cts.Token);
        try
        {
            // Python: urlencode({quote(k): quote(v)}) (quote keeps '/', urlencode is quote_plus),
            // then the HTTP client query-encodes that string once more.
            static string Quote(string s) => Uri.EscapeDataString(s).Replace("%2F", "/", StringComparison.Ordinal);
            static string Python(params (string Key, string Value)[] pairs) =>
                Uri.EscapeDataString(string.Join('&', pairs.Select(p => System.Net.WebUtility.UrlEncode(Quote(p.Key)) + "=" + System.Net.WebUtility.UrlEncode(Quote(p.Value)))));

            var (status, hitA) = await SendAsync(HttpMethod.Get, $"/v2/sandboxes?metadata={Python(("suite", suite), ("k", "v w"), ("x", "a+b/c"))}&limit=100&state=running,paused", null, cts.Token);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal([a], Ids(hitA));
            foreach (var field in s_listedFields)
            {
                Assert.True(hitA[0].TryGetProperty(field, out _), $"missing {field}: {hitA[0]}");
            }

            Assert.Equal("running", hitA[0].GetProperty("state").GetString());
            Assert.Equal(512, hitA[0].GetProperty("memoryMB").GetInt32());

            var (_, hitB) = await SendAsync(HttpMethod.Get, $"/v2/sandboxes?metadata={Python(("suite", suite), ("k", "v+w"))}", null, cts.Token);
            Assert.Equal([b], Ids(hitB));

            // AND: both pairs must match; a's k with b's x matches nothing.
            var (_, none) = await SendAsync(HttpMethod.Get, $"/v2/sandboxes?metadata={Python(("suite", suite), ("k", "v w"), ("x", "a b"))}", null, cts.Token);
            Assert.Equal(0, none.GetArrayLength());

            // The deprecated v1 list reads the same filter.
            var (_, v1) = await SendAsync(HttpMethod.Get, $"/sandboxes?metadata={Python(("suite", suite))}", null, cts.Token);
            Assert.Equal(new[] { a, b }.Order(), Ids(v1).Order());
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(a);
            await fixture.Client.DeleteSandboxAsync(b);
        }
    }

    [Fact]
    public async Task ListV2_Paging_WalksEveryItemOnceThroughXNextToken()
    {
        using var cts = Api.NewTimeout();
        var suite = Guid.NewGuid().ToString("N")[..12];
        var ids = new List<string>();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                ids.Add(await CreateAsync(new Dictionary<string, string> { ["suite"] = suite }, cts.Token));
            }

            var seen = new List<string>();
            string? token = null;
            var pages = 0;
            do
            {
                var path = $"/v2/sandboxes?metadata={Uri.EscapeDataString("suite=" + suite)}&limit=2" + (token is null ? "" : "&nextToken=" + Uri.EscapeDataString(token));
                using var response = await _e2b.GetAsync(path, cts.Token);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                seen.AddRange(Ids(await response.JsonAsync()));
                token = response.Headers.TryGetValues("X-Next-Token", out var values) ? values.Single() : null;
                pages++;
            }
            while (token is not null && pages < 10);

            Assert.Equal(3, pages);
            Assert.Equal(ids.AsEnumerable().Reverse(), seen);
        }
        finally
        {
            foreach (var id in ids)
            {
                await fixture.Client.DeleteSandboxAsync(id);
            }
        }
    }

    [Theory]
    [InlineData("limit=0")]
    [InlineData("limit=101")]
    [InlineData("limit=x")]
    [InlineData("state=sleeping")]
    [InlineData("order=sideways")]
    [InlineData("nextToken=%25%25notbase64")]
    [InlineData("metadata=novalue")]
    public async Task ListV2_InvalidQuery_Answers400InE2bShape(string query)
    {
        using var cts = Api.NewTimeout();
        var (status, json) = await SendAsync(HttpMethod.Get, "/v2/sandboxes?" + query, null, cts.Token);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(400, json.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task V1Connect_RunningSandbox_Answers200AndExtendsButNeverShortens()
    {
        using var cts = Api.NewTimeout();
        var id = await CreateAsync(null, cts.Token, timeout: 120);
        try
        {
            var (status, json) = await SendAsync(HttpMethod.Post, $"/sandboxes/{id}/connect", """{"timeout":10}""", cts.Token);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(id, json.GetProperty("sandboxID").GetString());
            foreach (var field in s_sandboxFields)
            {
                Assert.True(json.TryGetProperty(field, out _), $"missing {field}");
            }

            var (_, detail) = await SendAsync(HttpMethod.Get, $"/sandboxes/{id}", null, cts.Token);
            Assert.True(detail.GetProperty("endAt").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddSeconds(100), "connect shortened the TTL");
            Assert.Equal(json.GetProperty("envdAccessToken").GetString(), detail.GetProperty("envdAccessToken").GetString());

            (status, _) = await SendAsync(HttpMethod.Post, $"/sandboxes/{id}/connect", """{"timeout":3600}""", cts.Token);
            Assert.Equal(HttpStatusCode.OK, status);
            (_, detail) = await SendAsync(HttpMethod.Get, $"/sandboxes/{id}", null, cts.Token);
            Assert.InRange((detail.GetProperty("endAt").GetDateTimeOffset() - DateTimeOffset.UtcNow).TotalSeconds, 3590, 3601);
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [InlineData("POST", "/sandboxes/nosuchsandbox0000000/connect", """{"timeout":300}""")]
    [InlineData("POST", "/v2/sandboxes/nosuchsandbox0000000/connect", "{}")]
    [InlineData("GET", "/sandboxes/nosuchsandbox0000000", null)]
    [InlineData("DELETE", "/sandboxes/nosuchsandbox0000000", null)]
    [InlineData("POST", "/sandboxes/nosuchsandbox0000000/timeout", """{"timeout":30}""")]
    [InlineData("GET", "/sandboxes/nosuchsandbox0000000/metrics", null)]
    [InlineData("POST", "/sandboxes/nosuchsandbox0000000/pause", "{}")]
    [InlineData("POST", "/sandboxes/nosuchsandbox0000000/resume", "{}")]
    public async Task UnknownSandbox_Answers404WithIntegerCode(string method, string path, string? body)
    {
        using var cts = Api.NewTimeout();
        var (status, json) = await SendAsync(new HttpMethod(method), path, body, cts.Token);
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal(404, json.GetProperty("code").GetInt32());
        Assert.False(string.IsNullOrEmpty(json.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task Metrics_HaveEveryFieldPythonRequires()
    {
        using var cts = Api.NewTimeout();
        var id = await CreateAsync(null, cts.Token);
        try
        {
            var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var (status, json) = await SendAsync(HttpMethod.Get, $"/sandboxes/{id}/metrics?start={now - 60}&end={now + 60}", null, cts.Token);
            Assert.Equal(HttpStatusCode.OK, status);
            var metric = Assert.Single(json.EnumerateArray());
            foreach (var field in s_metricFields)
            {
                Assert.True(metric.TryGetProperty(field, out _), $"missing {field}: {metric}");
            }

            Assert.InRange(metric.GetProperty("timestampUnix").GetInt64(), now - 5, now + 60);
            Assert.True(metric.GetProperty("memUsed").GetInt64() > 0);
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task PauseAndResume_OfARunningSandbox_Answer409AndLeaveItRunning()
    {
        using var cts = Api.NewTimeout();
        var id = await CreateAsync(null, cts.Token);
        try
        {
            var (status, json) = await SendAsync(HttpMethod.Post, $"/sandboxes/{id}/pause", "{}", cts.Token);
            Assert.Equal(HttpStatusCode.Conflict, status);
            Assert.Equal(409, json.GetProperty("code").GetInt32());
            (status, json) = await SendAsync(HttpMethod.Post, $"/sandboxes/{id}/resume", """{"timeout":60}""", cts.Token);
            Assert.Equal(HttpStatusCode.Conflict, status);
            Assert.Equal(409, json.GetProperty("code").GetInt32());
            Assert.Equal("ok\n", (await fixture.Client.ExecAsync(id, "echo ok")).Stdout);
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task SetTimeout_OutOfRange_Answers400AndKeepsTheTtl()
    {
        using var cts = Api.NewTimeout();
        var id = await CreateAsync(null, cts.Token, timeout: 120);
        try
        {
            var (status, json) = await SendAsync(HttpMethod.Post, $"/sandboxes/{id}/timeout", """{"timeout":0}""", cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(400, json.GetProperty("code").GetInt32());
            var (_, detail) = await SendAsync(HttpMethod.Get, $"/sandboxes/{id}", null, cts.Token);
            Assert.True(detail.GetProperty("endAt").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddSeconds(100));
        }
        finally
        {
            await fixture.Client.DeleteSandboxAsync(id);
        }
    }

    private static HttpClient E2bClient(AirlockServer server, string? key)
    {
        var client = server.CreateClient(key: null);
        if (key is not null)
        {
            client.DefaultRequestHeaders.Add("X-API-KEY", key);
        }

        return client;
    }

    private async Task<string> CreateAsync(Dictionary<string, string>? metadata, CancellationToken cancellationToken, int timeout = 300)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, object?> { ["templateID"] = "base", ["timeout"] = timeout, ["metadata"] = metadata ?? [] });
        var (status, json) = await SendAsync(HttpMethod.Post, "/sandboxes", body, cancellationToken);
        Assert.True(status == HttpStatusCode.Created, $"create: {(int)status} {json}");
        return json.GetProperty("sandboxID").GetString()!;
    }

    private async Task<(HttpStatusCode Status, JsonElement Json)> SendAsync(HttpMethod method, string path, string? body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        }

        using var response = await _e2b.SendAsync(request, cancellationToken);
        return (response.StatusCode, await response.JsonAsync());
    }

    private static List<string> Ids(JsonElement list) => list.EnumerateArray().Select(e => e.GetProperty("sandboxID").GetString()!).ToList();
}
