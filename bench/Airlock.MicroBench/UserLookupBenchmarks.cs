using Airlock.Core.Files;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Airlock.Core.Templates;
using Airlock.Runtime.Linux.Files;
using BenchmarkDotNet.Attributes;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.MicroBench;

/// <summary>
/// LiveSandbox.ResolveUser, which runs on every exec/process start/file call, on the sandbox's
/// /etc/passwd (30 lines, as a Debian base image with a few packages). <c>Parse*</c> serve the text
/// from memory with no stamp, so nothing is cached: a read from memory and the parse, every call.
/// <c>CachedUser</c> goes through the real LinuxSandboxFileSystem (openat2 under a root fd) on a temp
/// dir whose passwd never changes: the file is read and parsed once (in the warm-up), and every
/// measured call is the production hot path: one statx for the stamp, then a dictionary lookup. It
/// does not measure a read of the file (see the README for the figures before the cache).
/// </summary>
[MemoryDiagnoser]
public class UserLookupBenchmarks
{
    internal static readonly string Passwd = BuildPasswd();

    private LiveSandbox _inMemory = null!;
    private LiveSandbox _onDisk = null!;
    private LinuxSandboxFileSystem _fs = null!;
    private string _root = "";

    [GlobalSetup]
    public void Setup()
    {
        var template = new TemplateSpec { Name = "base" };
        var record = new SandboxRecord { Id = "bench", Template = "base" };
        _inMemory = new LiveSandbox(record, new FakeRuntimeSandbox(new FakeFileSystem(Passwd)), template, 16);

        _root = Directory.CreateTempSubdirectory("airlock-microbench-").FullName;
        Directory.CreateDirectory(Path.Combine(_root, "etc"));
        File.WriteAllText(Path.Combine(_root, "etc/passwd"), Passwd);
        var rootFd = openat(AT_FDCWD, _root, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (rootFd < 0)
        {
            throw new IOException($"cannot open {_root}");
        }

        _fs = new LinuxSandboxFileSystem(rootFd);
        _onDisk = new LiveSandbox(record, new FakeRuntimeSandbox(_fs), template, 16);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _fs.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary>The template's default user, the last line, as most calls resolve.</summary>
    [Benchmark(Baseline = true)]
    public object ParseUser() => _inMemory.ResolveUser(null);

    [Benchmark]
    public object ParseRoot() => _inMemory.ResolveUser("root");

    /// <summary>The cached path: one statx (<c>GetStamp</c>) and the kept dictionary, no read and no parse.</summary>
    [Benchmark]
    public object CachedUser() => _onDisk.ResolveUser(null);

    private static string BuildPasswd()
    {
        string[] system =
        [
            "root:x:0:0:root:/root:/bin/bash",
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
            "bin:x:2:2:bin:/bin:/usr/sbin/nologin",
            "sys:x:3:3:sys:/dev:/usr/sbin/nologin",
            "sync:x:4:65534:sync:/bin:/bin/sync",
            "games:x:5:60:games:/usr/games:/usr/sbin/nologin",
            "man:x:6:12:man:/var/cache/man:/usr/sbin/nologin",
            "lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin",
            "mail:x:8:8:mail:/var/mail:/usr/sbin/nologin",
            "news:x:9:9:news:/var/spool/news:/usr/sbin/nologin",
            "uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin",
            "proxy:x:13:13:proxy:/bin:/usr/sbin/nologin",
            "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin",
            "backup:x:34:34:backup:/var/backups:/usr/sbin/nologin",
            "list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin",
            "irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin",
            "gnats:x:41:41:Gnats Bug-Reporting System (admin):/var/lib/gnats:/usr/sbin/nologin",
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
            "_apt:x:100:65534::/nonexistent:/usr/sbin/nologin",
            "systemd-network:x:101:102:systemd Network Management,,,:/run/systemd:/usr/sbin/nologin",
            "systemd-resolve:x:102:103:systemd Resolver,,,:/run/systemd:/usr/sbin/nologin",
            "messagebus:x:103:104::/nonexistent:/usr/sbin/nologin",
            "systemd-timesync:x:104:105:systemd Time Synchronization,,,:/run/systemd:/usr/sbin/nologin",
            "sshd:x:105:65534::/run/sshd:/usr/sbin/nologin",
            "postgres:x:106:110:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash",
            "redis:x:107:111::/var/lib/redis:/usr/sbin/nologin",
            "uuidd:x:108:112::/run/uuidd:/usr/sbin/nologin",
            "tcpdump:x:109:113::/nonexistent:/usr/sbin/nologin",
            "dnsmasq:x:110:65534:dnsmasq,,,:/var/lib/misc:/usr/sbin/nologin",
            "user:x:1000:1000::/home/user:/bin/bash",
        ];
        return string.Join('\n', system) + "\n";
    }
}

/// <summary>Only ReadSmallText and GetStamp are used by ResolveUser; no stamp means no cache, so every call parses.</summary>
internal sealed class FakeFileSystem(string passwd) : ISandboxFileSystem
{
    public string? ReadSmallText(string path) => path == "/etc/passwd" ? passwd : null;

    public FileStamp? GetStamp(string path) => null;

    public ExecutableProbe? ProbeExecutable(string path) => throw new NotSupportedException();

    public bool IsPhysicalDirectory(string path) => throw new NotSupportedException();

    public Stream OpenRead(string path) => throw new NotSupportedException();

    public Stream OpenWrite(string path, SandboxUser owner) => throw new NotSupportedException();

    public FileEntry Stat(string path) => throw new NotSupportedException();

    public IReadOnlyList<FileEntry> List(string path, int depth) => throw new NotSupportedException();

    public bool MakeDirectory(string path, SandboxUser owner) => throw new NotSupportedException();

    public void Move(string source, string destination, SandboxUser owner) => throw new NotSupportedException();

    public void Remove(string path) => throw new NotSupportedException();

    public IFileWatch Watch(string path, bool recursive) => throw new NotSupportedException();
}

internal sealed class FakeRuntimeSandbox(ISandboxFileSystem fileSystem) : IRuntimeSandbox
{
    public string Id => "bench";

    public Task Exited => Task.Delay(Timeout.Infinite);

    public ISandboxFileSystem FileSystem => fileSystem;

    public Task<IProcessHandle> SpawnAsync(SpawnRequest request, IProcessSink sink, CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public Task<IReadOnlyList<int>> ListAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
