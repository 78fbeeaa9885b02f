using System.Net.Http.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Sandboxes;

/// <summary>
/// The warm pool (Airlock:Sandboxes:WarmPoolSize): sandboxes of the default shape started ahead of
/// time, claimed by a create of that shape, refilled in the background, invisible until claimed,
/// destroyed on a graceful stop and reaped by recovery after a crash.
/// </summary>
public sealed class WarmPoolTests
{
    private static Dictionary<string, string> Pool(int size) => new() { ["Airlock__Sandboxes__WarmPoolSize"] = size.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    /// <summary>Sandboxes with a running init that the API does not list: the pool, seen from outside.</summary>
    private static async Task<Dictionary<string, int>> PooledAsync(AirlockServer server)
    {
        var listed = (await (await server.Client.GetAsync("/v1/sandboxes", TestContext.Current.CancellationToken)).JsonAsync())
            .EnumerateArray().Select(s => s.GetProperty("id").GetString()!).ToHashSet();
        var pooled = new Dictionary<string, int>();
        var root = Path.Combine(server.DataDir, "sandboxes");
        foreach (var dir in Directory.Exists(root) ? Directory.EnumerateDirectories(root) : [])
        {
            var id = Path.GetFileName(dir);
            var pidFile = Path.Combine(dir, "init.pid");
            if (!listed.Contains(id) && File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile).Split(' ')[0], out var pid))
            {
                pooled[id] = pid;
            }
        }

        return pooled;
    }

    private static async Task<Dictionary<string, int>> WaitForPoolAsync(AirlockServer server, int size)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var pooled = await PooledAsync(server);
            if (pooled.Count >= size)
            {
                return pooled;
            }

            Assert.True(DateTime.UtcNow < deadline, $"pool not filled to {size} (has {pooled.Count}); log:\n{server.Log}");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task Create_DefaultShape_ClaimsPooledSandboxWithRequestFields()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await AirlockServer.StartAsync(cancellationToken: ct, environment: Pool(2));
        var pooled = await WaitForPoolAsync(server, 2);

        var before = DateTimeOffset.UtcNow;
        var response = await server.Client.PostAsJsonAsync("/v1/sandboxes", new
        {
            timeoutSeconds = 120,
            metadata = new Dictionary<string, string> { ["k"] = "v" },
            env = new Dictionary<string, string> { ["POOL_VAR"] = "claimed" },
        }, ct);
        var created = await response.JsonAsync();
        var id = created.GetProperty("id").GetString()!;
        Assert.Contains(id, pooled.Keys);
        Assert.Equal("v", created.GetProperty("metadata").GetProperty("k").GetString());
        // The TTL starts at the claim, not when the pool made the sandbox.
        var expires = created.GetProperty("expiresAt").GetDateTimeOffset();
        Assert.InRange(expires, before.AddSeconds(110), before.AddSeconds(130));

        var exec = await server.Client.ExecAsync(id, "echo $POOL_VAR; whoami; echo x > /home/user/f && cat /home/user/f");
        Assert.Equal("claimed\nuser\nx\n", exec.Stdout);
        // Only the claimed one is visible.
        var listed = (await (await server.Client.GetAsync("/v1/sandboxes", ct)).JsonAsync()).EnumerateArray().Select(s => s.GetProperty("id").GetString()).ToList();
        Assert.Equal([id], listed);
        await server.Client.DeleteSandboxAsync(id);
    }

    [Fact]
    public async Task Take_RefillsPool_OtherShapeBypassesIt()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await AirlockServer.StartAsync(cancellationToken: ct, environment: Pool(2));
        var first = await WaitForPoolAsync(server, 2);
        var claimed = await server.Client.CreateSandboxAsync();
        Assert.Contains(claimed, first.Keys);
        var refilled = await WaitForPoolAsync(server, 2);
        Assert.DoesNotContain(claimed, refilled.Keys);

        // A shape the pool does not hold starts a new sandbox and leaves the pool alone.
        var other = await server.Client.CreateSandboxAsync(new { memoryMb = 256 });
        Assert.DoesNotContain(other, refilled.Keys);
        Assert.Equal(refilled.Keys.Order(), (await PooledAsync(server)).Keys.Order());
        await server.Client.DeleteSandboxAsync(claimed);
        await server.Client.DeleteSandboxAsync(other);
    }

    [Fact]
    public async Task PoolSizeZero_CreatesCold_NoPooledSandboxes()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await AirlockServer.StartAsync(cancellationToken: ct, environment: Pool(0));
        await Task.Delay(1000, ct);
        Assert.Empty(await PooledAsync(server));
        var id = await server.Client.CreateSandboxAsync();
        Assert.Equal("ok\n", (await server.Client.ExecAsync(id, "echo ok")).Stdout);
        await server.Client.DeleteSandboxAsync(id);
        Assert.Empty(await PooledAsync(server));
    }

    [Fact]
    public async Task GracefulStop_DestroysPooledSandboxes()
    {
        var ct = TestContext.Current.CancellationToken;
        var server = await AirlockServer.StartAsync(cancellationToken: ct, environment: Pool(2));
        var pooled = await WaitForPoolAsync(server, 2);
        await server.DisposeAsync();
        foreach (var pid in pooled.Values)
        {
            Assert.False(Alive(pid), $"pooled init {pid} outlived a graceful stop");
        }
    }

    [Fact]
    public async Task ServerCrash_PooledSandboxesReapedAtRecovery_NothingLeft()
    {
        var ct = TestContext.Current.CancellationToken;
        var server = await AirlockServer.StartAsync(cancellationToken: ct, environment: Pool(3));
        var dataDir = server.DataDir;
        try
        {
            // A claimed sandbox (taken from a full pool, so not a cold create) and a refilled pool at the crash.
            var first = await WaitForPoolAsync(server, 3);
            var claimed = await server.Client.CreateSandboxAsync(new { timeoutSeconds = 600 });
            Assert.Contains(claimed, first.Keys);
            var pooled = await WaitForPoolAsync(server, 3);
            Assert.DoesNotContain(claimed, pooled.Keys);
            await server.CrashAsync();
            foreach (var pid in pooled.Values)
            {
                Assert.True(Alive(pid), "sandboxes outlive a crashed server until it restarts");
            }

            server = await AirlockServer.StartAsync(dataDir, ct, environment: Pool(0));
            // The claimed sandbox is re-adopted; the pooled ones are reaped: no process, state dir or cgroup.
            var listed = (await (await server.Client.GetAsync("/v1/sandboxes", ct)).JsonAsync()).EnumerateArray().Select(s => s.GetProperty("id").GetString()).ToList();
            Assert.Equal([claimed], listed);
            foreach (var (id, pid) in pooled)
            {
                Assert.False(Alive(pid), $"pooled init {pid} survived recovery");
                Assert.False(Directory.Exists(Path.Combine(dataDir, "sandboxes", id)), $"state dir of pooled {id} left");
                var cgroups = Directory.EnumerateDirectories("/sys/fs/cgroup").Prepend("/sys/fs/cgroup")
                    .Where(Directory.Exists)
                    .SelectMany(h => Directory.EnumerateDirectories(h, "airlock*"))
                    .Select(parent => Path.Combine(parent, id))
                    .Where(Directory.Exists)
                    .ToList();
                Assert.Empty(cgroups);
            }

            await server.Client.DeleteSandboxAsync(claimed);
        }
        finally
        {
            await server.DisposeAsync();
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static bool Alive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
