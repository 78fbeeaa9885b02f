namespace Airlock.Runtime.Linux.Network;

/// <summary>Sandbox networking (configuration section <c>Airlock:Network</c>); see docs/networking.md.</summary>
internal sealed class NetworkOptions
{
    public const string Section = "Airlock:Network";

    /// <summary>
    /// Upstream DNS servers the per-sandbox forwarder asks (addresses, optionally <c>addr:port</c>).
    /// Default: the nameservers of the host's <c>/etc/resolv.conf</c>.
    /// </summary>
    public List<string> DnsServers { get; set; } = [];

    /// <summary>
    /// Where per-sandbox /30 subnets come from (IPv4 CIDR). Each server takes the first free /30s,
    /// skipping any address the kernel already has, so several servers can share one host.
    /// </summary>
    public string SubnetPool { get; set; } = "10.200.0.0/16";
}
