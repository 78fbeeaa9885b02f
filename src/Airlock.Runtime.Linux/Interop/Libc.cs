using System.Runtime.InteropServices;

namespace Airlock.Runtime.Linux.Interop;

/// <summary>libc and raw syscalls the runtime needs that .NET does not expose.</summary>
internal static unsafe partial class Libc
{
    public const int EINTR = 4, EAGAIN = 11, ENOENT = 2, EEXIST = 17, ENOTDIR = 20, EISDIR = 21, EINVAL = 22,
        ENOTEMPTY = 39, ELOOP = 40, EXDEV = 18, ESRCH = 3, EPERM = 1, EACCES = 13, ENOSPC = 28, EBADF = 9, ENAMETOOLONG = 36, ENXIO = 6;

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80, O_NOCTTY = 0x100,
        O_TRUNC = 0x200, O_NONBLOCK = 0x800, O_DIRECTORY = 0x10000, O_NOFOLLOW = 0x20000, O_CLOEXEC = 0x80000, O_PATH = 0x200000;

    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_EMPTY_PATH = 0x1000;

    // openat2(2) resolve flags.
    public const ulong RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_IN_ROOT = 0x10;

    [StructLayout(LayoutKind.Sequential)]
    public struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    private const long SYS_openat2 = 437, SYS_pidfd_open = 434, SYS_pidfd_send_signal = 424, SYS_renameat2 = 316;

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, long a1, long a2, long a3, long a4, long a5);

    public static int OpenAt2(int dirfd, string path, int flags, int mode, ulong resolve)
    {
        var how = new OpenHow { Flags = (ulong)(uint)flags, Mode = (ulong)mode, Resolve = resolve };
        var bytes = NullTerminated(path);
        fixed (byte* p = bytes)
        {
            return (int)syscall(SYS_openat2, dirfd, (long)p, (long)&how, sizeof(OpenHow), 0);
        }
    }

    public static int PidfdOpen(int pid) => (int)syscall(SYS_pidfd_open, pid, 0, 0, 0, 0);

    public static int Renameat2(int olddirfd, string oldpath, int newdirfd, string newpath, uint flags)
    {
        var o = NullTerminated(oldpath);
        var n = NullTerminated(newpath);
        fixed (byte* po = o)
        fixed (byte* pn = n)
        {
            return (int)syscall(SYS_renameat2, olddirfd, (long)po, newdirfd, (long)pn, flags);
        }
    }

    public static byte[] NullTerminated(string s)
    {
        var bytes = new byte[System.Text.Encoding.UTF8.GetByteCount(s) + 1];
        System.Text.Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int pipe2(int* fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint read(int fd, byte* buf, nint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, byte* buf, nint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int sig);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int ioctl(int fd, ulong request, void* arg);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int ioctl(int fd, ulong request, nint arg);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fchown(int fd, int owner, int group);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int fchownat(int dirfd, string path, int owner, int group, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mkdirat(int dirfd, string path, int mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int unlinkat(int dirfd, string path, int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int openat(int dirfd, string path, int flags, int mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint readlinkat(int dirfd, string path, byte* buf, nint size);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    public const int F_GETFL = 3, F_SETFL = 4;

    // statx(2): the one stat call that gives everything in a stable layout.
    [StructLayout(LayoutKind.Sequential)]
    public struct StatxTimestamp
    {
        public long Sec;
        public uint Nsec;
        private int _reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Statx
    {
        public uint Mask;
        public uint Blksize;
        public ulong Attributes;
        public uint Nlink;
        public uint Uid;
        public uint Gid;
        public ushort Mode;
        private ushort _spare0;
        public ulong Ino;
        public ulong Size;
        public ulong Blocks;
        public ulong AttributesMask;
        public StatxTimestamp Atime;
        public StatxTimestamp Btime;
        public StatxTimestamp Ctime;
        public StatxTimestamp Mtime;
        public uint RdevMajor;
        public uint RdevMinor;
        public uint DevMajor;
        public uint DevMinor;
        private fixed ulong _spare2[14];
    }

    public const uint STATX_BASIC_STATS = 0x7ff;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int statx(int dirfd, string path, int flags, uint mask, Statx* buf);

    // epoll
    public const int EPOLL_CLOEXEC = 0x80000;
    public const uint EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010, EPOLLRDHUP = 0x2000;
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_wait(int epfd, EpollEvent* events, int maxevents, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;

    // sendmsg with SCM_RIGHTS
    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nint Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nint IovLen;
        public void* Control;
        public nint ControlLen;
        public int Flags;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint sendmsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint recv(int fd, byte* buf, nint len, int flags);

    public const int MSG_NOSIGNAL = 0x4000, MSG_DONTWAIT = 0x40;
    public const int SOL_SOCKET = 1, SCM_RIGHTS = 1;

    // inotify
    [LibraryImport("libc", SetLastError = true)]
    public static partial int inotify_init1(int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int inotify_add_watch(int fd, string path, uint mask);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int inotify_rm_watch(int fd, int wd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint nfds, int timeout);

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    public const short POLLIN = 1;

    // pty
    public const ulong TIOCSWINSZ = 0x5414, TIOCGPTPEER = 0x5441, TIOCSPTLCK = 0x40045431;

    [StructLayout(LayoutKind.Sequential)]
    public struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixel;
        public ushort YPixel;
    }

    public static int Errno => Marshal.GetLastPInvokeError();

    public static string StrError(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
