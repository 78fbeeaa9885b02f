using Airlock.Core.Sandboxes;

namespace Airlock.Core.Runtime;

/// <summary>
/// The node side of a sandbox's network (docs/networking.md): its egress mode and rules, connections
/// into it for port exposure, and its traffic counters.
/// </summary>
internal interface ISandboxNetwork
{
    /// <summary>
    /// Opens a TCP connection to <paramref name="port"/> on the sandbox's own loopback (works in every
    /// mode, since it is made inside the sandbox's network namespace). Null when nothing listens there.
    /// Bytes through the stream are counted as the sandbox's proxy traffic.
    /// </summary>
    ValueTask<Stream?> ConnectAsync(SandboxRecord record, int port, CancellationToken cancellationToken = default);

    /// <summary>
    /// Makes the sandbox's network match <paramref name="config"/> (at create, and again on every
    /// change). Returns the nameserver the sandbox's resolv.conf must name (internet mode), or null.
    /// </summary>
    Task<string?> ApplyAsync(SandboxRecord record, NetworkConfig config, CancellationToken cancellationToken = default);

    /// <summary>
    /// After a restart: takes over the networks of re-adopted sandboxes (their records' configs) all
    /// at once, so that no sandbox is ever without its rules while the others are restored. One
    /// result per sandbox not in mode none: the nameserver for its resolv.conf, or why it failed.
    /// </summary>
    Task<IReadOnlyDictionary<string, RestoredNetwork>> RestoreAsync(IReadOnlyList<SandboxRecord> records, CancellationToken cancellationToken = default);

    /// <summary>Removes everything the sandbox's network owns on the host (rules, interfaces, DNS). Idempotent.</summary>
    Task RemoveAsync(string sandboxId, CancellationToken cancellationToken = default);

    /// <summary>Removes host network resources of sandboxes not in <paramref name="liveIds"/>.</summary>
    Task SweepAsync(IReadOnlySet<string> liveIds, CancellationToken cancellationToken = default);

    /// <summary>Bytes the sandbox sent and received so far (the metering hook).</summary>
    NetworkUsage GetUsage(SandboxRecord record);
}

/// <summary>
/// Traffic of one sandbox in bytes. <c>Egress*</c> is what went over its veth (internet mode, as seen
/// from the sandbox: sent = out of the sandbox); <c>Proxy*</c> is port-exposure traffic (sent = from
/// the sandbox to clients).
/// </summary>
internal readonly record struct NetworkUsage(long EgressSentBytes, long EgressReceivedBytes, long ProxySentBytes, long ProxyReceivedBytes)
{
    public long SentBytes => EgressSentBytes + ProxySentBytes;

    public long ReceivedBytes => EgressReceivedBytes + ProxyReceivedBytes;
}

/// <summary>One sandbox's network after <see cref="ISandboxNetwork.RestoreAsync"/>: its nameserver, or the error.</summary>
internal readonly record struct RestoredNetwork(string? Nameserver, Exception? Error);
