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
