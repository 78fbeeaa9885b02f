using System.Net;
using System.Net.Http.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Sandboxes;

/// <summary>
/// Nothing leaks: many create/kill cycles, then a SIGKILL of the server mid-traffic and a restart.
/// Sandboxes survive the crash and are re-adopted; a sandbox whose init died meanwhile and
/// resources no record owns are reaped; afterwards no cgroup, state dir, mount or process is left.
/// </summary>
public sealed class LeakAndRecoveryTests
{
    private static readonly string[] s_hierarchies = Directory.Exists("/sys/fs/cgroup/memory")
        ? ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/unified"]
        : ["/sys/fs/cgroup"];

    /// <summary>Every airlock-owned cgroup parent (one per server data dir) in every hierarchy.</summary>
    private static IEnumerable<string> CgroupRoots() =>
        s_hierarchies.Where(Directory.Exists).SelectMany(h => Directory.EnumerateDirectories(h, "airlock*"));

    [Fact]
    public async Task CreateKillCycles_LeaveNothingBehind()
    {
        await using var server = await AirlockServer.StartAsync(cancellationToken: TestContext.Current.CancellationToken);
        var ids = new List<string>();
        for (var i = 0; i < 25; i++)
        {
            var id = await server.Client.CreateSandboxAsync(new { memoryMb = 128 });
            ids.Add(id);
            if (i % 5 == 0)
            {
                // Some with a running child and a pty, so there are fds and processes to clean.
                await server.Client.PostAsJsonAsync($"/v1/sandboxes/{id}/processes", new { cmd = "sleep 100" }, TestContext.Current.CancellationToken);
                await server.Client.ExecAsync(id, "echo x > /tmp/f");
            }

            await server.Client.DeleteSandboxAsync(id);
        }

        await AssertNoTraceAsync(server.DataDir, ids);
    }

    [Fact]
    public async Task ServerCrash_MidTraffic_SandboxesReadoptedOrReaped_NothingLeaks()
    {
        var ct = TestContext.Current.CancellationToken;
        var server = await AirlockServer.StartAsync(cancellationToken: ct);
        var dataDir = server.DataDir;
        var ids = new List<string>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                ids.Add(await server.Client.CreateSandboxAsync(new { timeoutSeconds = 600 }));
            }

            await server.Client.ExecAsync(ids[0], "echo survived > /home/user/mark");

            // Traffic in flight when the server dies: long commands, streams and creates.
            var traffic = new List<Task>();
            foreach (var id in ids)
            {
                traffic.Add(server.Client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd = "sleep 20" }, ct));
            }

            for (var i = 0; i < 3; i++)
            {
                traffic.Add(server.Client.PostAsJsonAsync("/v1/sandboxes", new { }, ct));
            }

            await Task.Delay(300, ct);
            await server.CrashAsync();
            await Task.WhenAll(traffic.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));

            // While the server is down: one sandbox's init dies, and a stray state dir and cgroup appear.
            var victim = ids[1];
            var initPid = int.Parse(File.ReadAllText(Path.Combine(dataDir, "sandboxes", victim, "init.pid")).Split(' ')[0]);
            Assert.True(Directory.Exists($"/proc/{initPid}"), "a sandbox must outlive a crash of the server");
            Signal(initPid, 9);
            var stray = "straystraystray00001";
            Directory.CreateDirectory(Path.Combine(dataDir, "sandboxes", stray, "rw"));
            var ownRoot = CgroupRoots().First(r => Directory.Exists(Path.Combine(r, ids[0])));
            Directory.CreateDirectory(Path.Combine(ownRoot, stray));

            server = await AirlockServer.StartAsync(dataDir, ct);
            var listed = (await (await server.Client.GetAsync("/v1/sandboxes", ct)).JsonAsync()).EnumerateArray().Select(s => s.GetProperty("id").GetString()!).ToHashSet();
            Assert.True(listed.Contains(ids[0]) && listed.Contains(ids[2]), $"not re-adopted; server log:\n{server.Log}");
            Assert.DoesNotContain(victim, listed);
            Assert.Equal("survived\n", (await server.Client.ExecAsync(ids[0], "cat /home/user/mark")).Stdout);
            Assert.Equal(HttpStatusCode.NotFound, (await server.Client.GetAsync($"/v1/sandboxes/{victim}", ct)).StatusCode);
            Assert.False(Directory.Exists(Path.Combine(dataDir, "sandboxes", stray)), "stray state dir not swept");
            Assert.False(Directory.Exists(Path.Combine(ownRoot, stray)), "stray cgroup not swept");

            // Creates that were in flight may or may not have made it; whatever exists is listed and killable.
            ids.AddRange(listed.Except(ids));
            foreach (var id in listed)
            {
                await server.Client.DeleteSandboxAsync(id);
            }

            await AssertNoTraceAsync(dataDir, ids.Append(stray).ToList());
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

    [Fact]
    public async Task ServerCrash_BetweenRuntimeCreateAndInsert_SweepReapsUnrecordedSandbox()
    {
        // A create starts the sandbox, then inserts its record (SandboxService.StartRecordedAsync): a
        // crash in between leaves a running init, a state dir and cgroups that no record owns. Made
        // here as a created sandbox whose record is deleted while the server is down.
        var ct = TestContext.Current.CancellationToken;
        var noPool = new Dictionary<string, string> { ["Airlock__Sandboxes__WarmPoolSize"] = "0" };
        var server = await AirlockServer.StartAsync(cancellationToken: ct, environment: noPool);
        var dataDir = server.DataDir;
        try
        {
            var id = await server.Client.CreateSandboxAsync(new { timeoutSeconds = 600 });
            var initPid = int.Parse(File.ReadAllText(Path.Combine(dataDir, "sandboxes", id, "init.pid")).Split(' ')[0]);
            await server.CrashAsync();
            Assert.True(Directory.Exists($"/proc/{initPid}"), "a sandbox must outlive a crash of the server");
            Assert.Contains(CgroupRoots(), r => Directory.Exists(Path.Combine(r, id)));
            await DeleteRecordAsync(dataDir, id, ct);

            server = await AirlockServer.StartAsync(dataDir, ct, environment: noPool);
            Assert.Contains($"sweeping resources of unknown sandbox {id}", server.Log);
            Assert.Equal(HttpStatusCode.NotFound, (await server.Client.GetAsync($"/v1/sandboxes/{id}", ct)).StatusCode);
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (Alive(initPid) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100, ct);
            }

            Assert.False(Alive(initPid), $"init {initPid} of the unrecorded sandbox survived recovery");
            await AssertNoTraceAsync(dataDir, [id]);
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

    /// <summary>True while the process exists and is not a zombie.</summary>
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

    /// <summary>Deletes a sandbox's row behind a stopped server's back, in whichever store it uses.</summary>
    private static async Task DeleteRecordAsync(string dataDir, string id, CancellationToken cancellationToken)
    {
        if (await TestPostgres.DatabaseUrlAsync(dataDir, cancellationToken) is { } url)
        {
            var uri = new Uri(url);
            var user = uri.UserInfo.Split(':', 2);
            var connectionString = new Npgsql.NpgsqlConnectionStringBuilder
            {
                Host = uri.Host,
                Port = uri.Port > 0 ? uri.Port : 5432,
                Username = Uri.UnescapeDataString(user[0]),
                Password = user.Length > 1 ? Uri.UnescapeDataString(user[1]) : null,
                Database = uri.AbsolutePath.TrimStart('/'),
                Pooling = false,
            }.ConnectionString;
            await using var connection = new Npgsql.NpgsqlConnection(connectionString);
            await connection.OpenAsync(cancellationToken);
            await using var delete = new Npgsql.NpgsqlCommand("DELETE FROM sandboxes WHERE id = @id", connection);
            delete.Parameters.AddWithValue("id", id);
            Assert.Equal(1, await delete.ExecuteNonQueryAsync(cancellationToken));
            return;
        }

        // The SQLite file in the data dir, through python3's sqlite3 (test.sh installs python3).
        var start = new System.Diagnostics.ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[]
        {
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nn = c.execute('DELETE FROM sandboxes WHERE id = ?', (sys.argv[2],)).rowcount\nc.commit()\nprint(n)",
            Path.Combine(dataDir, "airlock.db"),
            id,
        })
        {
            start.ArgumentList.Add(arg);
        }

        using var python = System.Diagnostics.Process.Start(start)!;
        var output = await python.StandardOutput.ReadToEndAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        var error = await python.StandardError.ReadToEndAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        await python.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        Assert.True(python.ExitCode == 0 && output.Trim() == "1", $"deleting the record: {output} {error}");
    }

    private static async Task AssertNoTraceAsync(string dataDir, List<string> ids)
    {
        // Kill is synchronous in the API, but give the kernel a moment to finish tearing down.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        List<string> leaks;
        do
        {
            leaks = [];
            foreach (var id in ids)
            {
                leaks.AddRange(CgroupRoots().Select(r => Path.Combine(r, id)).Where(Directory.Exists));
                var state = Path.Combine(dataDir, "sandboxes", id);
                if (Directory.Exists(state))
                {
                    leaks.Add(state);
                }
            }

            var mounts = File.ReadAllLines("/proc/self/mountinfo");
            leaks.AddRange(mounts.Where(m => m.Contains(dataDir, StringComparison.Ordinal) || ids.Any(id => m.Contains(id, StringComparison.Ordinal))));
            // No process anywhere still sits in one of these sandboxes' cgroups.
            foreach (var proc in Directory.EnumerateDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)))
            {
                try
                {
                    var cgroup = File.ReadAllText(Path.Combine(proc, "cgroup"));
                    if (ids.Any(id => cgroup.Contains(id, StringComparison.Ordinal)))
                    {
                        leaks.Add($"process {proc}");
                    }
                }
                catch (IOException)
                {
                }
            }

            if (leaks.Count == 0)
            {
                return;
            }

            await Task.Delay(200);
        }
        while (DateTime.UtcNow < deadline);

        Assert.Fail("leaked: " + string.Join(", ", leaks));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Signal(int pid, int signal);
}
