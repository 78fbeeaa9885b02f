using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using Airlock.Core.Files;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Files;

/// <summary>
/// inotify on a directory already resolved in the sandbox root (watched through /proc/self/fd/N,
/// so no path is looked up again). Recursive watches follow new subdirectories as they appear.
/// </summary>
internal sealed unsafe class InotifyWatch : IFileWatch
{
    private const uint IN_MODIFY = 0x2, IN_ATTRIB = 0x4, IN_CLOSE_WRITE = 0x8, IN_MOVED_FROM = 0x40, IN_MOVED_TO = 0x80,
        IN_CREATE = 0x100, IN_DELETE = 0x200, IN_DELETE_SELF = 0x400, IN_IGNORED = 0x8000, IN_ISDIR = 0x40000000, IN_ONLYDIR = 0x01000000;

    private const uint Mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_ONLYDIR;

    private readonly int _inotify;
    private readonly bool _recursive;
    private readonly Dictionary<int, (string Relative, int Fd)> _dirs = []; // wd → path relative to the watched dir, and an fd on it
    private readonly Channel<FileEvent> _events = Channel.CreateBounded<FileEvent>(new BoundedChannelOptions(10_000) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly CancellationTokenSource _stop = new();

    public InotifyWatch(int dirFd, bool recursive)
    {
        _recursive = recursive;
        _inotify = inotify_init1(O_NONBLOCK | O_CLOEXEC);
        try
        {
            if (_inotify < 0)
            {
                throw new IOException($"inotify: {StrError(Errno)}");
            }

            AddTree(dirFd, "", announce: false);
        }
        finally
        {
            close(dirFd);
        }

        _ = Task.Factory.StartNew(Pump, TaskCreationOptions.LongRunning);
    }

    /// <param name="announce">
    /// For a directory that appeared after the watch started: report what is already in it as
    /// created. Entries made between its mkdir and our inotify_add_watch (<c>mkdir -p a/b &amp;&amp;
    /// touch a/b/f</c>) raise no inotify event, so without this they would never be reported.
    /// An entry made just after the add may be reported twice; a duplicate beats a miss.
    /// </param>
    private void AddTree(int dirFd, string relative, bool announce)
    {
        var wd = inotify_add_watch(_inotify, $"/proc/self/fd/{dirFd}", Mask);
        if (wd < 0)
        {
            if (relative.Length == 0)
            {
                throw LinuxSandboxFileSystem.Error(Errno, "/");
            }

            return;
        }

        lock (_dirs)
        {
            if (_dirs.TryGetValue(wd, out var old))
            {
                close(old.Fd);
            }

            // Our own fd on the directory, to look up subdirectories created later beneath it.
            _dirs[wd] = (relative, fcntl(dirFd, 1030 /* F_DUPFD_CLOEXEC */, 0));
        }

        if (!_recursive)
        {
            return;
        }

        foreach (var name in LinuxSandboxFileSystem.Names(dirFd))
        {
            var childRelative = relative.Length == 0 ? name : relative + "/" + name;
            if (announce)
            {
                _events.Writer.TryWrite(new FileEvent(childRelative, FileEventType.Create));
            }

            var child = OpenAt2(dirFd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0x08 | 0x01 | 0x04 | RESOLVE_NO_MAGICLINKS);
            if (child >= 0)
            {
                try
                {
                    AddTree(child, childRelative, announce);
                }
                finally
                {
                    close(child);
                }
            }
        }
    }

    private void Pump()
    {
        var buffer = new byte[64 * 1024];
        var pfd = new PollFd { Fd = _inotify, Events = POLLIN };
        while (!_stop.IsCancellationRequested)
        {
            if (poll(&pfd, 1, 200) <= 0)
            {
                continue;
            }

            nint n;
            fixed (byte* p = buffer)
            {
                n = read(_inotify, p, buffer.Length);
            }

            for (var offset = 0; offset + 16 <= n;)
            {
                var wd = BitConverter.ToInt32(buffer, offset);
                var mask = BitConverter.ToUInt32(buffer, offset + 4);
                var len = BitConverter.ToInt32(buffer, offset + 12);
                var name = Encoding.UTF8.GetString(buffer, offset + 16, len).TrimEnd('\0');
                offset += 16 + len;
                Handle(wd, mask, name);
            }
        }
    }

    private void Handle(int wd, uint mask, string name)
    {
        string? dir = null;
        var dirFd = -1;
        lock (_dirs)
        {
            if ((mask & IN_IGNORED) != 0)
            {
                if (_dirs.Remove(wd, out var gone))
                {
                    close(gone.Fd);
                }

                if (_dirs.Count == 0)
                {
                    _events.Writer.TryComplete(); // the watched directory is gone
                }

                return;
            }

            if (_dirs.TryGetValue(wd, out var known))
            {
                (dir, dirFd) = known;
            }
        }

        if (dir is null || name.Length == 0)
        {
            return;
        }

        var relative = dir.Length == 0 ? name : dir + "/" + name;
        FileEventType? type = mask switch
        {
            _ when (mask & (IN_CREATE | IN_MOVED_TO)) != 0 => FileEventType.Create,
            _ when (mask & (IN_MODIFY | IN_CLOSE_WRITE)) != 0 => FileEventType.Write,
            _ when (mask & IN_DELETE) != 0 => FileEventType.Remove,
            _ when (mask & IN_MOVED_FROM) != 0 => FileEventType.Rename,
            _ when (mask & IN_ATTRIB) != 0 => FileEventType.Chmod,
            _ => null,
        };
        if (type is { } t)
        {
            _events.Writer.TryWrite(new FileEvent(relative, t));
        }

        if (_recursive && (mask & IN_ISDIR) != 0 && (mask & (IN_CREATE | IN_MOVED_TO)) != 0)
        {
            // Watch the new directory; look it up beneath the directory that reported it.
            var child = OpenAt2(dirFd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0x08 | 0x01 | 0x04 | RESOLVE_NO_MAGICLINKS);
            if (child >= 0)
            {
                try
                {
                    AddTree(child, relative, announce: true);
                }
                finally
                {
                    close(child);
                }
            }
        }
    }

    public async IAsyncEnumerable<FileEvent> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var e in _events.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return e;
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _events.Writer.TryComplete();
        // The pump wakes within its poll timeout and exits; closing at once could race a reused fd number.
        _ = Task.Delay(500).ContinueWith(
            _ =>
            {
                lock (_dirs)
                {
                    foreach (var (_, fd) in _dirs.Values)
                    {
                        close(fd);
                    }

                    _dirs.Clear();
                }

                close(_inotify);
            },
            TaskScheduler.Default);
    }
}
