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

    /// <summary>Looks a user up in the sandbox's own /etc/passwd, so users made inside work too.</summary>
    public SandboxUser ResolveUser(string? name)
    {
        name ??= Template.User;
        var passwd = Runtime.FileSystem.ReadSmallText("/etc/passwd") ?? "";
        foreach (var line in passwd.AsSpan().EnumerateLines())
        {
            var fields = line.ToString().Split(':');
            if (fields.Length >= 6 && fields[0] == name && int.TryParse(fields[2], out var uid) && int.TryParse(fields[3], out var gid))
            {
                return new SandboxUser(name, uid, gid, fields[5].Length > 0 ? fields[5] : "/");
            }
        }

        if (name == "root")
        {
            return new SandboxUser("root", 0, 0, "/root");
        }

        throw AirlockException.Invalid($"user '{name}' does not exist in the sandbox");
    }
}
