using System.Collections.Concurrent;
using Airlock.Core.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
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
internal sealed unsafe partial class OutputReactor : IDisposable
{
    /// <summary>The largest message read from a watched fd at once: the init protocol's MSG_MAX.</summary>
    public const int MessageMax = 256 * 1024;
    private const int OutputChunk = 64 * 1024;

    private readonly Thread _thread;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<Action> _queue = new();
    private readonly object _postLock = new();
    private int _epoll;
    private int _wake;
    private bool _closed; // under _postLock: the thread is gone and the fds closed; posts run inline
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

    public OutputReactor(ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        _epoll = epoll_create1(EPOLL_CLOEXEC);
        _wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (_epoll < 0 || _wake < 0)
        {
            throw new IOException($"epoll: {StrError(Errno)}");
        }

        var ev = new EpollEvent { Events = EPOLLIN, Data = unchecked((ulong)-1L) };
        epoll_ctl(_epoll, EPOLL_CTL_ADD, _wake, &ev);
        _thread = new Thread(Loop) { IsBackground = true, Name = "airlock-output" };
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
    public void Unwatch(int fd, IReadable readable, Action then) => Run(() =>
    {
        StopWatching(fd, readable);
        then();
    });

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
        lock (_postLock)
        {
            if (_closed)
            {
                // Disposed: nothing reads the queue any more, so run it here (serialised by the
                // lock). An Unwatch that a DisposeAsync awaits still completes; epoll calls on the
                // closed (-1) fd fail harmlessly.
                Guard(action);
                return;
            }

            _queue.Enqueue(action);
            ulong one = 1;
            write(_wake, (byte*)&one, 8);
        }
    }

    /// <summary>
    /// A callback that throws (a sink, a malformed init message) must not end this thread: every
    /// sandbox's output and exits go through it. It is logged and the loop goes on.
    /// </summary>
    private void Guard(Action action)
    {
        try
        {
            action();
        }
        catch (Exception ex)
        {
            LogCallbackFailed(ex);
        }
    }

    private void Loop()
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

                // Inline try/catch rather than Guard: no closure per event on the hot path.
                var fd = (int)events[i].Data;
                try
                {
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
                catch (Exception ex)
                {
                    LogCallbackFailed(ex);
                }
            }

            while (_queue.TryDequeue(out var action))
            {
                Guard(action);
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
        lock (_postLock)
        {
            // What was posted before the thread saw _stopping still runs, then the fds close;
            // any later post runs inline (Post).
            while (_queue.TryDequeue(out var action))
            {
                Guard(action);
            }

            _closed = true;
            close(_wake);
            close(_epoll);
            _wake = _epoll = -1;
        }
    }

    [LoggerMessage(EventId = 210, Level = LogLevel.Error, Message = "a callback on the output reactor thread failed; the reactor goes on")]
    private partial void LogCallbackFailed(Exception ex);
}
