namespace Airlock.Runtime.Linux;

/// <summary>Where the node keeps its state (configuration section <c>Airlock</c>).</summary>
internal sealed class RuntimeOptions
{
    public const string Section = "Airlock";

    /// <summary>Root of all state: the database, sandbox state dirs, templates (env <c>AIRLOCK_DATA</c>).</summary>
    public string DataDir { get; set; } = "data";

    /// <summary>Built templates; shareable between servers on one machine (they lock it while building).</summary>
    public string? TemplatesDir { get; set; }

    /// <summary>The native helper; defaults to <c>airlock-init</c> beside the assemblies.</summary>
    public string? InitPath { get; set; }

    public string DebianMirror { get; set; } = "http://deb.debian.org/debian";

    /// <summary>
    /// Remount the host's cgroup2 hierarchy with <c>favordynmods</c> at start, so moving a new
    /// sandbox into its cgroups does not wait for an RCU grace period (5–20 ms per create).
    /// A host-wide setting; see Cgroups/FavorDynMods.cs.
    /// </summary>
    public bool FavorDynMods { get; set; } = true;

    /// <summary>
    /// Name of the cgroup directory this server owns in each hierarchy. Defaults to
    /// <c>airlock-&lt;hash of the data dir&gt;</c>: servers with different data dirs on one machine must
    /// never sweep each other's sandboxes.
    /// </summary>
    public string? CgroupName { get; set; }

    public string ResolvedCgroupName => CgroupName ?? "airlock-" + Convert.ToHexStringLower(
        System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(SandboxesDir)))[..8];

    public string SandboxesDir => Path.Combine(Path.GetFullPath(DataDir), "sandboxes");

    public string ResolvedTemplatesDir => Path.GetFullPath(TemplatesDir ?? Path.Combine(DataDir, "templates"));

    public string ResolvedInitPath => InitPath ?? Path.Combine(AppContext.BaseDirectory, "airlock-init");
}
