using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>Invariant: no mount, module load, raw device, kernel keyring or kernel tunable from inside.</summary>
public sealed class KernelSurfaceTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task MountAndUnshare_AreRefused(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, """
                mkdir -p /tmp/m
                try() { local name=$1; shift; if "$@" > /tmp/out 2>&1; then echo "$name=OK"; else echo "$name=FAIL $(head -c 200 /tmp/out | tr '\n' ' ')"; fi; }
                try tmpfs mount -t tmpfs none /tmp/m
                try bind mount --bind /tmp /tmp/m
                try sys mount -o remount,rw /sys
                try procsys mount -o remount,rw /proc/sys
                try umount umount /proc/sys
                try unshare_m unshare -m true
                try unshare_U unshare -U true
                try unshare_r unshare -r true
                try unshare_n unshare -n true
                try unshare_p unshare -p -f true
                try unshare_Urm unshare -Urm true
                grep -c ' /tmp/m ' /proc/self/mountinfo | sed 's/^/mounted=/'
                """);
            var r = Attack.Results(result);
            Assert.Equal("0", r["mounted"]);
            foreach (var (key, value) in r.All.Where(kv => kv.Key != "mounted"))
            {
                Assert.True(value.StartsWith("FAIL", StringComparison.Ordinal), $"{key}: {value}");
                Assert.Matches("(Operation not permitted|[Pp]ermission denied|must be superuser)", value);
            }

            Assert.Equal(12, r.Count);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task DangerousSyscalls_AreDenied(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.PyAsync(id, who, Attack.PySyscall + """
                null = os.open("/dev/null", os.O_RDONLY)
                sc("finit_module", 313, null, b"", 0)
                sc("init_module", 175, ctypes.create_string_buffer(64), 64, b"")
                sc("delete_module", 176, b"ext4", 0)
                sc("add_key", 248, b"user", b"airlock", b"secret", 6, -4)  # KEY_SPEC_SESSION_KEYRING
                sc("keyctl", 250, 0, -4, 0)                                 # KEYCTL_GET_KEYRING_ID
                sc("request_key", 249, b"user", b"airlock", 0, 0)
                params = ctypes.create_string_buffer(120)
                sc("io_uring_setup", 425, 8, params)
                sc("io_uring_enter", 426, 0, 0, 0, 0, 0, 0)
                sc("io_uring_register", 427, 0, 0, 0, 0)
                sc("bpf", 321, 0, ctypes.create_string_buffer(128), 128)
                sc("perf_event_open", 298, ctypes.create_string_buffer(128), 0, -1, -1, 0)
                sc("kexec_load", 246, 0, 0, 0, 0)
                sc("reboot", 169, 0xfee1dead, 672274793, 0x89abcdef, 0)   # LINUX_REBOOT_CMD_CAD_ON: harmless if it got through
                sc("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
                sc("umount2", 166, b"/proc", 2)
                sc("pivot_root", 155, b"/tmp", b"/tmp")
                sc("unshare", 272, 0x10000000)                              # CLONE_NEWUSER
                sc("setns", 308, os.open("/proc/self/ns/net", os.O_RDONLY), 0)
                sc("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
                sc("fsopen", 430, b"tmpfs", 0)
                sc("open_tree", 428, -100, b"/", 1)
                sc("userfaultfd", 323, 0)
                sc("swapon", 167, b"/tmp/swap", 0)
                sc("syslog", 103, 3, ctypes.create_string_buffer(64), 64)   # SYSLOG_ACTION_READ_ALL
                sc("iopl", 172, 3)
                sc("ioperm", 173, 0x80, 1, 1)
                sc("settimeofday", 164, 0, 0)
                """);
            var r = Attack.Results(result);
            Assert.True(r.Count == 27, r.ToString());
            Assert.All(r.All, kv => Assert.True(kv.Value == "EPERM", $"{kv.Key} = {kv.Value}"));
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task RawDevices_CannotBeMadeOrFound(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, """
                echo "blockdevs=$(find / -xdev -type b 2>/dev/null | wc -l) $(find /dev -type b | wc -l)"
                echo "disks=$(ls /dev | grep -E '^(sd|vd|xvd|nvme|hd|loop|dm-|mem$|kmem$|port$)' | wc -l)"
                mknod /tmp/sda b 8 0 2>&1 && echo "mknod_sda=OK" || echo "mknod_sda=FAIL"
                mknod /tmp/vda b 253 0 2>&1 && echo "mknod_vda=OK" || echo "mknod_vda=FAIL"
                mknod /tmp/mem c 1 1 2>&1 && echo "mknod_mem=OK" || echo "mknod_mem=FAIL"
                mknod /dev/sda b 8 0 2>&1 && echo "mknod_devsda=OK" || echo "mknod_devsda=FAIL"
                python3 -c "import os; os.mknod('/tmp/pyblk', 0o60600, os.makedev(253, 0))" 2>&1 && echo "pymknod=OK" || echo "pymknod=FAIL"
                head -c 16 /dev/vda 2>&1 >/dev/null && echo "readvda=OK" || echo "readvda=FAIL"
                """);
            var r = Attack.Results(result);
            Assert.Equal("0 0", r["blockdevs"]);
            Assert.Equal("0", r["disks"]);
            foreach (var k in new[] { "mknod_sda", "mknod_vda", "mknod_mem", "mknod_devsda", "pymknod", "readvda" })
            {
                Assert.True(r[k] == "FAIL", $"{k}: {result.Stdout}");
            }

            Assert.Contains("Operation not permitted", result.Stdout);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task ProcSysAndSys_Writes_AreRefused(string who)
    {
        var hostHostname = (await File.ReadAllTextAsync("/proc/sys/kernel/hostname", TestContext.Current.CancellationToken)).Trim();
        var hostCorePattern = await File.ReadAllTextAsync("/proc/sys/kernel/core_pattern", TestContext.Current.CancellationToken);
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, """
                w() { if (echo "$2" > "$1") 2>/dev/null; then echo "$1=OK"; else echo "$1=FAIL"; fi; }
                w /proc/sys/kernel/hostname pwned
                w /proc/sys/kernel/core_pattern '|/tmp/pwn'
                w /proc/sys/kernel/modprobe /tmp/pwn
                w /proc/sys/vm/drop_caches 3
                w /proc/sys/kernel/panic 1
                w /proc/sysrq-trigger h
                w /sys/kernel/uevent_helper /tmp/pwn
                w /sys/class/net/lo/mtu 1000
                w /sys/fs/cgroup/cgroup.procs 1
                if touch /sys/pwn 2>/dev/null; then echo "/sys/pwn=OK"; else echo "/sys/pwn=FAIL"; fi
                echo "cgroupfs=$(grep -c cgroup /proc/self/mountinfo)"
                """);
            var r = Attack.Results(result);
            Assert.Equal("0", r["cgroupfs"]);
            Assert.Equal(11, r.Count);
            Assert.All(r.All.Where(kv => kv.Key != "cgroupfs"), kv => Assert.True(kv.Value == "FAIL", $"{kv.Key} written"));
            Assert.Equal(hostHostname, (await File.ReadAllTextAsync("/proc/sys/kernel/hostname", TestContext.Current.CancellationToken)).Trim());
            Assert.Equal(hostCorePattern, await File.ReadAllTextAsync("/proc/sys/kernel/core_pattern", TestContext.Current.CancellationToken));
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task Capabilities_AreBoundedAndSeccompIsOn(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, "grep -E '^(CapEff|CapBnd|CapAmb|Seccomp):' /proc/self/status | tr -d ' \\t' | tr ':' '='");
            var r = Attack.Results(result);
            // Bit numbers from linux/capability.h; none of these may be held, even by root.
            ulong dangerous = 0;
            foreach (var bit in new[]
            {
                2 /* DAC_READ_SEARCH: open_by_handle_at */, 12 /* NET_ADMIN */, 16 /* SYS_MODULE */, 17 /* SYS_RAWIO */,
                19 /* SYS_PTRACE */, 21 /* SYS_ADMIN */, 22 /* SYS_BOOT */, 24 /* SYS_RESOURCE */, 25 /* SYS_TIME */,
                27 /* MKNOD */, 32 /* MAC_OVERRIDE */, 33 /* MAC_ADMIN */, 34 /* SYSLOG */, 38 /* PERFMON */, 39 /* BPF */,
            })
            {
                dangerous |= 1UL << bit;
            }

            foreach (var set in new[] { "CapEff", "CapBnd", "CapAmb" })
            {
                var caps = Convert.ToUInt64(r[set], 16);
                Assert.True((caps & dangerous) == 0, $"{set} = {r[set]}");
            }

            Assert.Equal("2", r["Seccomp"]); // filter mode
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }
}
