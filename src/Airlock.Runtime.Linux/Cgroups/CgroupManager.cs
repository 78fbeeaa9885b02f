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
    private readonly string? _unified;
    private readonly Dictionary<string, string> _v1 = new(StringComparer.Ordinal);

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
                    if (option is "memory" or "cpu" or "pids" or "cpuacct")
                    {
                        _v1.TryAdd(option, mountPoint);
                    }
                }
            }
        }

        _pureV2 = _v1.Count == 0 && _unified is not null;
        if (_pureV2)
        {
            // Controllers must be enabled down the path for the leaf to get the interface files.
            EnableControllers(_unified!);
            var own = Path.Combine(_unified!, _name);
            Directory.CreateDirectory(own);
            EnableControllers(own);
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

    public void Create(string id, int cpus, long memoryBytes, int pidsMax)
    {
        foreach (var dir in Directories(id))
        {
            Directory.CreateDirectory(dir);
        }

        var quota = (cpus * 100_000).ToString(CultureInfo.InvariantCulture);
        var memory = memoryBytes.ToString(CultureInfo.InvariantCulture);
        var pids = pidsMax.ToString(CultureInfo.InvariantCulture);
        if (_pureV2)
        {
            var dir = Path.Combine(_unified!, _name, id);
            Write(dir, "memory.max", memory);
            WriteIfExists(dir, "memory.swap.max", "0");
            Write(dir, "cpu.max", $"{quota} 100000");
            Write(dir, "pids.max", pids);
        }
        else
        {
            var mem = Path.Combine(_v1["memory"], _name, id);
            Write(mem, "memory.limit_in_bytes", memory);
            WriteIfExists(mem, "memory.memsw.limit_in_bytes", memory);
            var cpu = Path.Combine(_v1["cpu"], _name, id);
            Write(cpu, "cpu.cfs_period_us", "100000");
            Write(cpu, "cpu.cfs_quota_us", quota);
            Write(Path.Combine(_v1["pids"], _name, id), "pids.max", pids);
        }
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
        var dirs = Directories(id).Where(Directory.Exists).ToList();
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
        var roots = _pureV2 ? [Path.Combine(_unified!, _name)] : _v1.Values.Distinct().Append(_unified).OfType<string>().Select(m => Path.Combine(m, _name));
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

    private static void Write(string dir, string file, string value) => File.WriteAllText(Path.Combine(dir, file), value);

    private static void WriteIfExists(string dir, string file, string value)
    {
        if (File.Exists(Path.Combine(dir, file)))
        {
            TryWrite(Path.Combine(dir, file), value);
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
