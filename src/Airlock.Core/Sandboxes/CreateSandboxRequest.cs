namespace Airlock.Core.Sandboxes;

/// <summary>What a caller may ask for at create; every field optional.</summary>
internal sealed record CreateSandboxRequest
{
    public string? Template { get; init; }

    public int? TimeoutSeconds { get; init; }

    public Dictionary<string, string>? Metadata { get; init; }

    public Dictionary<string, string>? Env { get; init; }

    public int? Cpus { get; init; }

    public int? MemoryMb { get; init; }

    public int? DiskMb { get; init; }

    /// <summary>Network mode and rules; null is <see cref="NetworkConfig.Default"/> (mode none).</summary>
    public NetworkConfig? Network { get; init; }
}
