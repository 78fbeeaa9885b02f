using Airlock.Core.Files;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;
using Airlock.Core.Templates;

namespace Airlock.Core.Sandboxes;

/// <summary>A running sandbox held by this server: its record, its runtime and its processes.</summary>
internal sealed class LiveSandbox(SandboxRecord record, IRuntimeSandbox runtime, TemplateSpec template, int finishedKept)
{
    public SandboxRecord Record { get; } = record;

    public IRuntimeSandbox Runtime { get; } = runtime;

    public TemplateSpec Template { get; } = template;

    public ProcessTable Processes { get; } = new(finishedKept);

    internal ITimer? ExpiryTimer { get; set; }

    private readonly Lock _passwdLock = new();
    private (FileStamp Stamp, Dictionary<string, SandboxUser> Users)? _passwd;

    /// <summary>
    /// Looks a user up in the sandbox's own /etc/passwd, so users made inside work too. The parsed file
    /// is kept while its (inode, size, mtime, ctime) stay the same: one statx per lookup, not a read and a parse.
    /// </summary>
    public SandboxUser ResolveUser(string? name)
    {
        name ??= Template.User;
        if (Users().TryGetValue(name, out var user))
        {
            return user;
        }

        if (name == "root")
        {
            return new SandboxUser("root", 0, 0, "/root");
        }

        throw AirlockException.Invalid($"user '{name}' does not exist in the sandbox");
    }

    private Dictionary<string, SandboxUser> Users()
    {
        // Stamp first, then read: a change in between is read now and noticed again next time.
        var stamp = Runtime.FileSystem.GetStamp("/etc/passwd");
        lock (_passwdLock)
        {
            if (stamp is { } s && _passwd is { } cached && cached.Stamp == s)
            {
                return cached.Users;
            }
        }

        var users = Parse(Runtime.FileSystem.ReadSmallText("/etc/passwd") ?? "");
        lock (_passwdLock)
        {
            _passwd = stamp is { } s ? (s, users) : null;
        }

        return users;
    }

    private static Dictionary<string, SandboxUser> Parse(string passwd)
    {
        var users = new Dictionary<string, SandboxUser>(StringComparer.Ordinal);
        foreach (var line in passwd.AsSpan().EnumerateLines())
        {
            var fields = line.ToString().Split(':');
            // The first line for a name wins, as getpwnam.
            if (fields.Length >= 6 && !users.ContainsKey(fields[0]) && int.TryParse(fields[2], out var uid) && int.TryParse(fields[3], out var gid))
            {
                users[fields[0]] = new SandboxUser(fields[0], uid, gid, fields[5].Length > 0 ? fields[5] : "/");
            }
        }

        return users;
    }
}
