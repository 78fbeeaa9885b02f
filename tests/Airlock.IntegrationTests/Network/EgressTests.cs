using System.Net;
using System.Net.Http.Json;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Network;

/// <summary>A test internet (its own netns) and a server whose DNS upstream is that internet's DNS server.</summary>
public sealed class EgressFixture : IAsyncLifetime
{
    public TestInternet Internet { get; private set; } = null!;

    public AirlockServer Server { get; private set; } = null!;

    public HttpClient Client => Server.Client;

    public async ValueTask InitializeAsync()
    {
        Internet = await TestInternet.StartAsync();
        Server = await AirlockServer.StartAsync(environment: new Dictionary<string, string> { ["Airlock__Network__DnsServers__0"] = Internet.Server1 });
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        await Internet.DisposeAsync();
    }
}

/// <summary>Network modes and egress rules, against the test's own internet only.</summary>
public sealed class EgressTests(EgressFixture fixture) : IClassFixture<EgressFixture>
{
    private readonly HttpClient _client = fixture.Client;
    private readonly TestInternet _net = fixture.Internet;

    /// <summary>Python: <c>get(url)</c> prints <c>url=&lt;body&gt;</c> or <c>url=ERR:&lt;kind&gt;</c>; <c>tcp(host, port)</c> likewise; <c>res(name)</c> resolves.</summary>
    private const string Probe = """
        import socket, urllib.request
        def get(url):
            try:
                print(f"{url}=" + urllib.request.urlopen(url, timeout=3).read().decode(), flush=True)
            except Exception as e:
                print(f"{url}=ERR:{type(e).__name__}:{getattr(e, 'reason', e)}", flush=True)
        def tcp(host, port):
            s = socket.socket(); s.settimeout(2)
            try:
                s.connect((host, port)); print(f"{host}:{port}=CONNECTED", flush=True)
            except OSError as e:
                print(f"{host}:{port}=ERR:{type(e).__name__}", flush=True)
            finally:
                s.close()
        def res(name):
            try:
                print(f"{name}=" + socket.gethostbyname(name), flush=True)
            except OSError as e:
                print(f"{name}=ERR:{type(e).__name__}", flush=True)

        """;

    private async Task<Dictionary<string, string>> ProbeAsync(string id, string script, string user = "user")
    {
        var result = await _client.ExecAsync(id, "python3 -", user: user, timeoutSeconds: 90, stdin: Probe + script);
        var lines = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = line.IndexOf('=');
            if (eq > 0)
            {
                lines[line[..eq]] = line[(eq + 1)..];
            }
        }

        return lines;
    }

    private async Task<string> CreateAsync(object? network)
    {
        using var cts = Api.NewTimeout();
        var response = await _client.PostAsJsonAsync<object>("/v1/sandboxes", network is null ? new { } : new { network }, cts.Token);
        var body = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(response.StatusCode == HttpStatusCode.Created, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!;
    }

    private async Task SetNetworkAsync(string id, object network)
    {
        using var cts = Api.NewTimeout();
        using var response = await _client.PutAsJsonAsync($"/v1/sandboxes/{id}/network", network, cts.Token);
        Assert.True(response.StatusCode == HttpStatusCode.NoContent, await response.Content.ReadAsStringAsync(cts.Token));
    }

    private string Url1 => $"http://{_net.Server1}/";

    private string Url2 => $"http://{_net.Server2}/";

    [Fact]
    public async Task None_ReachesNothing()
    {
        var id = await CreateAsync(null);
        try
        {
            var r = await ProbeAsync(id, $"get('{Url1}')\ntcp('{_net.Server1}', 53)\nres('one.airlock.test')\n");
            Assert.StartsWith("ERR", r[Url1]);
            Assert.StartsWith("ERR", r[$"{_net.Server1}:53"]);
            Assert.StartsWith("ERR", r["one.airlock.test"]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Internet_ReachesTestHost_AndCountsBytes()
    {
        var id = await CreateAsync(new { mode = "internet" });
        try
        {
            var r = await ProbeAsync(id, $"get('{Url1}')\nget('{Url2}')\nres('one.airlock.test')\n");
            Assert.Equal("server-1", r[Url1]);
            Assert.Equal("server-2", r[Url2]);
            Assert.Equal(_net.Server1, r["one.airlock.test"]);

            using var cts = Api.NewTimeout();
            var sandbox = await _client.GetFromJsonAsync<JsonElement>($"/v1/sandboxes/{id}", cts.Token);
            Assert.Equal("internet", sandbox.GetProperty("network").GetProperty("mode").GetString());
            var metrics = await _client.GetFromJsonAsync<JsonElement>($"/v1/sandboxes/{id}/metrics", cts.Token);
            Assert.True(metrics.GetProperty("egressSentBytes").GetInt64() > 0, metrics.ToString());
            Assert.True(metrics.GetProperty("egressReceivedBytes").GetInt64() > 0, metrics.ToString());
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [InlineData("allow")] // allow-list: only server 1 (port 80) is admitted
    [InlineData("deny")] // deny-list: only server 2 is refused
    public async Task EgressList_AdmitsServerOne_RefusesServerTwo(string list)
    {
        var id = await CreateAsync(list == "allow"
            ? new { mode = "internet", allow = new[] { _net.Server1 + ":80" } }
            : new { mode = "internet", deny = new[] { _net.Server2 + "/32" } });
        try
        {
            var r = await ProbeAsync(id, $"get('{Url1}')\nget('{Url2}')\n");
            Assert.Equal("server-1", r[Url1]);
            Assert.StartsWith("ERR", r[Url2]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    private string UrlPrivate => $"http://{_net.PrivateServer}/";

    [Theory]
    [InlineData("internet")] // no rules: public admitted, private ranges refused
    [InlineData("deny-list")] // a deny rule for something else changes nothing for private ranges
    public async Task PrivateRange_NoAllowRule_IsRefused(string list)
    {
        var id = await CreateAsync(list == "internet"
            ? new { mode = "internet" }
            : new { mode = "internet", deny = new[] { _net.Server2 } });
        try
        {
            var r = await ProbeAsync(id, $"get('{UrlPrivate}')\nget('{Url1}')\n");
            Assert.StartsWith("ERR", r[UrlPrivate]);
            // Control: the same sandbox reaches the public side of the same test host.
            Assert.Equal("server-1", r[Url1]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [InlineData("allow-list")]
    [InlineData("allow-with-deny")]
    public async Task PrivateRange_AllowRuleNamesIt_IsReachable(string list)
    {
        var id = await CreateAsync(list == "allow-list"
            ? new { mode = "internet", allow = new[] { "10.255.100.0/24" } }
            : new { mode = "internet", allow = new[] { _net.PrivateServer + ":80" }, deny = new[] { _net.Server2 } });
        try
        {
            var r = await ProbeAsync(id, $"get('{UrlPrivate}')\n");
            Assert.Equal("private", r[UrlPrivate]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Internet_ParallelCreatesAndDeletes_AllSucceedAndLeaveNoChains()
    {
        var ids = new System.Collections.Concurrent.ConcurrentBag<string>();
        async Task<string> CreateOneAsync()
        {
            using var cts = Api.NewTimeout(TimeSpan.FromSeconds(120));
            using var response = await _client.PostAsJsonAsync("/v1/sandboxes", new { network = new { mode = "internet" } }, cts.Token);
            var body = await response.Content.ReadAsStringAsync(cts.Token);
            if (response.StatusCode == HttpStatusCode.Created)
            {
                ids.Add(JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!);
            }

            return $"{(int)response.StatusCode} {body}";
        }

        try
        {
            // Some sandboxes go while others come: every create's and delete's transaction overlaps others.
            var first = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => CreateOneAsync()));
            var old = ids.ToList();
            var creates = Enumerable.Range(0, 8).Select(_ => CreateOneAsync()).ToList();
            await Task.WhenAll(old.Select(_client.DeleteSandboxAsync));
            var second = await Task.WhenAll(creates);
            Assert.All(first.Concat(second), r => Assert.StartsWith("201", r, StringComparison.Ordinal));
            Assert.Equal(12, ids.Count);

            // The survivors' networks work, and the deleted ones left nothing in the table.
            var ruleset = await TestInternet.RunAsync("nft", "list ruleset");
            Assert.All(old, id => Assert.DoesNotContain(id, ruleset, StringComparison.Ordinal));
            var fresh = ids.Except(old).ToList();
            Assert.All(fresh, id => Assert.Contains($"jump in_{id}", ruleset, StringComparison.Ordinal));
            Assert.Equal("server-1", (await ProbeAsync(fresh[0], $"get('{Url1}')\n"))[Url1]);
            await Task.WhenAll(fresh.Select(_client.DeleteSandboxAsync));
            ruleset = await TestInternet.RunAsync("nft", "list ruleset");
            Assert.All(fresh, id => Assert.DoesNotContain(id, ruleset, StringComparison.Ordinal));
        }
        finally
        {
            await Task.WhenAll(ids.Select(_client.DeleteSandboxAsync));
        }
    }

    [Fact]
    public async Task Kill_DestroyFails_StillRemovesTheNetwork()
    {
        var id = await CreateAsync(new { mode = "internet" });
        // An immutable file in the sandbox's state directory: the runtime cannot delete it, so its destroy throws.
        var stuck = Path.Combine(fixture.Server.DataDir, "sandboxes", id, "stuck");
        await File.WriteAllTextAsync(stuck, "", TestContext.Current.CancellationToken);
        await TestInternet.RunAsync("chattr", $"+i {stuck}");
        try
        {
            Assert.Contains($"out_{id}", await TestInternet.RunAsync("nft", "list ruleset"));
            await _client.DeleteSandboxAsync(id);
            Assert.DoesNotContain(id, await TestInternet.RunAsync("nft", "list ruleset"));
            for (var i = 0; i < 50 && (await TestInternet.RunAsync("ip", "-o link show")).Contains("al" + id[..10], StringComparison.Ordinal); i++)
            {
                await Task.Delay(100, TestContext.Current.CancellationToken);
            }

            Assert.DoesNotContain("al" + id[..10], await TestInternet.RunAsync("ip", "-o link show"));
        }
        finally
        {
            await TestInternet.RunAsync("chattr", $"-i {stuck}", check: false);
        }
    }

    [Fact]
    public async Task DomainRule_FollowsTheResolvedName()
    {
        var id = await CreateAsync(new { mode = "internet", allow = new[] { "one.airlock.test" } });
        try
        {
            // Before resolving, the address is not allowed; resolving through the sandbox's DNS lets it in.
            var before = await ProbeAsync(id, $"get('{Url1}')\n");
            Assert.StartsWith("ERR", before[Url1]);
            var r = await ProbeAsync(id, $"res('one.airlock.test')\nget('http://one.airlock.test/')\nres('two.airlock.test')\nget('{Url2}')\n");
            Assert.Equal(_net.Server1, r["one.airlock.test"]);
            Assert.Equal("server-1", r["http://one.airlock.test/"]);
            // A name no rule covers is refused by the sandbox's DNS, and its address stays closed.
            Assert.StartsWith("ERR", r["two.airlock.test"]);
            Assert.StartsWith("ERR", r[Url2]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [InlineData("none")]
    [InlineData("internet")]
    [InlineData("internet-allow-all")]
    public async Task HostApiNeighbourAndMetadata_AreUnreachable(string mode)
    {
        using var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        var hostPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        var apiPort = fixture.Server.BaseAddress.Port;
        object network = mode switch
        {
            "none" => new { mode = "none" },
            "internet" => new { mode = "internet" },
            // Even "allow everything" never opens the host, other sandboxes or the metadata address.
            _ => new { mode = "internet", allow = new[] { "0.0.0.0/0" } },
        };
        var neighbour = await CreateAsync(new { mode = "internet" });
        var id = await CreateAsync(network);
        try
        {
            await _client.StartInSandboxAsync(neighbour, "cd /tmp && exec python3 -m http.server 8000 --bind 0.0.0.0", 8000);
            var neighbourAddress = (await _client.ExecAsync(neighbour, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).Stdout.Trim();
            Assert.False(string.IsNullOrEmpty(neighbourAddress));
            var ownGateway = mode == "none" ? null : (await _client.ExecAsync(id, "ip route | awk '/default/ {print $3}'")).Stdout.Trim();
            var targets = NetworkInterface.GetAllNetworkInterfaces()
                .SelectMany(i => i.GetIPProperties().UnicastAddresses)
                .Where(a => a.Address.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a.Address))
                .Select(a => a.Address.ToString())
                // Other test internets (concurrent test runs) come and go: once one's address has
                // left the host it is just a public address. Our own stays for the whole test.
                .Where(a => !a.StartsWith("198.51.100.", StringComparison.Ordinal))
                .Append(_net.HostSide)
                .Append(neighbourAddress)
                .Concat(ownGateway is { Length: > 0 } ? [ownGateway] : [])
                .Distinct()
                .ToList();
            var script = string.Join('\n', targets.SelectMany(a => new[] { $"tcp('{a}', {apiPort})", $"tcp('{a}', {hostPort})", $"tcp('{a}', 8000)", $"tcp('{a}', 22)" }))
                + "\ntcp('169.254.169.254', 80)\n";
            foreach (var who in new[] { "user", "root" })
            {
                var r = await ProbeAsync(id, script, who);
                Assert.True(r.Count == (targets.Count * 4) + 1, string.Join(", ", r));
                Assert.All(r, kv => Assert.True(kv.Value != "CONNECTED", $"{kv.Key} reachable from inside ({mode}, {who})"));
            }

            if (mode != "none")
            {
                // Control: the same sandbox does reach the test internet.
                Assert.Equal("server-1", (await ProbeAsync(id, $"get('{Url1}')\n"))[Url1]);
            }
        }
        finally
        {
            listener.Stop();
            await _client.DeleteSandboxAsync(id);
            await _client.DeleteSandboxAsync(neighbour);
        }
    }

    [Fact]
    public async Task SetNetwork_WhileRunning_ChangesModeAndRules()
    {
        var id = await CreateAsync(null);
        try
        {
            Assert.StartsWith("ERR", (await ProbeAsync(id, $"get('{Url1}')\n"))[Url1]);

            await SetNetworkAsync(id, new { mode = "internet" });
            var r = await ProbeAsync(id, $"get('{Url1}')\nget('{Url2}')\n");
            Assert.Equal("server-1", r[Url1]);
            Assert.Equal("server-2", r[Url2]);

            await SetNetworkAsync(id, new { mode = "internet", allow = new[] { _net.Server2 } });
            r = await ProbeAsync(id, $"get('{Url1}')\nget('{Url2}')\n");
            Assert.StartsWith("ERR", r[Url1]);
            Assert.Equal("server-2", r[Url2]);

            await SetNetworkAsync(id, new { mode = "none" });
            r = await ProbeAsync(id, $"get('{Url2}')\n");
            Assert.StartsWith("ERR", r[Url2]);
            var links = await _client.ExecAsync(id, "ip -o link show | awk -F': ' '{print $2}'");
            Assert.Equal("lo", links.Stdout.Trim());
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task SetNetwork_BadRule_Answers400()
    {
        var id = await CreateAsync(null);
        try
        {
            using var cts = Api.NewTimeout();
            using var response = await _client.PutAsJsonAsync($"/v1/sandboxes/{id}/network", new { mode = "internet", allow = new[] { "not a rule!" } }, cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            using var mode = await _client.PutAsJsonAsync($"/v1/sandboxes/{id}/network", new { mode = "satellite" }, cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, mode.StatusCode);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Restart_InternetSandbox_KeepsItsNetworkAndRules()
    {
        var env = new Dictionary<string, string> { ["Airlock__Network__DnsServers__0"] = _net.Server1 };
        var first = await AirlockServer.StartAsync(environment: env, cancellationToken: TestContext.Current.CancellationToken);
        AirlockServer? second = null;
        try
        {
            var id = await first.Client.CreateSandboxAsync(new { network = new { mode = "internet", allow = new[] { _net.Server1 } } });
            var probe = $"get('{Url1}')\nget('{Url2}')\n";
            var before = await ProbeWithAsync(first.Client, id, probe);
            Assert.Equal("server-1", before[Url1]);
            await first.CrashAsync();

            second = await AirlockServer.StartAsync(first.DataDir, TestContext.Current.CancellationToken, env);
            var after = await ProbeWithAsync(second.Client, id, probe);
            Assert.Equal("server-1", after[Url1]);
            Assert.StartsWith("ERR", after[Url2]);
            await second.Client.DeleteSandboxAsync(id);
            Assert.DoesNotContain(id, await TestInternet.RunAsync("nft", "list ruleset"));
        }
        finally
        {
            if (second is not null)
            {
                await second.DisposeAsync();
            }

            await first.DisposeAsync();
            try
            {
                Directory.Delete(first.DataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// Python: until /tmp/stop exists, connects to the sandbox's gateway (the host) at argv[1] every
    /// ~20 ms; counts attempts in /tmp/tries and appends CONNECTED to /tmp/reached on any success.
    /// </summary>
    private const string HostKnocker = """
        import os, socket, subprocess, sys
        gw = subprocess.run(["sh", "-c", "ip route | awk '/default/ {print $3}'"], capture_output=True, text=True).stdout.strip()
        port, n = int(sys.argv[1]), 0
        while not os.path.exists("/tmp/stop") and n < 20000:
            s = socket.socket(); s.settimeout(0.02)
            try:
                s.connect((gw, port)); open("/tmp/reached", "a").write("CONNECTED\n")
            except OSError:
                pass
            finally:
                s.close()
            n += 1
            if n % 10 == 0:
                open("/tmp/tries", "w").write(str(n))
        """;

    [Fact]
    public async Task Restart_SeveralInternetSandboxes_NeverReachTheHost()
    {
        using var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        var hostPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        var env = new Dictionary<string, string> { ["Airlock__Network__DnsServers__0"] = _net.Server1 };
        var first = await AirlockServer.StartAsync(environment: env, cancellationToken: TestContext.Current.CancellationToken);
        AirlockServer? second = null;
        var ids = new List<string>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var id = await first.Client.CreateSandboxAsync(new { network = new { mode = "internet" } });
                ids.Add(id);
                await first.Client.WriteSandboxFileAsync(id, "/tmp/knock.py", HostKnocker);
                Assert.Equal(0, (await first.Client.ExecAsync(id, $"nohup python3 /tmp/knock.py {hostPort} >/tmp/knock.log 2>&1 &\necho started")).ExitCode);
            }

            // Knocking before the restart: refused, and the knockers run.
            await Task.Delay(500, TestContext.Current.CancellationToken);
            foreach (var id in ids)
            {
                var r = await first.Client.ExecAsync(id, "cat /tmp/tries; cat /tmp/reached 2>/dev/null; true");
                Assert.DoesNotContain("CONNECTED", r.Stdout, StringComparison.Ordinal);
                Assert.True(int.TryParse(r.Stdout.Trim(), out var tries) && tries > 0, r.Stdout + r.Stderr);
            }

            await first.CrashAsync();
            second = await AirlockServer.StartAsync(first.DataDir, TestContext.Current.CancellationToken, env);

            // Recovery is over before the server listens: every sandbox's dispatch is back.
            var ruleset = await TestInternet.RunAsync("nft", "list ruleset");
            Assert.All(ids, id => Assert.Contains($"jump in_{id}", ruleset, StringComparison.Ordinal));
            foreach (var id in ids)
            {
                var r = await second.Client.ExecAsync(id, "touch /tmp/stop; sleep 0.1; cat /tmp/reached 2>/dev/null; cat /tmp/knock.log; true");
                Assert.True(!r.Stdout.Contains("CONNECTED", StringComparison.Ordinal), $"sandbox {id} reached the host during recovery: {r.Stdout}");
            }

            // Control: their networks still work.
            Assert.Equal("server-1", (await ProbeWithAsync(second.Client, ids[^1], $"get('{Url1}')\n"))[Url1]);
        }
        finally
        {
            listener.Stop();
            foreach (var id in ids)
            {
                await (second ?? first).Client.DeleteSandboxAsync(id);
            }

            if (second is not null)
            {
                await second.DisposeAsync();
            }

            await first.DisposeAsync();
            try
            {
                Directory.Delete(first.DataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task<Dictionary<string, string>> ProbeWithAsync(HttpClient client, string id, string script)
    {
        var result = await client.ExecAsync(id, "python3 -", timeoutSeconds: 90, stdin: Probe + script);
        return result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => l.Contains('=', StringComparison.Ordinal))
            .ToDictionary(l => l[..l.IndexOf('=', StringComparison.Ordinal)], l => l[(l.IndexOf('=', StringComparison.Ordinal) + 1)..]);
    }

    [Fact]
    public async Task Kill_RemovesRulesAndInterfaces()
    {
        var id = await CreateAsync(new { mode = "internet", allow = new[] { "one.airlock.test" } });
        var hostEnd = "al" + id[..10];
        Assert.Contains(hostEnd, await TestInternet.RunAsync("ip", "-o link show"));
        Assert.Contains($"out_{id}", await TestInternet.RunAsync("nft", "list ruleset"));
        await _client.DeleteSandboxAsync(id);
        Assert.DoesNotContain(id, await TestInternet.RunAsync("nft", "list ruleset"));
        // The kernel deletes veths asynchronously: allow it a moment.
        for (var i = 0; i < 50 && (await TestInternet.RunAsync("ip", "-o link show")).Contains(hostEnd, StringComparison.Ordinal); i++)
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }

        Assert.DoesNotContain(hostEnd, await TestInternet.RunAsync("ip", "-o link show"));
    }
}
