namespace Airlock.Core.Sandboxes;

/// <summary>Sandbox defaults and limits (configuration section <c>Airlock:Sandboxes</c>).</summary>
internal sealed class SandboxOptions
{
    public const string Section = "Airlock:Sandboxes";

    public string DefaultTemplate { get; set; } = "base";

    public int DefaultTimeoutSeconds { get; set; } = 300;

    public int MaxTimeoutSeconds { get; set; } = 86_400;

    public int DefaultCpus { get; set; } = 1;

    public int MaxCpus { get; set; } = Environment.ProcessorCount;

    public int DefaultMemoryMb { get; set; } = 512;

    public int MaxMemoryMb { get; set; } = 16_384;

    /// <summary>Size of the writable layer. It is a tmpfs, so what is written also counts as the sandbox's memory.</summary>
    public int DefaultDiskMb { get; set; } = 1024;

    public int MaxDiskMb { get; set; } = 16_384;

    /// <summary>
    /// What a create asks for when it names no template, cpus, memory or disk: the one definition
    /// of the shape the warm pool holds (internal, so configuration binding ignores it).
    /// </summary>
    internal SandboxShape DefaultShape => new(DefaultTemplate, DefaultCpus, DefaultMemoryMb, DefaultDiskMb);

    public int PidsLimit { get; set; } = 1024;

    /// <summary>Let `user` gain root through the template's setuid sudo (E2B parity). Off: every process gets no_new_privs.</summary>
    public bool AllowSudo { get; set; } = true;

    /// <summary>Output kept per process for re-attach, in bytes.</summary>
    public long ProcessOutputWindowBytes { get; set; } = 16 << 20;

    /// <summary>Finished processes kept per sandbox for re-attach.</summary>
    public int FinishedProcessesKept { get; set; } = 128;

    /// <summary>Sandboxes of the default shape kept started ahead of time (warm pool); 0 turns the pool off, below 0 is refused at start.</summary>
    public int WarmPoolSize { get; set; } = 4;

    /// <summary>
    /// How long the warm pool waits after the last take before it starts a replacement: a claimed
    /// sandbox's first commands usually follow at once, and a refill (a whole sandbox start) would
    /// compete with them for the CPUs. Takes in a burst keep pushing the refill back, up to 1 s; so
    /// 0 to 1000, anything else is refused at start.
    /// </summary>
    public int WarmPoolRefillDelayMs { get; set; } = 100;
}
