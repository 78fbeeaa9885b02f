using System.Diagnostics;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>
/// Invariant: a fork bomb, memory hog, disk filler, CPU spinner or 1 GB of output is contained,
/// and a neighbour sandbox keeps working (answers <c>echo ok</c> within a few seconds).
/// </summary>
public sealed class ResourceLimitTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Fact]
    public async Task ForkBomb_IsContainedByPidsLimit_NeighbourKeepsWorking()
    {
        var bomber = await _client.CreateSandboxAsync();
        var neighbour = await _client.CreateSandboxAsync();
        try
        {
            var sw = Stopwatch.StartNew();
            var bomb = await _client.ExecJsonAsync(bomber, ":(){ :|:& };:; sleep 10", timeoutSeconds: 5);
            // The exec ended by its timeout (the bomb never finishes by itself), not by a hang.
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"bomb exec took {sw.Elapsed}");
            // The pids limit bit: forks failed with EAGAIN.
            Assert.Contains("Resource temporarily unavailable", bomb.GetProperty("stderr").GetString());
            await _client.AssertNeighbourHealthyAsync(neighbour);
            // The host itself can still fork.
            using var p = Process.Start(new ProcessStartInfo("/bin/true"))!;
            await p.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        }
        finally
        {
            await _client.DeleteSandboxAsync(bomber);
            await _client.DeleteSandboxAsync(neighbour);
        }
    }

    [Theory]
    [InlineData("user")]
    [InlineData("root")]
    public async Task MemoryHog_IsOomKilled_NeighbourKeepsWorking(string who)
    {
        var hog = await _client.CreateSandboxAsync(new { memoryMb = 256 });
        var neighbour = await _client.CreateSandboxAsync();
        try
        {
            // Written, not just reserved: 2 GiB of touched pages in a 256 MiB sandbox.
            var result = await _client.ExecJsonAsync(hog, "python3 -c \"b = bytearray(b'x') * (2 * 1024**3); print('ALLOCATED', len(b))\"", timeoutSeconds: 20, user: who);
            Assert.DoesNotContain("ALLOCATED", result.GetProperty("stdout").GetString());
            var exit = result.GetProperty("exitCode").GetInt32();
            var signal = result.TryGetProperty("signal", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetInt32() : 0;
            Assert.True(signal == 9 || exit == 137, $"expected an OOM kill: {result}");
            await _client.AssertNeighbourHealthyAsync(neighbour);
            // The sandbox itself survives its process's death.
            Assert.Equal("ok\n", (await _client.ExecAsync(hog, "echo ok")).Stdout);
        }
        finally
        {
            await _client.DeleteSandboxAsync(hog);
            await _client.DeleteSandboxAsync(neighbour);
        }
    }

    [Theory]
    [InlineData("user")]
    [InlineData("root")]
    public async Task DiskFiller_HitsNoSpace_NeighbourKeepsWorking(string who)
    {
        var filler = await _client.CreateSandboxAsync(new { diskMb = 64 });
        var neighbour = await _client.CreateSandboxAsync();
        try
        {
            var path = who == "root" ? "/big" : "/home/user/big";
            var result = await _client.ExecAsync(filler, $"dd if=/dev/zero of={path} bs=1M count=4000 2>&1; echo exit=$?; echo size=$(( $(stat -c %s {path}) / 1048576 ))", user: who, timeoutSeconds: 20);
            Assert.Contains("No space left on device", result.Stdout);
            Assert.DoesNotContain("exit=0", result.Stdout);
            var size = int.Parse(Attack.Results(result)["size"]);
            Assert.InRange(size, 0, 64);
            await _client.AssertNeighbourHealthyAsync(neighbour);
            // The neighbour's disk is its own: it can still write.
            Assert.Equal(0, (await _client.ExecAsync(neighbour, "dd if=/dev/zero of=/home/user/f bs=1M count=32 2>/dev/null")).ExitCode);
        }
        finally
        {
            await _client.DeleteSandboxAsync(filler);
            await _client.DeleteSandboxAsync(neighbour);
        }
    }

    [Fact]
    public async Task CpuSpinner_IsThrottledToItsQuota_NeighbourKeepsWorking()
    {
        var spinner = await _client.CreateSandboxAsync(new { cpus = 1 });
        var neighbour = await _client.CreateSandboxAsync();
        try
        {
            // More spinners than the host has cores: unthrottled, they would take every core.
            var spinners = Math.Max(2, Environment.ProcessorCount) * 2;
            var started = await _client.ExecAsync(spinner, $"for i in $(seq {spinners}); do setsid timeout 15 sh -c 'while :; do :; done' > /dev/null 2>&1 < /dev/null & done; echo started");
            Assert.Equal("started\n", started.Stdout);
            await Task.Delay(1000, TestContext.Current.CancellationToken);

            var before = CpuUsage(spinner);
            var sw = Stopwatch.StartNew();
            await _client.AssertNeighbourHealthyAsync(neighbour, maxSeconds: 3);
            // The neighbour gets real CPU: a fixed bit of work finishes in reasonable time.
            var work = Stopwatch.StartNew();
            Assert.Equal("done\n", (await _client.ExecAsync(neighbour, "python3 -c \"sum(range(3_000_000)); print('done')\"")).Stdout);
            Assert.True(work.Elapsed < TimeSpan.FromSeconds(10), $"neighbour work took {work.Elapsed}");
            await Task.Delay(2000, TestContext.Current.CancellationToken);
            var used = CpuUsage(spinner) - before;
            var wall = sw.Elapsed.TotalSeconds;
            if (used is { } cpuSeconds)
            {
                // cpus=1: at most one core's worth (some slack for the CFS period boundaries).
                Assert.True(cpuSeconds / wall < 1.3, $"spinner used {cpuSeconds:F2} cpu-s in {wall:F2} s");
                Assert.True(cpuSeconds / wall > 0.5, $"spinner did not spin: {cpuSeconds:F2} cpu-s in {wall:F2} s");
            }
        }
        finally
        {
            await _client.DeleteSandboxAsync(spinner);
            await _client.DeleteSandboxAsync(neighbour);
        }
    }

    /// <summary>CPU seconds used by a sandbox, from cgroup2's cpu.stat (the unified tree on a hybrid host); null if not found.</summary>
    private static double? CpuUsage(string id)
    {
        // Each server owns one airlock-<hash> parent per hierarchy. cpu.stat's usage_usec exists in
        // cgroup2 whether or not the cpu controller is enabled there.
        var root = Directory.Exists("/sys/fs/cgroup/unified") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
        var v2 = Directory.EnumerateDirectories(root, "airlock*").Select(d => Path.Combine(d, id, "cpu.stat")).FirstOrDefault(File.Exists);
        if (v2 is not null)
        {
            var line = File.ReadAllLines(v2).First(l => l.StartsWith("usage_usec ", StringComparison.Ordinal));
            return long.Parse(line.Split(' ')[1]) / 1e6;
        }

        return null;
    }

    [Fact]
    public async Task GigabyteOfOutput_ServerStaysBoundedAndResponsive()
    {
        var ct = TestContext.Current.CancellationToken;
        var flooder = await _client.CreateSandboxAsync();
        var neighbour = await _client.CreateSandboxAsync();
        var peakRss = 0L;
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peakRss = Math.Max(peakRss, RssBytes(fixture.Server.Pid));
                await Task.Delay(100, CancellationToken.None);
            }
        }, CancellationToken.None);
        try
        {
            var sw = Stopwatch.StartNew();
            var flood = _client.ExecJsonAsync(flooder, "head -c 1000000000 /dev/zero | tr '\\0' a; echo; yes | head -c 100000000 >&2", timeoutSeconds: 20);
            // While it floods, the server still answers others.
            await Task.Delay(1000, ct);
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            {
                Assert.True((await _client.GetAsync("/health", cts.Token)).IsSuccessStatusCode);
            }

            await _client.AssertNeighbourHealthyAsync(neighbour);
            var result = await flood;
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(50), $"flood took {sw.Elapsed}");
            // Only a bounded window of the output is kept and returned.
            Assert.InRange(result.GetProperty("stdout").GetString()!.Length, 0, 17 * 1024 * 1024);
            Assert.InRange(result.GetProperty("stderr").GetString()!.Length, 0, 17 * 1024 * 1024);
            await _client.AssertNeighbourHealthyAsync(neighbour);
            Assert.Equal("ok\n", (await _client.ExecAsync(flooder, "echo ok")).Stdout);
        }
        finally
        {
            await stop.CancelAsync();
            await sampler.WaitAsync(TimeSpan.FromSeconds(5), ct);
            await _client.DeleteSandboxAsync(flooder);
            await _client.DeleteSandboxAsync(neighbour);
        }

        Assert.True(peakRss > 0, "RSS was never sampled");
        Assert.True(peakRss < 1L << 30, $"server RSS peaked at {peakRss >> 20} MiB");
    }

    private static long RssBytes(int pid)
    {
        try
        {
            var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
