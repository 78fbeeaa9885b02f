using Airlock.Core.Sandboxes;

namespace Airlock.Core.Files;

/// <summary>
/// A sandbox's filesystem seen from the host. Every path is absolute inside the sandbox and is
/// resolved in its root: no <c>..</c> and no symlink leads out of it.
/// </summary>
internal interface ISandboxFileSystem
{
    Stream OpenRead(string path);

    /// <summary>Creates or truncates the file (and its missing parents), owned by <paramref name="owner"/>.</summary>
    Stream OpenWrite(string path, SandboxUser owner);

    FileEntry Stat(string path);

    IReadOnlyList<FileEntry> List(string path, int depth);

    /// <summary>Creates the directory and its parents; false when it already existed.</summary>
    bool MakeDirectory(string path, SandboxUser owner);

    void Move(string source, string destination, SandboxUser owner);

    /// <summary>Removes a file or a whole tree; a missing path is not an error.</summary>
    void Remove(string path);

    IFileWatch Watch(string path, bool recursive);

    /// <summary>Reads a small text file whole, or null when it does not exist.</summary>
    string? ReadSmallText(string path);

    /// <summary>Identity of a file's content (inode, size, mtime, ctime), or null when it does not exist.</summary>
    FileStamp? GetStamp(string path);

    /// <summary>
    /// What <c>execve</c> of <paramref name="path"/> would find, without following a symlink out of the
    /// root: null when nothing is there (ENOENT/ENOTDIR); otherwise the entry (after symlinks).
    /// </summary>
    ExecutableProbe? ProbeExecutable(string path);

    /// <summary>True when <paramref name="path"/> is a directory reached through no symlink (its path is its physical path).</summary>
    bool IsPhysicalDirectory(string path);
}

internal readonly record struct FileStamp(ulong Inode, ulong Size, long MtimeNs, long CtimeNs);

/// <summary>
/// A file found by <see cref="ISandboxFileSystem.ProbeExecutable"/>. <see cref="KnownFormat"/>: it starts with
/// <c>#!</c> or the ELF magic, so the kernel runs it without ENOEXEC. <see cref="Probed"/> false: it exists
/// but could not be examined (an error other than ENOENT/ENOTDIR).
/// </summary>
internal readonly record struct ExecutableProbe(bool Probed, bool IsRegular, int Mode, int Uid, int Gid, bool KnownFormat, ulong Inode)
{
    /// <summary>The kernel's permission check for exec, by mode bits (the child has only its primary group).</summary>
    public bool ExecutableBy(SandboxUser user) => Probed && IsRegular && (user.Uid == 0
        ? (Mode & 0x49 /* 0111 */) != 0
        : user.Uid == Uid ? (Mode & 0x40) != 0 : user.Gid == Gid ? (Mode & 0x08) != 0 : (Mode & 0x01) != 0);
}

internal interface IFileWatch : IDisposable
{
    IAsyncEnumerable<FileEvent> ReadAllAsync(CancellationToken cancellationToken = default);
}

internal enum FileType
{
    Unknown,
    File,
    Directory,
    Symlink,
}

internal enum FileEventType
{
    Create = 1,
    Write = 2,
    Remove = 3,
    Rename = 4,
    Chmod = 5,
}

/// <summary>A change under a watched directory; <see cref="Name"/> is relative to it.</summary>
internal sealed record FileEvent(string Name, FileEventType Type);

internal sealed record FileEntry(
    string Name,
    FileType Type,
    string Path,
    long Size,
    int Mode,
    string Permissions,
    string Owner,
    string Group,
    DateTimeOffset ModifiedTime,
    string? SymlinkTarget);
