using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>Invariant: from inside, no host file is readable or writable outside the rootfs.</summary>
public sealed class FilesystemEscapeTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task HostMarker_EveryPathRoute_IsUnreachable(string who)
    {
        using var marker = new HostMarker();
        var id = await _client.CreateSandboxAsync();
        try
        {
            var m = marker.Path;
            var result = await _client.ShAsync(id, who, $"""
                for p in {m} /proc/1/root{m} /proc/self/root{m} /proc/1/cwd{m} /proc/$$/root{m} \
                         /proc/self/root/proc/1/root{m} /proc/1/root/proc/1/root{m} \
                         /dev/fd/../../..{m} /../../../..{m} {fixture.Server.DataDir}/sandboxes/{id}/rw/upper/etc/hostname; do
                  if cat "$p" 2>/dev/null; then echo "READ $p"; fi
                done
                # Writes second, so a write into the sandbox's own /tmp cannot be read back above.
                for p in {m} /proc/1/root{m} /proc/self/root{m} /proc/1/cwd{m} /proc/self/root/proc/1/root{m}; do
                  echo pwned 2>/dev/null >> "$p"
                done
                ls -d {AirlockServer.RepoRoot} {fixture.Server.DataDir} 2>/dev/null && echo "SEES-HOST-DIRS"
                readlink -f /proc/self/root /proc/1/root 2>&1
                find / -xdev -name '{marker.Name}' 2>/dev/null
                echo done
                """);
            Assert.Contains("done", result.Stdout);
            Assert.DoesNotContain(marker.Content, result.Stdout + result.Stderr);
            Assert.DoesNotContain("READ ", result.Stdout);
            Assert.DoesNotContain("SEES-HOST-DIRS", result.Stdout);
            // Writes landed (if anywhere) in the sandbox's own /tmp, never in the host file.
            Assert.Equal(marker.Content, await File.ReadAllTextAsync(marker.Path, TestContext.Current.CancellationToken));
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task ChrootEscape_AsRoot_StaysInSandboxRoot()
    {
        using var marker = new HostMarker();
        var id = await _client.CreateSandboxAsync();
        try
        {
            // The classic escape: chroot into a subdirectory while keeping a cwd outside it, then
            // climb with ".." past the (now lower) root and chroot("."). After pivot_root and the
            // detach of the old root there is nothing above the sandbox's root to climb to.
            var result = await _client.PyAsync(id, "root", $$"""
                import os
                os.makedirs("/tmp/jail", exist_ok=True)
                fd = os.open("/", os.O_RDONLY)
                os.chroot("/tmp/jail")
                print("chroot=OK")
                os.fchdir(fd)
                for _ in range(64):
                    os.chdir("..")
                os.chroot(".")
                print("climbed=OK")
                print("marker=" + str(os.path.exists("{{marker.Path}}")))
                print("repo=" + str(os.path.exists("{{AirlockServer.RepoRoot}}")))
                print("hostname=" + open("/etc/hostname").read().strip())
                try:
                    print("content=" + open("{{marker.Path}}").read())
                except OSError as e:
                    print("open=" + type(e).__name__)
                """);
            var r = Attack.Results(result);
            Assert.True(r.GetValueOrDefault("climbed") == "OK", result.Stdout + result.Stderr); // the attack really ran
            Assert.Equal("False", r["marker"]);
            Assert.Equal("False", r["repo"]);
            Assert.Equal(id, r["hostname"]); // still the sandbox's own root
            Assert.Equal("FileNotFoundError", r["open"]);
            Assert.DoesNotContain(marker.Content, result.Stdout);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task FileHandles_OpenByHandleAt_IsRefused(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            // open_by_handle_at is the "shocker" escape: forge a handle for an inode of the host fs.
            var result = await _client.PyAsync(id, who, Attack.PySyscall + """
                handle = ctypes.create_string_buffer(8 + 128)
                ctypes.memmove(handle, (ctypes.c_uint * 2)(128, 0), 8)
                mount_id = ctypes.c_int()
                sc("name_to_handle_at", 303, -100, b"/etc/hostname", handle, ctypes.byref(mount_id), 0)
                forged = ctypes.create_string_buffer(8 + 8)
                ctypes.memmove(forged, (ctypes.c_uint * 4)(8, 1, 2, 0), 16)  # FILEID_INO32_GEN, inode 2 = a root dir
                sc("open_by_handle_at", 304, 3, forged, 0)
                sc("open_by_handle_at_root", 304, os.open("/", os.O_RDONLY), forged, 0)
                """);
            var r = Attack.Results(result);
            Assert.Equal("EPERM", r["name_to_handle_at"]);
            Assert.Equal("EPERM", r["open_by_handle_at"]);
            Assert.Equal("EPERM", r["open_by_handle_at_root"]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task MountRoutes_ToHostFs_AreRefused(string who)
    {
        using var marker = new HostMarker();
        var id = await _client.CreateSandboxAsync();
        try
        {
            // Mount the host's disk or re-bind /proc/1/root: both would bring the host tree back.
            var result = await _client.ShAsync(id, who, $"""
                mkdir -p /tmp/mnt
                for dev in /dev/vda /dev/sda /dev/vda1 /dev/nvme0n1; do
                  mount "$dev" /tmp/mnt 2>&1 && echo "MOUNTED $dev"
                done
                mount --bind /proc/1/root /tmp/mnt 2>&1 && echo "MOUNTED bind"
                mount -t proc proc /tmp/mnt 2>&1 && echo "MOUNTED proc"
                cat /tmp/mnt{marker.Path} 2>/dev/null
                echo done
                """);
            Assert.Contains("done", result.Stdout);
            Assert.DoesNotContain("MOUNTED", result.Stdout);
            Assert.DoesNotContain(marker.Content, result.Stdout);
            Assert.Matches("(permission denied|Operation not permitted|must be superuser|No such file)", result.Stdout);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }
}
