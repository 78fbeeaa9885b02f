using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

// In-process by default: BenchmarkDotNet's usual toolchain generates and builds a second project
// that rebuilds the whole src/ tree outside the shared build lock. ShortRun keeps the suite at a
// few minutes on 2 cores; pass `--job medium` (or `default`) for tighter error bars.
var config = DefaultConfig.Instance;
if (!args.Contains("--job") && !args.Contains("-j"))
{
    config = config.AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).AsDefault());
}

BenchmarkSwitcher.FromAssembly(typeof(Airlock.MicroBench.PathBenchmarks).Assembly).Run(args, config);
