using System.Collections.Concurrent;
using Airlock.Core.Runtime;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Reactor;

/// <summary>
/// One thread, one epoll: reads every process's stdout, stderr and pty master. .NET reads pipes
/// with a blocked thread-pool thread each, which starves the pool at hundreds of concurrent
/// commands; here a thousand idle pipes cost nothing. Output for a process is delivered on this
/// thread only, so it is in order, and the exit is delivered after the last byte.
/// </summary>
internal sealed unsafe class OutputReactor : IDisposable
{
    private readonly int _epoll;
    private readonly int _wake;
    private readonly Thread _thread;
    private readonly ConcurrentQueue<Action> _queue = new();
    private readonly Dictionary<int, Stream> _streams = [];
    private readonly byte[] _buffer = new byte[64 * 1024];
    private volatile bool _stopping;

    public OutputReactor()
    {
        _epoll = epoll_create1(EPOLL_CLOEXEC);
        _wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_epoll < 0 || _wake < 0)
        {
            throw new IOException($"epoll: {StrError(Errno)}");
        }

        var ev = new EpollEvent { Events = EPOLLIN, Data = unchecked((ulong)-1L) };
        epoll_ctl(_epoll, EPOLL_CTL_ADD, _wake, &ev);
        _thread = new Thread(Run) { IsBackground = true, Name = "airlock-output" };
        _thread.Start();
    }

    /// <summary>A process's output fds (already non-blocking), owned by the reactor from now on.</summary>
    internal sealed class Stream(int fd, OutputKind kind, IProcessSink sink)
    {
        public int Fd { get; set; } = fd;

        public OutputKind Kind { get; } = kind;

        public IProcessSink Sink { get; } = sink;
    }

    public void Add(Stream stream) => Post(() =>
    {
        _streams[stream.Fd] = stream;
        var ev = new EpollEvent { Events = EPOLLIN | EPOLLRDHUP, Data = (ulong)stream.Fd };
        epoll_ctl(_epoll, EPOLL_CTL_ADD, stream.Fd, &ev);
    });

    /// <summary>
    /// The process has exited: read what its streams still hold, close them, then report the exit.
    /// A grandchild that keeps a stream open does not hold the exit back.
    /// </summary>
    public void Finish(IReadOnlyList<Stream> streams, IProcessSink sink, ExitStatus status) => Post(() =>
    {
        foreach (var stream in streams)
        {
            if (stream.Fd >= 0)
            {
                Drain(stream);
                Remove(stream);
            }
        }

        sink.OnExit(status);
    });

    private void Post(Action action)
    {
        _queue.Enqueue(action);
        ulong one = 1;
        write(_wake, (byte*)&one, 8);
    }

    private void Run()
    {
        const int max = 256;
        var events = stackalloc EpollEvent[max];
        while (!_stopping)
        {
            var n = epoll_wait(_epoll, events, max, -1);
            if (n < 0)
            {
                continue; // EINTR
            }

            for (var i = 0; i < n; i++)
            {
                if (events[i].Data == unchecked((ulong)-1L))
                {
                    ulong value;
                    read(_wake, (byte*)&value, 8);
                    continue;
                }

                if (_streams.TryGetValue((int)events[i].Data, out var stream))
                {
                    if (!Drain(stream))
                    {
                        Remove(stream);
                    }
                }
            }

            while (_queue.TryDequeue(out var action))
            {
                action();
            }
        }
    }

    /// <summary>Reads until the fd would block. False at end of stream.</summary>
    private bool Drain(Stream stream)
    {
        fixed (byte* buffer = _buffer)
        {
            while (true)
            {
                var n = read(stream.Fd, buffer, _buffer.Length);
                if (n > 0)
                {
                    stream.Sink.OnOutput(stream.Kind, new ReadOnlySpan<byte>(buffer, (int)n));
                    continue;
                }

                if (n < 0 && Errno == EAGAIN)
                {
                    return true;
                }

                if (n < 0 && Errno == EINTR)
                {
                    continue;
                }

                // 0 = EOF; EIO = a pty whose slave side is gone.
                return false;
            }
        }
    }

    private void Remove(Stream stream)
    {
        if (stream.Fd < 0)
        {
            return;
        }

        epoll_ctl(_epoll, EPOLL_CTL_DEL, stream.Fd, null);
        _streams.Remove(stream.Fd);
        close(stream.Fd);
        stream.Fd = -1;
    }

    public void Dispose()
    {
        _stopping = true;
        Post(() => { });
        _thread.Join(TimeSpan.FromSeconds(2));
        close(_wake);
        close(_epoll);
    }
}
