using Airlock.Core;
using Airlock.Core.Runtime;
using Airlock.Runtime.Linux.Reactor;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Init;

/// <summary>A process in a sandbox: its input fd (stdin pipe or a dup of the pty master), its output streams.</summary>
internal sealed class LinuxProcessHandle(InitClient client, IProcessSink sink, int inputFd, bool isPty, IReadOnlyList<OutputReactor.Stream> streams) : IProcessHandle
{
    private readonly SemaphoreSlim _inputLock = new(1, 1);
    private int _inputFd = inputFd;

    public int Pid { get; set; }

    public IProcessSink Sink { get; } = sink;

    public IReadOnlyList<OutputReactor.Stream> Streams { get; } = streams;

    public async ValueTask WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        await _inputLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_inputFd < 0)
            {
                throw new AirlockException("stdin_closed", 400, "stdin is closed");
            }

            var fd = _inputFd;
            // A blocked reader on the other side must not hold a request thread forever:
            // the write waits in slices and gives up with the caller's token.
            await Task.Run(() => WriteAll(fd, data, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _inputLock.Release();
        }
    }

    private static unsafe void WriteAll(int fd, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        fixed (byte* start = data.Span)
        {
            var offset = 0;
            while (offset < data.Length)
            {
                var n = write(fd, start + offset, data.Length - offset);
                if (n > 0)
                {
                    offset += (int)n;
                    continue;
                }

                var errno = Errno;
                if (errno == EAGAIN)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var pfd = new PollFd { Fd = fd, Events = 4 /* POLLOUT */ };
                    poll(&pfd, 1, 100);
                    continue;
                }

                if (errno == EINTR)
                {
                    continue;
                }

                throw new AirlockException("stdin_closed", 400, $"stdin is closed: {StrError(errno)}");
            }
        }
    }

    public void CloseStdin()
    {
        // A pty has no separate stdin to close; the shell reads EOF from ^D.
        if (!isPty)
        {
            _ = CloseInputAsync();
        }
    }

    public async Task CloseInputAsync()
    {
        await _inputLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_inputFd >= 0)
            {
                close(_inputFd);
                _inputFd = -1;
            }
        }
        finally
        {
            _inputLock.Release();
        }
    }

    public async ValueTask SignalAsync(int signal, CancellationToken cancellationToken = default)
    {
        // To the process group: the command started its own session, so its children go too.
        var err = await client.SignalAsync(Pid, signal, group: true, cancellationToken).ConfigureAwait(false);
        if (err == EPERM || err == ESRCH)
        {
            // The group leader may be gone while the group lives on; fall back to the pid alone.
            await client.SignalAsync(Pid, signal, group: false, cancellationToken).ConfigureAwait(false);
        }
    }

    public unsafe void Resize(PtySize size)
    {
        _inputLock.Wait();
        try
        {
            if (_inputFd >= 0)
            {
                var ws = new WinSize { Cols = (ushort)size.Cols, Rows = (ushort)size.Rows };
                ioctl(_inputFd, TIOCSWINSZ, &ws);
            }
        }
        finally
        {
            _inputLock.Release();
        }
    }
}
