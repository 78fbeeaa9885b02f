using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>
/// Invariant: file API paths resolve inside the sandbox root only. The server runs as root on the
/// host, so a path that escaped would read or write host files with full privileges: every test
/// plants an escape (.., absolute and relative symlinks, symlinked parents, magic links) and checks
/// that the host marker is neither returned nor created nor modified.
/// </summary>
public sealed class FileApiEscapeTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    private static string Q(string path) => Uri.EscapeDataString(path);

    private async Task PlantAsync(string id, string script)
    {
        var result = await _client.ExecAsync(id, script, user: "root");
        Assert.True(result.ExitCode == 0, result.Stderr);
    }

    [Fact]
    public async Task Read_DotDotAndSymlinks_NeverReturnHostFile()
    {
        var ct = TestContext.Current.CancellationToken;
        using var marker = new HostMarker();
        var id = await _client.CreateSandboxAsync();
        try
        {
            var m = marker.Path;
            await PlantAsync(id, $"""
                cd /home/user
                ln -s {m} abs
                ln -s ../../../../../../../../..{m} rel
                ln -s /tmp tmpdir
                ln -s ../../../../../../../.. up
                ln -s /proc/self/root selfroot
                ln -s /proc/1/root initroot
                ln -s /proc/1/cwd initcwd
                ln -s abs chain1 && ln -s chain1 chain2
                """);
            string[] paths =
            [
                $"../../../../../../../..{m}", $"/../../../..{m}", $"/home/user/../../..{m}", m,
                "/home/user/abs", "/home/user/rel", "/home/user/chain2", $"/home/user/tmpdir/{marker.Name}",
                $"/home/user/up{m}", $"/home/user/selfroot{m}", $"/home/user/initroot{m}", $"/home/user/initcwd{m}",
                $"/proc/1/root{m}", $"/proc/self/root{m}",
            ];
            foreach (var path in paths)
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(Api.Timeout);
                var response = await _client.GetAsync($"/v1/sandboxes/{id}/files?path={Q(path)}", cts.Token);
                var body = await response.Content.ReadAsStringAsync(cts.Token);
                Assert.DoesNotContain(marker.Content, body);
                Assert.True((int)response.StatusCode is >= 400 and < 500, $"{path}: {(int)response.StatusCode} {body}");

                // Stat follows no final symlink; where it answers, it describes a sandbox entry.
                var stat = await _client.GetAsync($"/v1/sandboxes/{id}/files/stat?path={Q(path)}", cts.Token);
                var statBody = await stat.Content.ReadAsStringAsync(cts.Token);
                Assert.False(
                    stat.IsSuccessStatusCode && statBody.Contains("\"type\":\"file\"", StringComparison.Ordinal) && statBody.Contains($"\"size\":{marker.Content.Length},", StringComparison.Ordinal),
                    $"stat {path} described the host marker: {statBody}");
            }

            // Listing through escapes shows the sandbox (or nothing), never the host's /tmp.
            foreach (var dir in new[] { "/home/user/up/tmp", "/home/user/tmpdir", "/../../tmp", "/home/user/initroot/tmp", "/home/user/selfroot/tmp" })
            {
                var list = await _client.GetAsync($"/v1/sandboxes/{id}/files/list?path={Q(dir)}", ct);
                Assert.DoesNotContain(marker.Name, await list.Content.ReadAsStringAsync(ct));
            }
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Write_ThroughSymlinksAndDotDot_NeverTouchesHost()
    {
        var ct = TestContext.Current.CancellationToken;
        using var marker = new HostMarker();
        var created = $"/tmp/airlock-pwn-{Guid.NewGuid():N}";
        var id = await _client.CreateSandboxAsync();
        try
        {
            await PlantAsync(id, $"""
                cd /home/user
                ln -s {marker.Path} existing
                ln -s {created} fresh
                ln -s ../../../../../../../..{created} relfresh
                ln -s /tmp tmpdir
                ln -s ../../../../../../../../tmp reltmp
                ln -s /proc/self/root selfroot
                ln -s /proc/1/root initroot
                """);
            string[] paths =
            [
                "/home/user/existing", "/home/user/fresh", "/home/user/relfresh", $"../../../../../../..{created}",
                $"/home/user/tmpdir/{Path.GetFileName(created)}", $"/home/user/reltmp/{Path.GetFileName(created)}",
                $"/home/user/tmpdir/{marker.Name}", $"/home/user/selfroot{created}", $"/home/user/initroot{created}",
                $"/home/user/initroot{marker.Path}", $"/proc/1/root{created}",
            ];
            foreach (var path in paths)
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(Api.Timeout);
                await _client.PutAsync($"/v1/sandboxes/{id}/files?path={Q(path)}", new StringContent("pwned"), cts.Token);
                Assert.False(File.Exists(created), $"PUT {path} created a host file");
                Assert.Equal(marker.Content, await File.ReadAllTextAsync(marker.Path, cts.Token));
                await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/mkdir", new { path = path + "-dir" }, cts.Token);
                Assert.False(Directory.Exists(created + "-dir"), $"mkdir {path} created a host directory");
            }

            // Move a sandbox file onto host paths through the same routes.
            foreach (var path in paths)
            {
                await PlantAsync(id, "echo pwned > /home/user/src");
                await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/move", new { source = "/home/user/src", destination = path }, ct);
                Assert.False(File.Exists(created), $"move to {path} created a host file");
                Assert.Equal(marker.Content, await File.ReadAllTextAsync(marker.Path, ct));
            }

            // Delete through the routes: the host marker survives.
            foreach (var path in new[] { $"/home/user/tmpdir/{marker.Name}", $"../../../..{marker.Path}", $"/home/user/initroot{marker.Path}", "/home/user/existing" })
            {
                await _client.DeleteAsync($"/v1/sandboxes/{id}/files?path={Q(path)}", ct);
                Assert.True(File.Exists(marker.Path), $"DELETE {path} removed the host marker");
            }
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
            File.Delete(created);
            if (Directory.Exists(created + "-dir"))
            {
                Directory.Delete(created + "-dir");
            }
        }
    }

    [Fact]
    public async Task Read_Fifo_FailsFastInsteadOfHanging()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await _client.CreateSandboxAsync();
        try
        {
            await PlantAsync(id, "mkfifo /home/user/fifo && ln -s /home/user/fifo /home/user/fifolink");
            foreach (var path in new[] { "/home/user/fifo", "/home/user/fifolink" })
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(TimeSpan.FromSeconds(10));
                var sw = Stopwatch.StartNew();
                var response = await _client.GetAsync($"/v1/sandboxes/{id}/files?path={Q(path)}", cts.Token);
                Assert.InRange((int)response.StatusCode, 400, 499);
                Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");

                // Writing to a FIFO nobody reads must not hang either (nor succeed).
                sw.Restart();
                var put = await _client.PutAsync($"/v1/sandboxes/{id}/files?path={Q(path)}", new StringContent("x"), cts.Token);
                Assert.False(put.IsSuccessStatusCode, $"PUT {path}: {(int)put.StatusCode}");
                Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
            }
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Read_ProcAndDeviceFiles_Fail()
    {
        var ct = TestContext.Current.CancellationToken;
        var id = await _client.CreateSandboxAsync();
        try
        {
            // Init keeps full capabilities and the server is host root: its reads must not reach
            // /proc (init's memory and environment hold host paths and the server's environment).
            await PlantAsync(id, """
                cd /home/user
                ln -s /proc/1/mem mem
                ln -s /proc/1/environ environ
                ln -s /proc/self/environ selfenv
                ln -s /dev/zero zero
                """);
            foreach (var path in new[]
            {
                "/proc/1/mem", "/proc/1/environ", "/proc/self/environ", "/proc/1/cmdline", "/proc/kcore", "/dev/zero",
                "/sys/kernel/notes", "/home/user/mem", "/home/user/environ", "/home/user/selfenv", "/home/user/zero",
            })
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                cts.CancelAfter(TimeSpan.FromSeconds(10));
                var response = await _client.GetAsync($"/v1/sandboxes/{id}/files?path={Q(path)}", cts.Token);
                var body = await response.Content.ReadAsStringAsync(cts.Token);
                Assert.True((int)response.StatusCode is >= 400 and < 500, $"{path}: {(int)response.StatusCode}");
                Assert.DoesNotContain("AIRLOCK_", body);
                Assert.DoesNotContain(AirlockServer.ApiKey, body);
            }

            var write = await _client.PutAsync($"/v1/sandboxes/{id}/files?path={Q("/home/user/mem")}", new StringContent("x"), ct);
            Assert.InRange((int)write.StatusCode, 400, 499);
            var sys = await _client.PutAsync($"/v1/sandboxes/{id}/files?path={Q("/proc/sys/kernel/hostname")}", new StringContent("pwned"), ct);
            Assert.InRange((int)sys.StatusCode, 400, 499);
            Assert.NotEqual("pwned", (await File.ReadAllTextAsync("/proc/sys/kernel/hostname", ct)).Trim());
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }
}
