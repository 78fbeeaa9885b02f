using System.Diagnostics;
using System.Text.Json;
using Airlock.Core.Templates;
using Microsoft.Extensions.Options;

namespace Airlock.Runtime.Linux.Templates;

/// <summary>
/// Builds a template's rootfs with debootstrap, then its run steps in a chroot, into
/// <c>&lt;templates&gt;/&lt;name&gt;-&lt;hash&gt;/rootfs</c>. The build happens in a temp dir renamed into place at
/// the end, so a crash never leaves a half-built template that looks ready; an exclusive lock file
/// makes servers and test runs on one machine build each template once. Every step runs in a
/// private mount namespace (<c>unshare -m</c>) so nothing it mounts can outlive it on the host.
/// </summary>
internal sealed class DebootstrapTemplateBuilder(IOptions<RuntimeOptions> options) : ITemplateBuilder
{
    private readonly RuntimeOptions _options = options.Value;

    private string FinalDir(TemplateSpec spec) => Path.Combine(_options.ResolvedTemplatesDir, $"{spec.Name}-{spec.Hash()}");

    public string? TryGetBuilt(TemplateSpec spec)
    {
        var rootfs = Path.Combine(FinalDir(spec), "rootfs");
        return File.Exists(Path.Combine(FinalDir(spec), "spec.json")) && Directory.Exists(rootfs) ? rootfs : null;
    }

    public async Task<string> EnsureBuiltAsync(TemplateSpec spec, IProgress<string> progress, CancellationToken cancellationToken = default)
    {
        if (TryGetBuilt(spec) is { } built)
        {
            return built;
        }

        Directory.CreateDirectory(_options.ResolvedTemplatesDir);
        using var buildLock = await LockAsync(Path.Combine(_options.ResolvedTemplatesDir, $".{spec.Name}.lock"), progress, cancellationToken).ConfigureAwait(false);
        if (TryGetBuilt(spec) is { } builtMeanwhile)
        {
            return builtMeanwhile;
        }

        var work = Path.Combine(_options.ResolvedTemplatesDir, $".build-{spec.Name}-{spec.Hash()}");
        if (Directory.Exists(work))
        {
            await RunAsync("rm", ["-rf", "--one-file-system", work], progress, cancellationToken).ConfigureAwait(false);
        }

        var rootfs = Path.Combine(work, "rootfs");
        Directory.CreateDirectory(work);
        var cache = Path.Combine(_options.ResolvedTemplatesDir, ".debs");
        Directory.CreateDirectory(cache);
        var started = Stopwatch.StartNew();
        progress.Report($"debootstrap {spec.Release} with {spec.Packages.Count} packages (about a minute on first build)");
        List<string> args = ["-m", "--", "debootstrap", "--variant=minbase", $"--cache-dir={cache}"];
        if (spec.Packages.Count > 0)
        {
            args.Add("--include=" + string.Join(',', spec.Packages));
        }

        args.AddRange([spec.Release, rootfs, _options.DebianMirror]);
        await RunAsync("unshare", args, progress, cancellationToken).ConfigureAwait(false);

        // DNS for steps that download (apt-get in later templates); the sandbox gets its own later.
        File.Copy("/etc/resolv.conf", Path.Combine(rootfs, "etc/resolv.conf"), overwrite: true);
        foreach (var step in spec.Run)
        {
            progress.Report($"run: {step}");
            await RunAsync(
                "unshare",
                ["-m", "--", "sh", "-c", "mount -t proc proc \"$1/proc\" && exec chroot \"$1\" /bin/sh -c \"$2\"", "sh", rootfs, step],
                progress,
                cancellationToken).ConfigureAwait(false);
        }

        await File.WriteAllTextAsync(
            Path.Combine(work, "spec.json"),
            JsonSerializer.Serialize(new { spec.Name, Hash = spec.Hash(), spec.Release, spec.Packages, spec.Run, spec.Env, spec.Workdir, spec.User }),
            cancellationToken).ConfigureAwait(false);
        var final = FinalDir(spec);
        Directory.Move(work, final);
        progress.Report($"built in {started.Elapsed.TotalSeconds:F0} s");
        return Path.Combine(final, "rootfs");
    }

    private static async Task<IDisposable> LockAsync(string path, IProgress<string> progress, CancellationToken cancellationToken)
    {
        var reported = false;
        while (true)
        {
            try
            {
                // FileShare.None takes an exclusive flock on Unix: released if this process dies.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                if (!reported)
                {
                    progress.Report("another process is building this template; waiting for it");
                    reported = true;
                }

                await Task.Delay(500, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static async Task RunAsync(string file, IReadOnlyList<string> args, IProgress<string> progress, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        start.Environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        using var process = Process.Start(start) ?? throw new IOException($"cannot start {file}");
        var tail = new Queue<string>();
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (tail)
            {
                tail.Enqueue(line);
                if (tail.Count > 20)
                {
                    tail.Dequeue();
                }
            }

            // debootstrap's "I: Retrieving ..." lines are the visible progress.
            if (line.StartsWith("I: ", StringComparison.Ordinal) || line.StartsWith("E: ", StringComparison.Ordinal) || line.StartsWith("W: ", StringComparison.Ordinal))
            {
                progress.Report(line);
            }
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new IOException($"{file} {string.Join(' ', args.Take(4))} ... failed with exit code {process.ExitCode}: {string.Join(" | ", tail)}");
        }
    }
}
