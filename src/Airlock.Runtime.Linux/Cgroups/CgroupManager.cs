using System.Globalization;

namespace Airlock.Runtime.Linux.Cgroups;

/// <summary>
/// Per-sandbox cgroups on either layout. Hybrid hosts (this machine kind) enforce limits only
/// through v1 (memory, cpu, pids hierarchies); the v2 tree there has no controllers but still
/// gives <c>cgroup.kill</c>. Pure v2 hosts get one directory with the controllers enabled.
/// </summary>
internal sealed class CgroupManager
{
    private readonly string _name;
    private readonly bool _pureV2;
    private readonly bool _memsw;
    private readonly bool _swapMax;
    private readonly string? _unified;
    private readonly Dictionary<string, string> _v1 = new(StringComparer.Ordinal);

    /// <summary>Hierarchies older servers joined (cpuacct): swept and removed, never created.</summary>
    private readonly List<string> _legacyV1 = [];

    public CgroupManager(string name)
    {
        _name = name;
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            // "... <mount point> <opts> ... - <fstype> <source> <super opts>"
            var sep = line.IndexOf(" - ", StringComparison.Ordinal);
            var left = line[..sep].Split(' ');
            var right = line[(sep + 3)..].Split(' ');
            var mountPoint = left[4];
            if (right[0] == "cgroup2")
            {
                _unified ??= mountPoint;
            }
            else if (right[0] == "cgroup")
            {
                foreach (var option in right[2].Split(','))
                {
                    // cpuacct is not joined: nothing reads it (CPU usage is cgroup2's cpu.stat, which
                    // exists without the controller), and every hierarchy costs a mkdir and a
                    // migration on the cold path.
                    if (option is "memory" or "cpu" or "pids")
                    {
                        _v1.TryAdd(option, mountPoint);
                    }
                    else if (option == "cpuacct" && !_legacyV1.Contains(mountPoint))
                    {
                        _legacyV1.Add(mountPoint);
                    }
                }
            }
        }

        _pureV2 = _v1.Count == 0 && _unified is not null;
        // Optional files, known from the hierarchy roots (children have the same set): swap
        // accounting may be off (no memsw) and a v2 host may have no swap controller file.
        _memsw = _v1.TryGetValue("memory", out var memoryRoot) && File.Exists(Path.Combine(memoryRoot, "memory.memsw.limit_in_bytes"));
        if (_pureV2)
        {
            // Controllers must be enabled down the path for the leaf to get the interface files.
            EnableControllers(_unified!);
            var own = Path.Combine(_unified!, _name);
            Directory.CreateDirectory(own);
            EnableControllers(own);
            _swapMax = File.Exists(Path.Combine(own, "memory.swap.max"));
        }
        else if (!_v1.ContainsKey("memory") || !_v1.ContainsKey("pids") || !_v1.ContainsKey("cpu"))
        {
            throw new InvalidOperationException("no usable cgroup controllers (need memory, cpu and pids in v1, or cgroup v2)");
        }
    }

    public string Layout => _pureV2 ? "v2" : _unified is not null ? "hybrid" : "v1";

    /// <summary>Every directory a sandbox's processes must join.</summary>
    public IReadOnlyList<string> Directories(string id)
    {
        if (_pureV2)
        {
            return [Path.Combine(_unified!, _name, id)];
        }

        var dirs = _v1.Values.Distinct().Select(m => Path.Combine(m, _name, id)).ToList();
        if (_unified is not null)
        {
            dirs.Add(Path.Combine(_unified, _name, id));
        }

        return dirs;
    }

    /// <summary>
    /// The limit files of a new sandbox's cgroups and their values, as <c>file=value</c> for the
    /// helper's <c>--cgroup-set</c> (it makes the <see cref="Directories"/> and writes these before
    /// joining them: docs/init-protocol.md, step 1). Policy stays here; the helper only writes.
    /// </summary>
    public IReadOnlyList<string> Limits(string id, int cpus, long memoryBytes, int pidsMax)
    {
        var quota = (cpus * 100_000).ToString(CultureInfo.InvariantCulture);
        var memory = memoryBytes.ToString(CultureInfo.InvariantCulture);
        var pids = pidsMax.ToString(CultureInfo.InvariantCulture);
        if (_pureV2)
        {
            var dir = Path.Combine(_unified!, _name, id);
            List<string> v2 = [$"{dir}/memory.max={memory}", $"{dir}/cpu.max={quota} 100000", $"{dir}/pids.max={pids}"];
            if (_swapMax)
            {
                v2.Add($"{dir}/memory.swap.max=0");
            }

            return v2;
        }

        var mem = Path.Combine(_v1["memory"], _name, id);
        List<string> v1 = [$"{mem}/memory.limit_in_bytes={memory}"];
        if (_memsw)
        {
            // After the memory limit: the kernel refuses memsw below it.
            v1.Add($"{mem}/memory.memsw.limit_in_bytes={memory}");
        }

        var cpu = Path.Combine(_v1["cpu"], _name, id);
        v1.Add($"{cpu}/cpu.cfs_period_us=100000");
        v1.Add($"{cpu}/cpu.cfs_quota_us={quota}");
        v1.Add($"{Path.Combine(_v1["pids"], _name, id)}/pids.max={pids}");
        return v1;
    }

    /// <summary>Memory in use by the sandbox (for metrics and tests), or null.</summary>
    public long? MemoryUsage(string id)
    {
        var file = _pureV2 ? Path.Combine(_unified!, _name, id, "memory.current") : Path.Combine(_v1["memory"], _name, id, "memory.usage_in_bytes");
        return File.Exists(file) && long.TryParse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    /// <summary>Kills whatever is left and removes the directories; waits briefly for processes to go.</summary>
    public async Task RemoveAsync(string id)
    {
        var dirs = Directories(id).Concat(_legacyV1.Select(m => Path.Combine(m, _name, id))).Distinct().Where(Directory.Exists).ToList();
        if (dirs.Count == 0)
        {
            return;
        }

        for (var attempt = 0; attempt < 100; attempt++)
        {
            foreach (var dir in dirs)
            {
                KillAll(dir);
            }

            dirs.RemoveAll(TryRemove);
            if (dirs.Count == 0)
            {
                return;
            }

            await Task.Delay(attempt < 10 ? 5 : 50).ConfigureAwait(false);
        }

        throw new IOException($"cgroups of sandbox {id} could not be removed: {string.Join(", ", dirs)}");
    }

    /// <summary>Ids that have a cgroup directory in any hierarchy.</summary>
    public IEnumerable<string> ListIds()
    {
        var roots = _pureV2 ? [Path.Combine(_unified!, _name)] : _v1.Values.Concat(_legacyV1).Distinct().Append(_unified).OfType<string>().Select(m => Path.Combine(m, _name));
        return roots.Where(Directory.Exists).SelectMany(Directory.EnumerateDirectories).Select(Path.GetFileName).OfType<string>().Distinct();
    }

    private static void KillAll(string dir)
    {
        var kill = Path.Combine(dir, "cgroup.kill");
        if (File.Exists(kill))
        {
            TryWrite(kill, "1");
            return;
        }

        // v1 without cgroup.kill: signal each pid; the runtime has already killed the sandbox's
        // init, which takes its whole pid namespace with it, so this only catches stragglers.
        var procs = Path.Combine(dir, "cgroup.procs");
        if (!File.Exists(procs))
        {
            return;
        }

        foreach (var line in File.ReadAllLines(procs))
        {
            if (int.TryParse(line, out var pid))
            {
                _ = Interop.Libc.kill(pid, 9);
            }
        }
    }

    private static bool TryRemove(string dir)
    {
        try
        {
            Directory.Delete(dir);
            return true;
        }
        catch (DirectoryNotFoundException)
        {
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static void EnableControllers(string dir)
    {
        foreach (var controller in new[] { "memory", "cpu", "pids" })
        {
            TryWrite(Path.Combine(dir, "cgroup.subtree_control"), "+" + controller);
        }
    }

    private static void TryWrite(string path, string value)
    {
        try
        {
            File.WriteAllText(path, value);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
