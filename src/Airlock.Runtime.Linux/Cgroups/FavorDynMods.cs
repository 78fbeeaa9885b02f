using System.Runtime.InteropServices;

namespace Airlock.Runtime.Linux.Cgroups;

/// <summary>
/// Moving a process into a cgroup (writing <c>cgroup.procs</c>) takes the kernel's global
/// <c>cgroup_threadgroup_rwsem</c> for writing, which waits for an RCU grace period: 5–20 ms
/// on this machine kind, measured, per sandbox create. The cgroup2 mount option
/// <c>favordynmods</c> (kernel ≥ 6.0) is the kernel's knob for hosts that migrate tasks often:
/// the migration then costs about 0.03 ms, and fork/exit pay a shared counter instead of a per-CPU
/// one (no measurable change in the spawn floor). It is a property of the whole host, applied by
/// remounting the cgroup2 hierarchy with its current options plus this one (Airlock:FavorDynMods,
/// default on; docs/architecture.md, "Cgroups").
/// </summary>
internal static partial class FavorDynMods
{
    private const ulong MsRdonly = 1, MsNosuid = 2, MsNodev = 4, MsNoexec = 8, MsRemount = 32,
        MsNoatime = 1024, MsNodiratime = 2048, MsRelatime = 1 << 21, MsStrictatime = 1 << 24;

    /// <summary>Null when already on or applied now; otherwise why not (no cgroup2 mount, old kernel).</summary>
    public static string? Ensure()
    {
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var sep = line.IndexOf(" - ", StringComparison.Ordinal);
            var left = line[..sep].Split(' ');
            var right = line[(sep + 3)..].Split(' ');
            if (right[0] != "cgroup2")
            {
                continue;
            }

            var superOptions = right[2].Split(',').Where(o => o is not ("rw" or "ro")).ToList();
            if (superOptions.Contains("favordynmods"))
            {
                return null;
            }

            // A superblock remount also resets the mount's own flags: pass them back unchanged.
            ulong flags = MsRemount;
            foreach (var option in left[5].Split(','))
            {
                flags |= option switch
                {
                    "ro" => MsRdonly,
                    "nosuid" => MsNosuid,
                    "nodev" => MsNodev,
                    "noexec" => MsNoexec,
                    "noatime" => MsNoatime,
                    "nodiratime" => MsNodiratime,
                    "relatime" => MsRelatime,
                    "strictatime" => MsStrictatime,
                    _ => 0,
                };
            }

            superOptions.Add("favordynmods");
            return Mount(null, left[4], null, flags, string.Join(',', superOptions)) == 0
                ? null
                : $"remount of {left[4]} with favordynmods failed: {Marshal.GetLastPInvokeErrorMessage()}";
        }

        return "no cgroup2 mount";
    }

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mount(string? source, string target, string? fstype, ulong flags, string data);
}
