namespace Airlock.Core.Sandboxes;

/// <summary>The stored state of one sandbox. The store owns it; the node fields say where it runs.</summary>
internal sealed class SandboxRecord
{
    public required string Id { get; init; }

    public required string Template { get; init; }

    public SandboxState State { get; set; }

    public DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset ExpiresAt { get; set; }

    public Dictionary<string, string> Metadata { get; init; } = [];

    public Dictionary<string, string> Env { get; init; } = [];

    public int Cpus { get; init; }

    public int MemoryMb { get; init; }

    public int DiskMb { get; init; }

    /// <summary>The per-sandbox secret of the E2B sandbox surface (<c>X-Access-Token</c>, signed file URLs).</summary>
    public string AccessToken { get; init; } = "";

    /// <summary>Host pid of the sandbox's init, and its start time in clock ticks (guards against pid reuse).</summary>
    public int InitPid { get; set; }

    public long InitStartTime { get; set; }

    /// <summary>Network mode and egress rules (docs/networking.md); changeable while running.</summary>
    public NetworkConfig Network { get; set; } = NetworkConfig.Default;

    /// <summary>Set when public traffic is off: port exposure then requires it (E2B <c>trafficAccessToken</c>).</summary>
    public string? TrafficAccessToken { get; set; }

    /// <summary>The team that owns the sandbox: only its callers see it (docs/architecture.md, "Tenancy").</summary>
    public string TeamId { get; init; } = "";
}

internal enum SandboxState
{
    /// <summary>
    /// No longer written: records are inserted once the runtime has made the sandbox (see
    /// <c>SandboxService.StartRecordedAsync</c>). Kept because stores written by older servers may
    /// hold it; recovery reaps such a record like any that is not Running.
    /// </summary>
    Starting,
    Running,
    /// <summary>Being destroyed. Recovery finishes the job.</summary>
    Stopping,
    /// <summary>Started ahead of time in the warm pool, not yet claimed: invisible, and reaped by recovery.</summary>
    Pooled,
}
