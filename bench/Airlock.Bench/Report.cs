using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace Airlock.Bench;

/// <summary>Runs every measurement in order and holds the results.</summary>
internal sealed class Report(Options options)
{
    private readonly Dictionary<string, Sample?> _peers = [];
    private readonly Dictionary<string, string> _peerErrors = [];
    private readonly JsonObject _extra = [];
    private Sample? _cold;
    private Sample? _coldCreateOnly;
    private Sample? _warm;
    private Sample? _warmFirstCommand;
    private Sample? _internet;
    private Sample? _exec;
    private double _execPerS;
    private double _execPerSSeconds;
    private double _execPerSHttpClient;
    private JsonObject? _wrk;
    private double _idleHostMib;
    private double _idleCgroupMib;
    private int _idleCount;
    private Sample? _write;
    private Sample? _read;
    private Sample? _apiAll;
    private Sample? _apiGet;
    private Sample? _apiList;
    private double _apiAchieved;
    private int _apiErrors;

    private readonly string _loadAtStart = File.ReadAllText("/proc/loadavg").Trim();

    private static readonly string[] s_peerNames = ["floor_spawn", "floor_unshare", "bwrap", "crun", "runc"];

    public async Task RunAsync(Api api, CancellationToken ct)
    {
        ReadFloors();
        if (options.Runs("cold"))
        {
            // A disk size the warm pool does not hold (it keeps the default shape): the full start path.
            Step("cold create -> first command (diskMb 1000: not the pooled shape)");
            (_coldCreateOnly, _cold) = await CreateToFirstCommandAsync(api, new CreateBody { DiskMb = 1000 }, options.ColdRuns, TimeSpan.Zero, ct);
        }

        if (options.Runs("warm"))
        {
            // The default shape, taken from the warm pool; an untimed pause between runs lets the pool refill.
            Step("create from the warm pool (default shape)");
            (_warm, _warmFirstCommand) = await CreateToFirstCommandAsync(api, new CreateBody(), options.ColdRuns, TimeSpan.FromMilliseconds(150), ct);
        }

        if (options.Runs("internet"))
        {
            // Network mode internet on top of the create: veth pair, addresses, nft rules, DNS forwarder.
            Step("create with network internet -> first command");
            (_, _internet) = await CreateToFirstCommandAsync(api, new CreateBody { Network = new NetworkBody { Mode = "internet" } }, options.ColdRuns, TimeSpan.FromMilliseconds(150), ct);
        }

        if (options.Runs("exec"))
        {
            Step("exec round trip");
            _exec = await ExecRoundTripAsync(api, ct);
        }

        if (!options.Runs("idle") && !options.Runs("throughput") && !options.Runs("api") && !options.Runs("files"))
        {
            return;
        }

        Step($"idle memory with {options.IdleSandboxes} sandboxes");
        var alive = await IdleMemoryAsync(api, ct);
        Step($"commands/s across {options.ThroughputSandboxes} sandboxes");
        await Parallel.ForEachAsync(alive.Skip(options.ThroughputSandboxes), new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (id, c) => await api.DeleteAsync(id, c));
        alive = [.. alive.Take(options.ThroughputSandboxes)];
        await ThroughputAsync(api, alive, ct);
        Step($"API get/list at {options.ApiRate}/s with {alive.Count} sandboxes");
        await ApiLatencyAsync(api, alive, ct);
        await api.DeleteAllAsync(ct);
        Step("100 MB file write/read");
        await FilesAsync(api, ct);
    }

    private static void Step(string what) => Console.WriteLine($"==> {what}");

    private void ReadFloors()
    {
        foreach (var name in s_peerNames)
        {
            var txt = Path.Combine(options.FloorsDir, name + ".txt");
            var err = Path.Combine(options.FloorsDir, name + ".err");
            if (File.Exists(err) && new FileInfo(err).Length > 0)
            {
                _peers[name] = null;
                _peerErrors[name] = File.ReadAllText(err).Trim();
            }
            else if (File.Exists(txt))
            {
                _peers[name] = new Sample(File.ReadAllLines(txt).Where(l => l.Length > 0).Select(l => double.Parse(l, CultureInfo.InvariantCulture)));
            }
            else
            {
                _peers[name] = null;
                _peerErrors[name] = "not measured";
            }
        }
    }

    /// <summary>create (answered), and create → first command exited, per run.</summary>
    private static async Task<(Sample Create, Sample FirstCommand)> CreateToFirstCommandAsync(Api api, CreateBody body, int runs, TimeSpan pause, CancellationToken ct)
    {
        // Two untimed runs first: JIT on both sides.
        var create = new List<double>();
        var total = new List<double>();
        for (var i = -2; i < runs; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            var id = await api.CreateAsync(body, ct);
            var created = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            await api.ExecAsync(id, "true", ct);
            var ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            await api.DeleteAsync(id, ct);
            if (i >= 0)
            {
                create.Add(created);
                total.Add(ms);
            }

            if (pause > TimeSpan.Zero)
            {
                await Task.Delay(pause, ct);
            }
        }

        return (new Sample(create), new Sample(total));
    }

    private async Task<Sample> ExecRoundTripAsync(Api api, CancellationToken ct)
    {
        var id = await api.CreateAsync(ct);
        for (var i = 0; i < 20; i++)
        {
            await api.ExecAsync(id, "true", ct);
        }

        var times = new double[options.ExecRuns];
        for (var i = 0; i < times.Length; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            await api.ExecAsync(id, "true", ct);
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }

        await api.DeleteAsync(id, ct);
        return new Sample(times);
    }

    private async Task<List<string>> IdleMemoryAsync(Api api, CancellationToken ct)
    {
        await Task.Delay(1000, ct);
        var before = MemUsedKib();
        var ids = new List<string>();
        await Parallel.ForEachAsync(Enumerable.Range(0, options.IdleSandboxes), new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (_, c) =>
        {
            var id = await api.CreateAsync(c);
            lock (ids)
            {
                ids.Add(id);
            }
        });
        // Let them settle (init idle, page cache of the template shared).
        await Task.Delay(3000, ct);
        var after = MemUsedKib();
        _idleCount = ids.Count;
        _idleHostMib = (after - before) / 1024.0 / ids.Count;
        var cgroupBytes = SumCgroupMemory(ids, out var found);
        _idleCgroupMib = found > 0 ? cgroupBytes / 1048576.0 / found : double.NaN;
        _extra["idle_host_delta_mib"] = Math.Round((after - before) / 1024.0, 1);
        _extra["idle_cgroups_found"] = found;
        return ids;
    }

    /// <summary>MemTotal - MemAvailable, in KiB.</summary>
    private static long MemUsedKib()
    {
        long total = 0, available = 0;
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts[0] == "MemTotal:")
            {
                total = long.Parse(parts[1], CultureInfo.InvariantCulture);
            }
            else if (parts[0] == "MemAvailable:")
            {
                available = long.Parse(parts[1], CultureInfo.InvariantCulture);
            }
        }

        return total - available;
    }

    /// <summary>The sandboxes' memory cgroups (v1 memory.usage_in_bytes or v2 memory.current) summed.</summary>
    private static long SumCgroupMemory(List<string> ids, out int found)
    {
        var parents = new List<(string Dir, string File)>();
        if (Directory.Exists("/sys/fs/cgroup/memory"))
        {
            parents.AddRange(Directory.GetDirectories("/sys/fs/cgroup/memory", "airlock*").Select(d => (d, "memory.usage_in_bytes")));
        }
        else
        {
            parents.AddRange(Directory.GetDirectories("/sys/fs/cgroup", "airlock*").Select(d => (d, "memory.current")));
        }

        long sum = 0;
        found = 0;
        foreach (var id in ids)
        {
            foreach (var (dir, file) in parents)
            {
                var path = Path.Combine(dir, id, file);
                if (File.Exists(path))
                {
                    sum += long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);
                    found++;
                    break;
                }
            }
        }

        return sum;
    }

    private async Task ThroughputAsync(Api api, List<string> ids, CancellationToken ct)
    {
        // One untimed command per sandbox, then a fixed count, round-robin, N in flight.
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = options.ThroughputConcurrency, CancellationToken = ct }, async (id, c) => await api.ExecAsync(id, "true", c));
        var sw = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, options.ThroughputCommands), new ParallelOptions { MaxDegreeOfParallelism = options.ThroughputConcurrency, CancellationToken = ct }, async (i, c) => await api.ExecAsync(ids[i % ids.Count], "true", c));
        _execPerSSeconds = sw.Elapsed.TotalSeconds;
        _execPerSHttpClient = _execPerS = options.ThroughputCommands / _execPerSSeconds;

        // The same load from wrk (one C thread, the same number of connections): the load generator
        // shares the two cores with the server, and HttpClient's own cost per request is about the
        // server's (perf: the bench process took ~1/3 of all samples). wrk's figure is the server's
        // capacity; HttpClient's stays in the table. Without wrk, the HttpClient figure counts.
        if (await RunWrkAsync(ids, ct) is { } wrk)
        {
            _wrk = wrk;
            _execPerS = (double)wrk["requests"]! / (double)wrk["seconds"]!;
        }
    }

    private async Task<JsonObject?> RunWrkAsync(List<string> ids, CancellationToken ct)
    {
        var script = Path.Combine(AppContext.BaseDirectory, "exec.lua");
        var start = new ProcessStartInfo("wrk") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in (string[])["-t1", $"-c{options.ThroughputConcurrency}", $"-d{options.ThroughputWrkSeconds}s", "-s", script, options.Url.ToString().TrimEnd('/'), "--", options.Key, .. ids])
        {
            start.ArgumentList.Add(arg);
        }

        Process? process;
        try
        {
            process = Process.Start(start);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Console.Error.WriteLine("    wrk is not installed: commands/s from HttpClient only");
            return null;
        }

        using (process)
        {
            var stdout = process!.StandardOutput.ReadToEndAsync(ct);
            var stderr = process.StandardError.ReadToEndAsync(ct);
            await process.WaitForExitAsync(ct);
            var line = (await stdout).Split('\n').FirstOrDefault(l => l.StartsWith("WRK ", StringComparison.Ordinal));
            if (process.ExitCode != 0 || line is null)
            {
                throw new InvalidOperationException($"wrk failed ({process.ExitCode}): {await stderr}{await stdout}");
            }

            var result = JsonNode.Parse(line[4..])!.AsObject();
            if ((int)result["failures"]! > 0)
            {
                throw new InvalidOperationException($"wrk: {result["failures"]} commands did not answer 200 with exit code 0");
            }

            return result;
        }
    }

    /// <summary>
    /// Open-loop load: requests are sent on a fixed schedule whatever the answers do, alternating
    /// get and list; latency counts from the scheduled send time, so a stall is not hidden
    /// (no coordinated omission).
    /// </summary>
    private async Task ApiLatencyAsync(Api api, List<string> ids, CancellationToken ct)
    {
        var total = (int)(options.ApiRate * options.ApiDuration.TotalSeconds);
        var latencies = new double[total];
        var errors = 0;
        var tasks = new Task[total];
        var sw = Stopwatch.StartNew();
        var interval = 1000.0 / options.ApiRate;
        for (var i = 0; i < total; i++)
        {
            var due = i * interval;
            while (sw.Elapsed.TotalMilliseconds < due)
            {
                if (due - sw.Elapsed.TotalMilliseconds > 1.5)
                {
                    Thread.Sleep(1);
                }
                else
                {
                    Thread.SpinWait(50);
                }
            }

            var index = i;
            var uri = index % 2 == 0 ? $"/v1/sandboxes/{ids[index / 2 % ids.Count]}" : "/v1/sandboxes";
            tasks[i] = Task.Run(async () =>
            {
                try
                {
                    using var response = await api.Http.GetAsync(uri, ct);
                    await response.Content.LoadIntoBufferAsync(ct);
                    if (!response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref errors);
                    }
                }
                catch (HttpRequestException)
                {
                    Interlocked.Increment(ref errors);
                }

                latencies[index] = sw.Elapsed.TotalMilliseconds - due;
            }, ct);
        }

        await Task.WhenAll(tasks);
        var elapsed = sw.Elapsed.TotalSeconds;
        _apiAchieved = total / elapsed;
        _apiErrors = errors;
        _apiAll = new Sample(latencies);
        _apiGet = new Sample(latencies.Where((_, i) => i % 2 == 0));
        _apiList = new Sample(latencies.Where((_, i) => i % 2 == 1));
    }

    private async Task FilesAsync(Api api, CancellationToken ct)
    {
        var id = await api.CreateAsync(ct);
        var payload = new byte[options.FileBytes];
        Random.Shared.NextBytes(payload);
        var buffer = new byte[1 << 20];
        var writes = new List<double>();
        var reads = new List<double>();
        const string uri = "files?path=/tmp/bench.bin";
        for (var i = -1; i < options.FileRuns; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            using (var content = new ByteArrayContent(payload))
            using (var put = await api.Http.PutAsync($"/v1/sandboxes/{id}/{uri}", content, ct))
            {
                put.EnsureSuccessStatusCode();
            }

            var w = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            t0 = Stopwatch.GetTimestamp();
            long got = 0;
            using (var get = await api.Http.GetAsync($"/v1/sandboxes/{id}/{uri}", HttpCompletionOption.ResponseHeadersRead, ct))
            {
                get.EnsureSuccessStatusCode();
                await using var stream = await get.Content.ReadAsStreamAsync(ct);
                int n;
                while ((n = await stream.ReadAsync(buffer, ct)) > 0)
                {
                    got += n;
                }
            }

            var r = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (got != payload.Length)
            {
                throw new InvalidOperationException($"read {got} bytes, wrote {payload.Length}");
            }

            if (i >= 0)
            {
                writes.Add(payload.Length / 1e6 / w);
                reads.Add(payload.Length / 1e6 / r);
            }
        }

        await api.DeleteAsync(id, ct);
        _write = new Sample(writes);
        _read = new Sample(reads);
    }

    private static double? Ratio(Sample? a, Sample? b) => a is null || b is null ? null : a.Median / b.Median;

    private List<Target> Targets()
    {
        var unshare = _peers["floor_unshare"];
        var spawn = _peers["floor_spawn"];
        var bwrap = _peers["bwrap"];
        var crun = _peers["crun"];
        return
        [
            new("create_cold <= 3x unshare", Ratio(_cold, unshare) is { } r1 ? r1 <= 3 : null),
            new("create_cold < bwrap", Ratio(_cold, bwrap) is { } r2 ? r2 < 1 : null),
            new("create_cold < crun", Ratio(_cold, crun) is { } r3 ? r3 < 1 : null),
            new("create_warm <= 3 ms", _warm is null ? null : _warm.Median <= 3),
            new("exec <= 3x spawn floor", Ratio(_exec, spawn) is { } r4 ? r4 <= 3 : null),
            new("exec_per_s >= 1000", _execPerS >= 1000),
            new("idle <= 2 MiB/sandbox", _idleHostMib <= 2),
            new("file read >= 1000 MB/s", _read is null ? null : _read.Median >= 1000),
            new("file write >= 500 MB/s", _write is null ? null : _write.Median >= 500),
            new("api p99 < 10 ms", _apiAll is null ? null : _apiAll.P99 < 10),
        ];
    }

    public void PrintTable(TextWriter w)
    {
        static string F(double? v, int digits = 2) => v is { } d && !double.IsNaN(d) ? d.ToString("F" + digits, CultureInfo.InvariantCulture) : "-";
        w.WriteLine();
        w.WriteLine($"| measurement | p50 | p95 | n | vs floor/peer |");
        w.WriteLine($"|---|---|---|---|---|");
        foreach (var name in s_peerNames)
        {
            var s = _peers[name];
            var why = _peerErrors.TryGetValue(name, out var e) ? $"null: {e}" : "";
            w.WriteLine($"| {name} (ms) | {F(s?.Median)} | {F(s?.P95)} | {s?.Count ?? 0} | {why} |");
        }

        w.WriteLine($"| create_cold -> first cmd (ms) | {F(_cold?.Median)} | {F(_cold?.P95)} | {_cold?.Count} | {F(Ratio(_cold, _peers["floor_unshare"]))}x unshare, {F(Ratio(_cold, _peers["bwrap"]))}x bwrap, {F(Ratio(_cold, _peers["crun"]))}x crun, {F(Ratio(_cold, _peers["runc"]))}x runc |");
        w.WriteLine($"| create_cold, create answered (ms) | {F(_coldCreateOnly?.Median)} | {F(_coldCreateOnly?.P95)} | {_coldCreateOnly?.Count} | |");
        w.WriteLine($"| create_warm, create answered (ms) | {F(_warm?.Median)} | {F(_warm?.P95)} | {_warm?.Count} | {F(Ratio(_warm, _peers["floor_unshare"]))}x unshare |");
        w.WriteLine($"| create_warm -> first cmd (ms) | {F(_warmFirstCommand?.Median)} | {F(_warmFirstCommand?.P95)} | {_warmFirstCommand?.Count} | |");
        w.WriteLine($"| create network internet -> first cmd (ms) | {F(_internet?.Median)} | {F(_internet?.P95)} | {_internet?.Count} | {F(Ratio(_internet, _warmFirstCommand))}x warm |");
        w.WriteLine($"| exec round trip (ms) | {F(_exec?.Median)} | {F(_exec?.P95)} | {_exec?.Count} | {F(Ratio(_exec, _peers["floor_spawn"]))}x spawn floor |");
        var wrkCount = _wrk is null ? "" : $"{_wrk["requests"]}";
        var wrkNote = _wrk is null ? "HttpClient (no wrk)" : $"wrk -t1 -c{options.ThroughputConcurrency} {options.ThroughputWrkSeconds} s; HttpClient {F(_execPerSHttpClient, 0)}/s ({options.ThroughputCommands})";
        w.WriteLine($"| exec/s, {options.ThroughputSandboxes} sandboxes, {options.ThroughputConcurrency} in flight | {F(_execPerS, 0)} | | {wrkCount} | {wrkNote} |");
        w.WriteLine($"| idle MiB/sandbox (host MemAvailable) | {F(_idleHostMib)} | | {_idleCount} | cgroup sum: {F(_idleCgroupMib)} MiB each |");
        w.WriteLine($"| file write 100 MiB (MB/s) | {F(_write?.Median, 0)} | {F(_write?.Percentile(5), 0)} (p5) | {_write?.Count} | |");
        w.WriteLine($"| file read 100 MiB (MB/s) | {F(_read?.Median, 0)} | {F(_read?.Percentile(5), 0)} (p5) | {_read?.Count} | |");
        w.WriteLine($"| API get+list at {options.ApiRate}/s (ms) | {F(_apiAll?.Median)} | {F(_apiAll?.P95)} | {_apiAll?.Count} | p99 {F(_apiAll?.P99)} (get {F(_apiGet?.P99)}, list {F(_apiList?.P99)}), achieved {F(_apiAchieved, 0)}/s, {_apiErrors} errors |");
        w.WriteLine();
        w.WriteLine("| target | result |");
        w.WriteLine("|---|---|");
        foreach (var t in Targets())
        {
            w.WriteLine($"| {t.Name} | {(t.Pass is null ? "n/a" : t.Pass.Value ? "PASS" : "FAIL")} |");
        }
    }

    public JsonObject ToJson()
    {
        static JsonNode? N(double? v, int digits = 3) => v is { } d && !double.IsNaN(d) && !double.IsInfinity(d) ? JsonValue.Create(Math.Round(d, digits)) : null;
        static JsonObject S(Sample? s) => s is null ? new JsonObject { ["n"] = 0 } : new JsonObject { ["p50"] = N(s.Median), ["p95"] = N(s.P95), ["p99"] = N(s.P99), ["n"] = s.Count };

        var peers = new JsonObject();
        foreach (var name in s_peerNames)
        {
            var o = S(_peers[name]);
            if (_peerErrors.TryGetValue(name, out var e))
            {
                o["error"] = e;
            }

            peers[name] = o;
        }

        var targets = new JsonObject();
        foreach (var t in Targets())
        {
            targets[t.Name] = t.Pass is null ? null : JsonValue.Create(t.Pass.Value);
        }

        return new JsonObject
        {
            ["floor_spawn_ms"] = N(_peers["floor_spawn"]?.Median),
            ["floor_unshare_ms"] = N(_peers["floor_unshare"]?.Median),
            ["bwrap_ms"] = N(_peers["bwrap"]?.Median),
            ["crun_ms"] = N(_peers["crun"]?.Median),
            ["runc_ms"] = N(_peers["runc"]?.Median),
            ["create_cold_p50_ms"] = N(_cold?.Median),
            ["create_warm_p50_ms"] = N(_warm?.Median),
            ["create_internet_p50_ms"] = N(_internet?.Median),
            ["exec_p50_ms"] = N(_exec?.Median),
            ["exec_per_s"] = N(_execPerS, 1),
            ["idle_mib_per_sandbox"] = N(_idleHostMib),
            ["file_read_mb_s"] = N(_read?.Median, 1),
            ["file_write_mb_s"] = N(_write?.Median, 1),
            ["api_p99_ms"] = N(_apiAll?.P99),
            ["warm_pool"] = true,
            ["details"] = new JsonObject
            {
                ["quick"] = options.Quick,
                ["machine"] = new JsonObject
                {
                    ["nproc"] = Environment.ProcessorCount,
                    ["kernel"] = File.ReadAllText("/proc/sys/kernel/osrelease").Trim(),
                    ["date"] = DateTimeOffset.UtcNow.ToString("o", CultureInfo.InvariantCulture),
                    ["mem_total_mib"] = MemTotalMib(),
                    ["loadavg_at_start"] = _loadAtStart,
                    ["loadavg_at_end"] = File.ReadAllText("/proc/loadavg").Trim(),
                },
                ["peers"] = peers,
                ["create_cold_ms"] = S(_cold),
                ["create_cold_create_only_ms"] = S(_coldCreateOnly),
                ["create_warm_ms"] = S(_warm),
                ["create_warm_first_command_ms"] = S(_warmFirstCommand),
                ["exec_ms"] = S(_exec),
                ["exec_per_s"] = new JsonObject
                {
                    ["commands"] = options.ThroughputCommands,
                    ["sandboxes"] = options.ThroughputSandboxes,
                    ["in_flight"] = options.ThroughputConcurrency,
                    ["seconds"] = N(_execPerSSeconds),
                    ["httpclient_per_s"] = N(_execPerSHttpClient, 1),
                    ["wrk"] = _wrk?.DeepClone(),
                },
                ["idle"] = new JsonObject
                {
                    ["sandboxes"] = _idleCount,
                    ["host_mib_per_sandbox"] = N(_idleHostMib),
                    ["cgroup_mib_per_sandbox"] = N(_idleCgroupMib),
                    ["host_delta_mib"] = _extra["idle_host_delta_mib"]?.DeepClone(),
                    ["cgroups_found"] = _extra["idle_cgroups_found"]?.DeepClone(),
                },
                ["file_write_mb_s"] = S(_write),
                ["file_read_mb_s"] = S(_read),
                ["file_bytes"] = options.FileBytes,
                ["api_ms"] = new JsonObject
                {
                    ["all"] = S(_apiAll),
                    ["get"] = S(_apiGet),
                    ["list"] = S(_apiList),
                    ["requested_per_s"] = options.ApiRate,
                    ["achieved_per_s"] = N(_apiAchieved, 1),
                    ["errors"] = _apiErrors,
                    ["seconds"] = options.ApiDuration.TotalSeconds,
                },
                ["ratios"] = new JsonObject
                {
                    ["create_cold_vs_unshare"] = N(Ratio(_cold, _peers["floor_unshare"])),
                    ["create_cold_vs_bwrap"] = N(Ratio(_cold, _peers["bwrap"])),
                    ["create_cold_vs_crun"] = N(Ratio(_cold, _peers["crun"])),
                    ["create_cold_vs_runc"] = N(Ratio(_cold, _peers["runc"])),
                    ["create_warm_vs_unshare"] = N(Ratio(_warm, _peers["floor_unshare"])),
                    ["exec_vs_spawn"] = N(Ratio(_exec, _peers["floor_spawn"])),
                },
                ["targets"] = targets,
            },
        };
    }

    private static long MemTotalMib()
    {
        var line = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
    }

    private sealed record Target(string Name, bool? Pass);
}
