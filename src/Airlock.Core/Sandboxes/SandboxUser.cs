namespace Airlock.Core.Sandboxes;

/// <summary>A user inside a sandbox, resolved from the sandbox's own /etc/passwd.</summary>
internal sealed record SandboxUser(string Name, int Uid, int Gid, string Home)
{
    public const string DefaultName = "user";

    public bool IsRoot => Uid == 0;
}
