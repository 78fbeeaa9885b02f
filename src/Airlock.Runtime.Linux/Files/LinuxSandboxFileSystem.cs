using System.Text;
using Airlock.Core;
using Airlock.Core.Files;
using Airlock.Core.Sandboxes;
using Microsoft.Win32.SafeHandles;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Files;

/// <summary>
/// File operations from the host on a sandbox's root (an fd on <c>/proc/&lt;init&gt;/root</c>). Every
/// lookup goes through <c>openat2</c> with <c>RESOLVE_IN_ROOT</c> (<c>..</c> and absolute symlinks stay
/// inside the sandbox), <c>RESOLVE_NO_MAGICLINKS</c> and <c>RESOLVE_NO_XDEV</c>: the lookup may not
/// leave the root overlay, so the sandbox's /proc, /sys and /dev (where /proc/1/mem of the privileged
/// init lives) are out of reach of the API even through a planted symlink.
/// </summary>
internal sealed unsafe partial class LinuxSandboxFileSystem(int rootFd) : ISandboxFileSystem, IDisposable
{
    private const ulong Resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | 0x01 /* RESOLVE_NO_XDEV */;
    private const ulong ResolveBeneath = 0x08 /* RESOLVE_BENEATH */ | RESOLVE_NO_MAGICLINKS | 0x01 | 0x04 /* RESOLVE_NO_SYMLINKS */;
    private const int S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFDIR = 0x4000, S_IFLNK = 0xA000;

    private int _rootFd = rootFd;

    public Stream OpenRead(string path)
    {
        var fd = Open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0);
        return Wrap(fd, FileAccess.Read, path);
    }

    public Stream OpenWrite(string path, SandboxUser owner)
    {
        if (path == "/")
        {
            throw AirlockException.Invalid("path is a directory");
        }

        MakeParents(path, owner);
        var fd = Open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 420 /* 0644 */);
        fchown(fd, owner.Uid, owner.Gid);
        return Wrap(fd, FileAccess.Write, path);
    }

    /// <summary>Only regular files are streamed: a FIFO or device would block or reach the host.</summary>
    private static FileStream Wrap(int fd, FileAccess access, string path)
    {
        Statx st;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &st) != 0 || (st.Mode & S_IFMT) != S_IFREG)
        {
            var isDir = (st.Mode & S_IFMT) == S_IFDIR;
            close(fd);
            throw AirlockException.Invalid(isDir ? $"'{path}' is a directory" : $"'{path}' is not a regular file");
        }

        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) & ~O_NONBLOCK);
        return new FileStream(new SafeFileHandle(fd, ownsHandle: true), access, bufferSize: 0);
    }

    public FileEntry Stat(string path)
    {
        var (parent, name) = OpenParent(path);
        try
        {
            return Entry(parent, name, path, new NameCache(this));
        }
        finally
        {
            CloseIfNotRoot(parent);
        }
    }

    public IReadOnlyList<FileEntry> List(string path, int depth)
    {
        var fd = Open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, notDirectory: $"'{path}' is not a directory");
        var entries = new List<FileEntry>();
        try
        {
            ListInto(fd, path, depth, entries, new NameCache(this));
        }
        finally
        {
            close(fd);
        }

        return entries;
    }

    private void ListInto(int dirFd, string dirPath, int depth, List<FileEntry> entries, NameCache names)
    {
        foreach (var name in Names(dirFd))
        {
            var childPath = dirPath == "/" ? "/" + name : dirPath + "/" + name;
            FileEntry entry;
            try
            {
                entry = Entry(dirFd, name, childPath, names);
            }
            catch (AirlockException)
            {
                continue; // removed while listing
            }

            entries.Add(entry);
            if (depth > 1 && entry.Type == FileType.Directory)
            {
                // Not across mount points (the sandbox's /proc, /sys, /dev) and not through symlinks.
                var child = OpenAt2(dirFd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, ResolveBeneath);
                if (child >= 0)
                {
                    try
                    {
                        ListInto(child, childPath, depth - 1, entries, names);
                    }
                    finally
                    {
                        close(child);
                    }
                }
            }
        }
    }

    public bool MakeDirectory(string path, SandboxUser owner)
    {
        if (path == "/")
        {
            return false;
        }

        var existing = OpenAt2(_rootFd, Rel(path), O_PATH | O_CLOEXEC, 0, Resolve);
        if (existing >= 0)
        {
            var isDir = IsDirectory(existing);
            close(existing);
            return isDir ? false : throw AirlockException.Conflict("already_exists", $"'{path}' exists and is not a directory");
        }

        MakeParents(path, owner);
        var (parent, name) = OpenParent(path);
        try
        {
            if (mkdirat(parent, name, 493 /* 0755 */) != 0)
            {
                var errno = Errno;
                if (errno == EEXIST)
                {
                    return false;
                }

                throw Error(errno, path);
            }

            fchownat(parent, name, owner.Uid, owner.Gid, AT_SYMLINK_NOFOLLOW);
            return true;
        }
        finally
        {
            CloseIfNotRoot(parent);
        }
    }

    private void MakeParents(string path, SandboxUser owner)
    {
        var parentPath = ParentOf(path);
        if (parentPath == "/")
        {
            return;
        }

        var fd = OpenAt2(_rootFd, Rel(parentPath), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, Resolve);
        if (fd >= 0)
        {
            close(fd);
            return;
        }

        if (Errno is not ENOENT)
        {
            throw Error(Errno, parentPath);
        }

        MakeDirectory(parentPath, owner);
    }

    public void Move(string source, string destination, SandboxUser owner)
    {
        var (fromDir, fromName) = OpenParent(source);
        try
        {
            var (toDir, toName) = OpenParent(destination);
            try
            {
                if (Renameat2(fromDir, fromName, toDir, toName, 0) != 0)
                {
                    throw Error(Errno, source);
                }
            }
            finally
            {
                CloseIfNotRoot(toDir);
            }
        }
        finally
        {
            CloseIfNotRoot(fromDir);
        }
    }

    public void Remove(string path)
    {
        if (path == "/")
        {
            throw AirlockException.Invalid("cannot remove the root directory");
        }

        int parent;
        string name;
        try
        {
            (parent, name) = OpenParent(path);
        }
        catch (AirlockException e) when (e.Code == "not_found")
        {
            return;
        }

        try
        {
            RemoveAt(parent, name);
        }
        finally
        {
            CloseIfNotRoot(parent);
        }
    }

    private void RemoveAt(int dirFd, string name)
    {
        if (unlinkat(dirFd, name, 0) == 0 || Errno == ENOENT)
        {
            return;
        }

        if (Errno is not (EISDIR or EPERM))
        {
            throw Error(Errno, name);
        }

        var child = OpenAt2(dirFd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, ResolveBeneath);
        if (child < 0)
        {
            throw Error(Errno, name);
        }

        try
        {
            foreach (var entry in Names(child))
            {
                RemoveAt(child, entry);
            }
        }
        finally
        {
            close(child);
        }

        if (unlinkat(dirFd, name, AT_REMOVEDIR) != 0 && Errno != ENOENT)
        {
            throw Error(Errno, name);
        }
    }

    public IFileWatch Watch(string path, bool recursive)
    {
        var fd = Open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, notDirectory: $"'{path}' is not a directory");
        return new InotifyWatch(fd, recursive);
    }

    public string? ReadSmallText(string path)
    {
        var fd = OpenAt2(_rootFd, Rel(path), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0, Resolve);
        if (fd < 0)
        {
            return null;
        }

        // Pooled: this runs on every exec (the user lookup reads /etc/passwd); a fresh 256 KiB
        // array each time landed on the large-object heap and cost ~80 gen2 GCs/s at 1,000 execs/s.
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(256 * 1024);
        try
        {
            var total = 0;
            fixed (byte* p = buffer)
            {
                const int limit = 256 * 1024; // the rented array may be larger
                while (total < limit)
                {
                    var n = read(fd, p + total, limit - total);
                    if (n <= 0)
                    {
                        break;
                    }

                    total += (int)n;
                }
            }

            return Encoding.UTF8.GetString(buffer, 0, total);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            close(fd);
        }
    }

    public FileStamp? GetStamp(string path)
    {
        var fd = OpenAt2(_rootFd, Rel(path), O_PATH | O_CLOEXEC, 0, Resolve);
        if (fd < 0)
        {
            return null;
        }

        try
        {
            Statx st;
            return statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &st) == 0
                ? new FileStamp(st.Ino, st.Size, (st.Mtime.Sec * 1_000_000_000) + st.Mtime.Nsec, (st.Ctime.Sec * 1_000_000_000) + st.Ctime.Nsec)
                : null;
        }
        finally
        {
            close(fd);
        }
    }

    public ExecutableProbe? ProbeExecutable(string path)
    {
        // Opened for reading (the server is root; O_NONBLOCK so a FIFO cannot hang): 4 bytes tell #! or ELF.
        var fd = OpenAt2(_rootFd, Rel(path), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0, Resolve);
        if (fd < 0)
        {
            return Errno is ENOENT or ENOTDIR ? null : default(ExecutableProbe);
        }

        try
        {
            Statx st;
            if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &st) != 0)
            {
                return default(ExecutableProbe);
            }

            var regular = (st.Mode & S_IFMT) == S_IFREG;
            var known = false;
            if (regular)
            {
                var magic = stackalloc byte[4];
                var n = read(fd, magic, 4);
                known = (n >= 2 && magic[0] == '#' && magic[1] == '!') || (n == 4 && magic[0] == 0x7F && magic[1] == 'E' && magic[2] == 'L' && magic[3] == 'F');
            }

            return new ExecutableProbe(true, regular, st.Mode & 0xFFF, (int)st.Uid, (int)st.Gid, known, st.Ino);
        }
        finally
        {
            close(fd);
        }
    }

    public bool IsPhysicalDirectory(string path)
    {
        var fd = OpenAt2(_rootFd, Rel(path), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, ResolveBeneath);
        if (fd < 0)
        {
            return false;
        }

        close(fd);
        return true;
    }

    /// <summary>
    /// A pty from the sandbox's own devpts (so the process sees /dev/pts/N inside), via
    /// TIOCGPTPEER so the slave is opened from the master, never by path.
    /// </summary>
    internal (int Master, int Slave) OpenPty(int uid)
    {
        var master = OpenAt2(_rootFd, "dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (master < 0)
        {
            throw new IOException($"cannot open the sandbox's ptmx: {StrError(Errno)}");
        }

        var unlock = 0;
        ioctl(master, TIOCSPTLCK, &unlock);
        var slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0)
        {
            var errno = Errno;
            close(master);
            throw new IOException($"cannot open the pty slave: {StrError(errno)}");
        }

        fchown(slave, uid, 5 /* tty */);
        return (master, slave);
    }

    private int Open(string path, int flags, int mode, string? notDirectory = null)
    {
        var fd = OpenAt2(_rootFd, Rel(path), flags, mode, Resolve);
        if (fd < 0)
        {
            var errno = Errno;
            throw errno == ENOTDIR && notDirectory is not null ? AirlockException.Invalid(notDirectory) : Error(errno, path);
        }

        return fd;
    }

    /// <summary>The parent directory (resolved in root) and the last component, not followed.</summary>
    private (int Fd, string Name) OpenParent(string path)
    {
        if (path == "/")
        {
            return (_rootFd, ".");
        }

        var parent = ParentOf(path);
        var name = path[(path.LastIndexOf('/') + 1)..];
        if (parent == "/")
        {
            return (_rootFd, name);
        }

        var fd = OpenAt2(_rootFd, Rel(parent), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, Resolve);
        if (fd < 0)
        {
            throw Error(Errno, path);
        }

        return (fd, name);
    }

    private void CloseIfNotRoot(int fd)
    {
        if (fd != _rootFd)
        {
            close(fd);
        }
    }

    private FileEntry Entry(int dirFd, string name, string path, NameCache names)
    {
        Statx st;
        var flags = AT_SYMLINK_NOFOLLOW | (name == "." ? AT_EMPTY_PATH : 0);
        if (statx(dirFd, name == "." ? "" : name, flags, STATX_BASIC_STATS, &st) != 0)
        {
            throw Error(Errno, path);
        }

        var type = (st.Mode & S_IFMT) switch
        {
            S_IFREG => FileType.File,
            S_IFDIR => FileType.Directory,
            S_IFLNK => FileType.Symlink,
            _ => FileType.Unknown,
        };
        string? target = null;
        if (type == FileType.Symlink)
        {
            var buffer = stackalloc byte[4096];
            var n = readlinkat(dirFd, name, buffer, 4096);
            target = n > 0 ? Encoding.UTF8.GetString(buffer, (int)n) : null;
        }

        var entryName = path == "/" ? "/" : path[(path.LastIndexOf('/') + 1)..];
        return new FileEntry(
            entryName,
            type,
            path,
            (long)st.Size,
            st.Mode & 0xFFF,
            Permissions(st.Mode, type),
            names.User((int)st.Uid),
            names.Group((int)st.Gid),
            DateTimeOffset.FromUnixTimeSeconds(st.Mtime.Sec).AddTicks(st.Mtime.Nsec / 100),
            target);
    }

    /// <summary>Go's FileMode.String(), which E2B returns as <c>permissions</c>.</summary>
    private static string Permissions(int mode, FileType type)
    {
        Span<char> s = stackalloc char[10];
        s[0] = type switch { FileType.Directory => 'd', FileType.Symlink => 'L', _ => '-' };
        const string rwx = "rwxrwxrwx";
        for (var i = 0; i < 9; i++)
        {
            s[i + 1] = (mode & (1 << (8 - i))) != 0 ? rwx[i] : '-';
        }

        return new string(s);
    }

    private static bool IsDirectory(int fd)
    {
        Statx st;
        return statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &st) == 0 && (st.Mode & S_IFMT) == S_IFDIR;
    }

    internal static IEnumerable<string> Names(int dirFd)
    {
        // The directory is already resolved; /proc/self/fd/N only re-opens that same directory.
        return Directory.EnumerateFileSystemEntries($"/proc/self/fd/{dirFd}").Select(Path.GetFileName).OfType<string>().ToList();
    }

    private static string Rel(string path) => path == "/" ? "." : path.TrimStart('/');

    private static string ParentOf(string path)
    {
        var i = path.LastIndexOf('/');
        return i <= 0 ? "/" : path[..i];
    }

    internal static AirlockException Error(int errno, string path) => errno switch
    {
        ENOENT => AirlockException.NotFound($"path '{path}'"),
        ENOTDIR => AirlockException.NotFound($"path '{path}'"),
        EEXIST => AirlockException.Conflict("already_exists", $"'{path}' already exists"),
        EISDIR => AirlockException.Invalid($"'{path}' is a directory"),
        ENOTEMPTY => AirlockException.Invalid($"'{path}' is not empty"),
        ELOOP => AirlockException.Invalid($"'{path}' has too many levels of symbolic links"),
        EXDEV => new AirlockException("permission_denied", 403, $"'{path}' is on a special filesystem (/proc, /sys, /dev) the API does not reach"),
        EACCES or EPERM => new AirlockException("permission_denied", 403, $"permission denied: '{path}'"),
        ENOSPC => new AirlockException("not_enough_space", 507, "the sandbox's disk is full"),
        ENAMETOOLONG => AirlockException.Invalid($"'{path}' is too long"),
        EINVAL => AirlockException.Invalid($"invalid path '{path}'"),
        ENXIO => AirlockException.Invalid($"'{path}' is not a regular file"), // a FIFO with no reader
        _ => new AirlockException("io_error", 500, $"'{path}': {StrError(errno)}"),
    };

    /// <summary>uid/gid → name from the sandbox's own /etc/passwd and /etc/group, read once per call.</summary>
    private sealed class NameCache(LinuxSandboxFileSystem fs)
    {
        private Dictionary<int, string>? _users;
        private Dictionary<int, string>? _groups;

        public string User(int uid) => Lookup(ref _users, "/etc/passwd", uid);

        public string Group(int gid) => Lookup(ref _groups, "/etc/group", gid);

        private string Lookup(ref Dictionary<int, string>? map, string file, int id)
        {
            if (map is null)
            {
                map = [];
                foreach (var line in (fs.ReadSmallText(file) ?? "").Split('\n'))
                {
                    var f = line.Split(':');
                    if (f.Length >= 3 && int.TryParse(f[2], out var n))
                    {
                        map.TryAdd(n, f[0]);
                    }
                }
            }

            return map.TryGetValue(id, out var name) ? name : id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _rootFd, -1);
        if (fd >= 0)
        {
            close(fd);
        }
    }
}
