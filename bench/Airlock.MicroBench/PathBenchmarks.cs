using Airlock.Core.Sandboxes;
using BenchmarkDotNet.Attributes;

namespace Airlock.MicroBench;

/// <summary>SandboxPath.Resolve, which every file API call (and exec's cwd) goes through.</summary>
[MemoryDiagnoser]
public class PathBenchmarks
{
    private static readonly SandboxUser s_user = new("user", 1000, 1000, "/home/user");

    // 33 components, about 320 characters: a deep node_modules path.
    private static readonly string s_long = "/home/user/project/" + string.Join('/', Enumerable.Range(0, 29).Select(i => i % 2 == 0 ? "node_modules" : $"package-{i}")) + "/index.js";

    [Benchmark(Baseline = true)]
    public string Relative() => SandboxPath.Resolve("notes.txt", s_user);

    [Benchmark]
    public string Home() => SandboxPath.Resolve("~/src/main.py", s_user);

    [Benchmark]
    public string AbsoluteWithDots() => SandboxPath.Resolve("/home/user/../user/./src/../src/main.py", s_user);

    [Benchmark]
    public string LongAbsolute() => SandboxPath.Resolve(s_long, s_user);
}
