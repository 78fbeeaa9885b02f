using Airlock.Core.Sandboxes;

namespace Airlock.Core.Files;

/// <summary>File operations on a sandbox as a given user: relative paths resolve against the user's home.</summary>
internal sealed class FileService(SandboxService sandboxes)
{
    private const int ENOSPC = 28;
    private const int EDQUOT = 122;

    public (ISandboxFileSystem Fs, string Path, SandboxUser User) Resolve(string sandboxId, string path, string? user)
    {
        var live = sandboxes.Get(sandboxId);
        var who = live.ResolveUser(user);
        return (live.Runtime.FileSystem, SandboxPath.Resolve(path, who), who);
    }

    public Stream OpenRead(string sandboxId, string path, string? user)
    {
        var (fs, resolved, _) = Resolve(sandboxId, path, user);
        return fs.OpenRead(resolved);
    }

    /// <summary>Writes the whole stream to the file (parents created, owned by the user) and returns its entry.</summary>
    public async Task<FileEntry> WriteAsync(string sandboxId, string path, string? user, Stream content, CancellationToken cancellationToken = default)
    {
        var (fs, resolved, who) = Resolve(sandboxId, path, user);
        try
        {
            await using var target = fs.OpenWrite(resolved, who);
            await content.CopyToAsync(target, 1 << 20, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex) when (ex.HResult is ENOSPC or EDQUOT)
        {
            // A full disk shows up mid-copy as the file stream's IOException (HResult = errno), not at
            // open time; every API answers it as 507.
            throw new AirlockException("not_enough_space", 507, "the sandbox's disk is full");
        }

        return fs.Stat(resolved);
    }

    public FileEntry Stat(string sandboxId, string path, string? user)
    {
        var (fs, resolved, _) = Resolve(sandboxId, path, user);
        return fs.Stat(resolved);
    }

    public IReadOnlyList<FileEntry> List(string sandboxId, string path, int depth, string? user)
    {
        if (depth < 1)
        {
            throw AirlockException.Invalid("depth must be at least 1");
        }

        var (fs, resolved, _) = Resolve(sandboxId, path, user);
        return fs.List(resolved, Math.Min(depth, 64));
    }

    public (bool Created, FileEntry Entry) MakeDirectory(string sandboxId, string path, string? user)
    {
        var (fs, resolved, who) = Resolve(sandboxId, path, user);
        var created = fs.MakeDirectory(resolved, who);
        return (created, fs.Stat(resolved));
    }

    public FileEntry Move(string sandboxId, string source, string destination, string? user)
    {
        var (fs, from, who) = Resolve(sandboxId, source, user);
        var to = SandboxPath.Resolve(destination, who);
        fs.Move(from, to, who);
        return fs.Stat(to);
    }

    public void Remove(string sandboxId, string path, string? user)
    {
        var (fs, resolved, _) = Resolve(sandboxId, path, user);
        if (resolved == "/")
        {
            throw AirlockException.Invalid("cannot remove the root directory");
        }

        fs.Remove(resolved);
    }

    public IFileWatch Watch(string sandboxId, string path, bool recursive, string? user)
    {
        var (fs, resolved, _) = Resolve(sandboxId, path, user);
        return fs.Watch(resolved, recursive);
    }
}
