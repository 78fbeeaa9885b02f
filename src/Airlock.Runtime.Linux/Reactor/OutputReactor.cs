using System.Collections.Concurrent;
using Airlock.Core.Runtime;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Reactor;

/// <summary>
/// One thread, one epoll: reads every process's stdout, stderr and pty master, and every sandbox
/// init's control socket. .NET reads pipes with a blocked thread-pool thread each, which starves
/// the pool at hundreds of concurrent commands; here a thousand idle pipes cost nothing. Output for
/// a process is delivered on this thread only, so it is in order, and the exit is delivered after
/// the last byte. The control sockets are read here too (not by .NET's socket engine) so that an
/// EXIT reaches the process's streams without a hop to the thread pool and back: measured, that
/// hop was two thread wake-ups per command.
/// </summary>
internal sealed unsafe class OutputReactor : IDisposable
{
    /// <summary>The largest message read from a watched fd at once: the init protocol's MSG_MAX.</summary>
    public const int MessageMax = 256 * 1024;
    private const int OutputChunk = 64 * 1024;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly Thread _thread;
    private readonly ConcurrentQueue<Action> _queue = new();
    private readonly Dictionary<int, Stream> _streams = [];
    private readonly Dictionary<int, IReadable> _watches = [];
    private readonly byte[] _buffer = new byte[MessageMax];
    private volatile bool _stopping;

    /// <summary>A non-output fd the reactor reads for its owner (an init control socket).</summary>
    internal interface IReadable
    {
        /// <summary>
        /// On the reactor thread, when the fd is readable: read until it would block, using
        /// <paramref name="buffer"/> (the reactor's, <see cref="MessageMax"/> bytes, valid during the call).
        /// False at end of stream: the reactor stops watching the fd (the owner still closes it).
        /// </summary>
        bool OnReadable(byte[] buffer);
    }

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

    public bool IsReactorThread => Environment.CurrentManagedThreadId == _thread.ManagedThreadId;

    public void Add(Stream stream) => Run(() =>
    {
        _streams[stream.Fd] = stream;
        var ev = new EpollEvent { Events = EPOLLIN | EPOLLRDHUP, Data = (ulong)stream.Fd };
        epoll_ctl(_epoll, EPOLL_CTL_ADD, stream.Fd, &ev);
    });

    /// <summary>
    /// The process has exited: read what its streams still hold, close them, then report the exit.
    /// A grandchild that keeps a stream open does not hold the exit back.
    /// </summary>
    public void Finish(IReadOnlyList<Stream> streams, IProcessSink sink, ExitStatus status) => Run(() =>
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

    /// <summary>Starts watching <paramref name="fd"/> for reads; the owner keeps the fd open until <see cref="Unwatch"/> has run.</summary>
    public void Watch(int fd, IReadable readable) => Run(() =>
    {
        _watches[fd] = readable;
        var ev = new EpollEvent { Events = EPOLLIN | EPOLLRDHUP, Data = (ulong)fd };
        epoll_ctl(_epoll, EPOLL_CTL_ADD, fd, &ev);
    });

    /// <summary>
    /// Stops watching <paramref name="fd"/>, then runs <paramref name="then"/> on the reactor thread
    /// (where the owner closes the fd: no read of it can be in flight there).
    /// </summary>
    public void Unwatch(int fd, IReadable readable, Action then)
    {
        if (_stopping)
        {
            then();
            return;
        }

        Run(() =>
        {
            StopWatching(fd, readable);
            then();
        });
    }

    private void StopWatching(int fd, IReadable readable)
    {
        if (_watches.TryGetValue(fd, out var current) && ReferenceEquals(current, readable))
        {
            _watches.Remove(fd);
            epoll_ctl(_epoll, EPOLL_CTL_DEL, fd, null);
        }
    }

    /// <summary>Runs at once when called on the reactor thread (an EXIT read there), else posts.</summary>
    private void Run(Action action)
    {
        if (IsReactorThread)
        {
            action();
        }
        else
        {
            Post(action);
        }
    }

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

                var fd = (int)events[i].Data;
                if (_streams.TryGetValue(fd, out var stream))
                {
                    if (!Drain(stream))
                    {
                        Remove(stream);
                    }
                }
                else if (_watches.TryGetValue(fd, out var readable) && !readable.OnReadable(_buffer))
                {
                    StopWatching(fd, readable);
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
                var n = read(stream.Fd, buffer, OutputChunk);
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
        // An action posted just before the thread saw _stopping (an Unwatch that a DisposeAsync
        // awaits) still runs, before the epoll fd it may use is closed.
        while (_queue.TryDequeue(out var action))
        {
            action();
        }

        close(_wake);
        close(_epoll);
    }
}
