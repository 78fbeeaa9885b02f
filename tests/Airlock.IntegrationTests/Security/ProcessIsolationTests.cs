using System.Diagnostics;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>Invariant: no host process is visible from inside, and PID 1 is our init, showing no host path.</summary>
public sealed class ProcessIsolationTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task HostMarkerProcess_FromInside_IsInvisible(string who)
    {
        var marker = $"marker-{Guid.NewGuid():N}";
        // sh stays alive (a compound command), so the marker is in a live host process's cmdline.
        using var host = Process.Start(new ProcessStartInfo("/bin/sh") { ArgumentList = { "-c", $"sleep 1000; true {marker}" } })!;
        var id = await _client.CreateSandboxAsync();
        try
        {
            // Control: the marker really is visible on the host.
            Assert.Contains(marker, await File.ReadAllTextAsync($"/proc/{host.Id}/cmdline", TestContext.Current.CancellationToken));

            var result = await _client.ShAsync(id, who, $"""
                ps -eo pid,args
                cat /proc/[0-9]*/cmdline | tr '\0' ' '
                grep -l {marker} /proc/[0-9]*/cmdline 2>/dev/null
                echo count=$(ls -d /proc/[0-9]* | wc -l)
                cat /proc/{host.Id}/cmdline /proc/{Environment.ProcessId}/cmdline /proc/{fixture.Server.Pid}/cmdline 2>/dev/null | tr '\0' ' '
                """);
            Assert.DoesNotContain(marker, result.Stdout + result.Stderr);
            Assert.DoesNotContain("Airlock.IntegrationTests", result.Stdout);
            Assert.DoesNotContain("airlock-server", result.Stdout);
            // Only init, the shell and its few children: nothing of the host's hundreds of processes.
            var count = int.Parse(result.Stdout.Split("count=")[1].Split('\n')[0]);
            Assert.InRange(count, 2, 10);
        }
        finally
        {
            // The whole tree: killing only sh would leave its `sleep 1000` holding the runner's stdout.
            host.Kill(entireProcessTree: true);
            await host.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task Pid1_CmdlineAndMounts_ShowNoHostPath(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, """
                echo "cmdline=$(tr '\0' ' ' < /proc/1/cmdline)"
                ps -o args= -p 1
                cat /proc/self/mountinfo /proc/1/mountinfo /proc/mounts
                """);
            Assert.Equal(0, result.ExitCode);
            Assert.Contains("cmdline=/sbin/airlock-init", result.Stdout);
            Assert.DoesNotContain(fixture.Server.DataDir, result.Stdout);
            Assert.DoesNotContain(AirlockServer.RepoRoot, result.Stdout);
            Assert.DoesNotContain(AirlockServer.TemplatesDir, result.Stdout);
            Assert.DoesNotContain("--lower", result.Stdout);
            Assert.DoesNotContain("--cgroup", result.Stdout);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task Ptrace_Init_IsRefused(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.PyAsync(id, who, Attack.PySyscall + """
                sc("ptrace_attach", 101, 16, 1, 0, 0)            # PTRACE_ATTACH pid 1
                sc("ptrace_seize", 101, 0x4206, 1, 0, 0)         # PTRACE_SEIZE pid 1
                buf = ctypes.create_string_buffer(64)
                class Iov(ctypes.Structure):
                    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
                local = Iov(ctypes.addressof(buf), 64); remote = Iov(0x400000, 64)
                sc("process_vm_readv", 310, 1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
                sc("process_vm_writev", 311, 1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
                pidfd = sc("pidfd_open", 434, 1, 0)
                if pidfd >= 0:
                    sc("pidfd_getfd", 438, pidfd, 3, 0)
                sc("kcmp", 312, 1, os.getpid(), 0, 0, 0)
                """);
            var r = Attack.Results(result);
            Assert.True(r.Count >= 6, result.Stdout + result.Stderr);
            Assert.Equal("EPERM", r["ptrace_attach"]);
            Assert.Equal("EPERM", r["ptrace_seize"]);
            Assert.Equal("EPERM", r["process_vm_readv"]);
            Assert.Equal("EPERM", r["process_vm_writev"]);
            Assert.Equal("EPERM", r["kcmp"]);
            if (r.TryGetValue("pidfd_getfd", out var getfd))
            {
                Assert.Equal("EPERM", getfd);
            }
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task InitProcFiles_FromInside_AreUnreadable(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, """
                for f in mem environ maps exe root cwd fd/3 fd/4 auxv stack syscall; do
                  if cat /proc/1/$f > /dev/null 2>&1 || ls /proc/1/$f/ > /dev/null 2>&1; then echo "$f=READ"; else echo "$f=DENIED"; fi
                done
                readlink /proc/1/exe /proc/1/root /proc/1/cwd && echo "readlink=OK" || echo "readlink=DENIED"
                echo "host=$(hostname)"
                """);
            var r = Attack.Results(result);
            foreach (var f in new[] { "mem", "environ", "maps", "exe", "root", "cwd", "fd/3", "fd/4", "auxv", "stack", "syscall", "readlink" })
            {
                Assert.True(r.TryGetValue(f, out var v) && v == "DENIED", $"/proc/1/{f}: {result.Stdout}");
            }

            Assert.Equal(id, r["host"]);
            Assert.NotEqual(Environment.MachineName, r["host"]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }
}
