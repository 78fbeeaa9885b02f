using System.Collections.Concurrent;
using Airlock.Core;
using Airlock.Core.Files;
using Airlock.Core.Runtime;
using Airlock.Runtime.Linux.Files;
using Airlock.Runtime.Linux.Reactor;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Init;

internal sealed class LinuxRuntimeSandbox : IRuntimeSandbox
{
    private readonly OutputReactor _reactor;
    private readonly ConcurrentDictionary<int, LinuxProcessHandle> _processes = new();
    private readonly LinuxSandboxFileSystem _fileSystem;

    public LinuxRuntimeSandbox(string id, InitClient client, LinuxSandboxFileSystem fileSystem, OutputReactor reactor)
    {
        Id = id;
        Client = client;
        _fileSystem = fileSystem;
        _reactor = reactor;
        Exited = client.Closed.ContinueWith(_ => EndAll(), TaskScheduler.Default);
    }

    public string Id { get; }

    public InitClient Client { get; }

    public Task Exited { get; }

    public ISandboxFileSystem FileSystem => _fileSystem;

    public async Task<IProcessHandle> SpawnAsync(SpawnRequest request, IProcessSink sink, CancellationToken cancellationToken = default)
    {
        var childFds = new List<int>();
        var ours = new List<int>();
        try
        {
            int inputFd;
            var streams = new List<OutputReactor.Stream>();
            int stdin, stdout, stderr;
            if (request.Pty is { } size)
            {
                var (master, slave) = _fileSystem.OpenPty(request.User.Uid);
                ours.Add(master);
                childFds.Add(slave);
                SetWindowSize(master, size);
                inputFd = Dup(master);
                ours.Add(inputFd);
                SetNonBlocking(master);
                streams.Add(new OutputReactor.Stream(master, OutputKind.Pty, sink));
                stdin = stdout = stderr = slave;
            }
            else
            {
                if (request.Stdin)
                {
                    var (r, w) = Pipe();
                    childFds.Add(r);
                    ours.Add(w);
                    stdin = r;
                    inputFd = w;
                }
                else
                {
                    stdin = openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
                    childFds.Add(stdin);
                    inputFd = -1;
                }

                var (outR, outW) = Pipe();
                ours.Add(outR);
                childFds.Add(outW);
                var (errR, errW) = Pipe();
                ours.Add(errR);
                childFds.Add(errW);
                SetNonBlocking(outR);
                SetNonBlocking(errR);
                streams.Add(new OutputReactor.Stream(outR, OutputKind.Stdout, sink));
                streams.Add(new OutputReactor.Stream(errR, OutputKind.Stderr, sink));
                stdout = outW;
                stderr = errW;
            }

            var handle = new LinuxProcessHandle(Client, sink, inputFd, request.Pty is not null, streams);
            var flags = (request.Pty is not null ? InitClient.FlagPty : 0)
                | (request.User.IsRoot ? InitClient.FlagRootCaps : 0)
                | (request.NoNewPrivileges ? InitClient.FlagNoNewPrivs : 0);
            var (err, pid, step) = await Client.SpawnAsync(
                request.User.Uid, request.User.Gid, flags, request.Cwd, request.Argv, request.Env, [stdin, stdout, stderr],
                (e, p, _) =>
                {
                    // On the reactor thread, before this pid's EXIT can be read.
                    if (e == 0)
                    {
                        handle.Pid = p;
                        _processes[p] = handle;
                        foreach (var stream in streams)
                        {
                            _reactor.Add(stream);
                        }
                    }
                },
                cancellationToken).ConfigureAwait(false);
            if (err != 0)
            {
                throw SpawnError(err, step, request);
            }

            ours.Clear(); // owned by the handle and the reactor now
            return handle;
        }
        finally
        {
            foreach (var fd in childFds.Concat(ours).Distinct())
            {
                close(fd);
            }
        }
    }

    private static AirlockException SpawnError(int err, string step, SpawnRequest request) => step switch
    {
        "chdir" => AirlockException.Invalid($"cwd '{request.Cwd}' is not a directory in the sandbox: {StrError(err)}"),
        "exec" when err is ENOENT => AirlockException.Invalid($"executable '{request.Argv[0]}' not found"),
        "exec" => AirlockException.Invalid($"cannot execute '{request.Argv[0]}': {StrError(err)}"),
        _ => new AirlockException("spawn_failed", 500, $"process could not start ({step}): {StrError(err)}"),
    };

    public Task<IReadOnlyList<int>> ListAsync(CancellationToken cancellationToken = default) => Client.ListAsync(cancellationToken);

    internal void OnExit(int pid, int status)
    {
        if (_processes.TryRemove(pid, out var handle))
        {
            _ = handle.CloseInputAsync();
            _reactor.Finish(handle.Streams, handle.Sink, ExitStatus.FromWaitStatus(status));
        }
    }

    /// <summary>The init is gone: every process went with it.</summary>
    private void EndAll()
    {
        foreach (var pid in _processes.Keys)
        {
            OnExit(pid, 9); // as killed by SIGKILL
        }
    }

    private static unsafe void SetWindowSize(int fd, PtySize size)
    {
        var ws = new WinSize { Cols = (ushort)size.Cols, Rows = (ushort)size.Rows };
        ioctl(fd, TIOCSWINSZ, &ws);
    }

    private static unsafe (int Read, int Write) Pipe()
    {
        var fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
        {
            throw new IOException($"pipe2: {StrError(Errno)}");
        }

        return (fds[0], fds[1]);
    }

    private static int Dup(int fd)
    {
        var copy = fcntl(fd, 1030 /* F_DUPFD_CLOEXEC */, 0);
        return copy >= 0 ? copy : throw new IOException($"dup: {StrError(Errno)}");
    }

    private static void SetNonBlocking(int fd) => fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync().ConfigureAwait(false);
        _fileSystem.Dispose();
    }
}
