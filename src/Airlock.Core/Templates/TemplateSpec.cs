using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Airlock.Core.Templates;

/// <summary>
/// A declarative root filesystem: a Debian release through debootstrap, packages, run steps (in a
/// chroot, as root), env, working directory and default user. Built once per content hash.
/// </summary>
internal sealed record TemplateSpec
{
    public required string Name { get; init; }

    public string Release { get; init; } = "bookworm";

    public IReadOnlyList<string> Packages { get; init; } = [];

    public IReadOnlyList<string> Run { get; init; } = [];

    public IReadOnlyDictionary<string, string> Env { get; init; } = new Dictionary<string, string>();

    public string? Workdir { get; init; }

    public string User { get; init; } = "user";

    /// <summary>Bumped when the builder changes what it makes from the same spec.</summary>
    public const int BuilderVersion = 1;

    public string Hash()
    {
        var canonical = JsonSerializer.Serialize(new
        {
            BuilderVersion,
            Release,
            Packages = Packages.Order(StringComparer.Ordinal).ToArray(),
            Run,
            Env = Env.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key}={e.Value}").ToArray(),
            Workdir,
            User,
        });
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical)))[..16];
    }

    /// <summary>The template every sandbox gets by default.</summary>
    public static TemplateSpec Base { get; } = new()
    {
        Name = "base",
        Packages = ["bash", "coreutils", "procps", "python3", "git", "curl", "ca-certificates", "sudo", "iproute2", "less", "xz-utils", "locales"],
        Run =
        [
            "useradd --create-home --uid 1000 --user-group --shell /bin/bash user",
            "printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/user && chmod 0440 /etc/sudoers.d/user",
            "rm -rf /var/cache/apt/archives/*.deb",
        ],
        Env = new Dictionary<string, string> { ["LANG"] = "C.UTF-8" },
        Workdir = "/home/user",
    };

    /// <summary>
    /// What <c>@e2b/code-interpreter</c> creates by default: the base template plus Python's data
    /// stack and Node.js, from Debian's archive (the build host may not reach PyPI or npm). The
    /// interpreter driver itself is not baked in: the server passes it on the command line, so
    /// changing it does not rebuild the template.
    /// </summary>
    public static TemplateSpec CodeInterpreter { get; } = Base with
    {
        Name = "code-interpreter-v1",
        Packages = [.. Base.Packages, "python3-numpy", "python3-pandas", "python3-matplotlib", "nodejs"],
        Env = new Dictionary<string, string> { ["LANG"] = "C.UTF-8", ["MPLBACKEND"] = "Agg" },
    };
}

internal enum TemplateStatus
{
    Building,
    Ready,
    Failed,
}

internal sealed record TemplateRecord(string Name, string Hash, TemplateStatus Status, string? Error, DateTimeOffset UpdatedAt);

/// <summary>A built template, ready to be the lower layer of sandboxes.</summary>
internal sealed record TemplateInfo(TemplateSpec Spec, string Hash, string RootfsPath);

/// <summary>Turns a spec into a root filesystem on this node.</summary>
internal interface ITemplateBuilder
{
    /// <summary>Returns the path of the built rootfs; builds it when it is not there yet.</summary>
    Task<string> EnsureBuiltAsync(TemplateSpec spec, IProgress<string> progress, CancellationToken cancellationToken = default);

    /// <summary>The rootfs path when already built, else null; never builds.</summary>
    string? TryGetBuilt(TemplateSpec spec);
}
