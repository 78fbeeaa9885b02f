using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Airlock.Core;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Microsoft.Extensions.Logging;

namespace Airlock.Runtime.Linux.Network;

/// <summary>
/// Internet mode: a veth pair (host end <c>al&lt;id prefix&gt;&lt;generation&gt;</c>, sandbox end
/// <c>eth0</c>) on a /30 of <see cref="NetworkOptions.SubnetPool"/>, NAT through the host, and the
/// sandbox's rules in this server's nftables table (<c>inet airlock_&lt;hash&gt;</c>): per sandbox the
/// chains <c>in_&lt;id&gt;</c> (to the host: only its DNS forwarder), <c>out_&lt;id&gt;</c> (forwarded
/// egress: the rules) and <c>back_&lt;id&gt;</c> (forwarded ingress: replies only), plus the sets its
/// domain rules fill. Every change is one <c>nft -f -</c> transaction.
/// </summary>
internal sealed partial class LinuxSandboxNetwork
{
    /// <summary>Refused in internet mode unless an allow rule names them.</summary>
    private const string PrivateRanges = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4";
    private const string HostLockPath = "/run/airlock-network.lock";

    private readonly SemaphoreSlim _nftLock = new(1, 1);
    private string _table = "";
    private IPNetwork _pool;
    private List<IPEndPoint> _upstreams = [];
    private int _forwardingChecked;

    private sealed class Egress(string ifname, IPAddress gateway, IPAddress address, TimeProvider time)
    {
        public string Ifname { get; } = ifname;

        public IPAddress Gateway { get; } = gateway;

        public IPAddress Address { get; } = address;

        public NetworkConfig Config { get; set; } = NetworkConfig.Default;

        public DnsForwarder? Dns { get; set; }

        /// <summary>
        /// Its chains and sets are in the table (changed only under <c>_nftLock</c>). Every other
        /// sandbox's transaction writes the dispatch to them, so only installed ones may be named:
        /// a jump to a chain that does not exist fails the whole transaction.
        /// </summary>
        public bool Installed { get; set; }

        /// <summary>What its DNS forwarder put into its sets and until when.</summary>
        public FollowedAddresses Followed { get; } = new(time);
    }

    private void InitEgress()
    {
        _table = "airlock_" + _runtimeOptions.ResolvedCgroupName.Replace("airlock-", "", StringComparison.Ordinal).Replace('-', '_');
        if (!IPNetwork.TryParse(_options.SubnetPool, out _pool) || _pool.BaseAddress.AddressFamily != AddressFamily.InterNetwork || _pool.PrefixLength > 29)
        {
            throw new InvalidOperationException($"Airlock:Network:SubnetPool must be an IPv4 CIDR of /29 or larger, not \"{_options.SubnetPool}\"");
        }

        var servers = _options.DnsServers.Count > 0 ? _options.DnsServers : ReadResolvConf();
        _upstreams = servers.Select(ParseEndpoint).ToList();
    }

    private void DisposeEgress()
    {
        foreach (var net in _nets.Values)
        {
            if (net.Egress?.Dns is { } dns)
            {
                dns.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
    }

    private static (long Sent, long Received) EgressCounters(Egress egress) =>
        // The host end's receive counter is what the sandbox sent, and the other way round.
        (ReadCounter(egress.Ifname, "rx_bytes"), ReadCounter(egress.Ifname, "tx_bytes"));

    public async Task<string?> ApplyAsync(SandboxRecord record, NetworkConfig config, CancellationToken cancellationToken = default)
    {
        var net = GetNet(record);
        await net.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (config.Mode == NetworkMode.None)
            {
                if (net.Egress is { } old)
                {
                    await TeardownAsync(net.Id, old).ConfigureAwait(false);
                    net.Egress = null;
                }

                return null;
            }

            // A sandbox a previous server process set up keeps its veth, but those are taken over by
            // RestoreAsync: here a missing egress is always a new one (no listing of the host's links).
            var egress = net.Egress ??= await CreateEgressAsync(net, cancellationToken).ConfigureAwait(false);
            egress.Config = config;
            try
            {
                await WriteRulesAsync([(net.Id, egress)]).ConfigureAwait(false);
                StartDns(net.Id, egress);
            }
            catch
            {
                await TeardownAsync(net.Id, egress).ConfigureAwait(false);
                net.Egress = null;
                throw;
            }

            LogApplied(net.Id, egress.Ifname, egress.Address.ToString(), config.Allow.Count, config.Deny.Count);
            return egress.Gateway.ToString();
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            throw Unavailable(ex);
        }
        finally
        {
            net.Gate.Release();
        }
    }

    public async Task<IReadOnlyDictionary<string, RestoredNetwork>> RestoreAsync(IReadOnlyList<SandboxRecord> records, CancellationToken cancellationToken = default)
    {
        var results = new Dictionary<string, RestoredNetwork>(StringComparer.Ordinal);
        var held = new List<SandboxNet>();
        try
        {
            // Phase 1: every adopted sandbox's egress is known before any rule is written. The
            // kernel still has the previous process's rules; the first transaction regenerates the
            // base chains' dispatch whole, and a sandbox it did not name could reach the host.
            var veths = ListVeths();
            foreach (var record in records.Where(r => r.Network.Mode != NetworkMode.None))
            {
                try
                {
                    var net = GetNet(record);
                    await net.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
                    held.Add(net);
                    var egress = net.Egress ??= FindEgress(net, veths) ?? await CreateEgressAsync(net, cancellationToken).ConfigureAwait(false);
                    egress.Config = record.Network;
                }
                catch (Exception ex) when (ex is IOException or SocketException or AirlockException)
                {
                    results[record.Id] = new RestoredNetwork(null, ex is AirlockException ? ex : Unavailable(ex));
                }
            }

            var pending = held.Where(n => n.Egress is not null && !results.ContainsKey(n.Id)).ToList();
            await MarkInstalledAsync(pending, cancellationToken).ConfigureAwait(false);

            // Phase 2: all their rules and the dispatch to every one of them in one transaction.
            try
            {
                await WriteRulesAsync(pending.Select(n => (n.Id, n.Egress!)).ToList()).ConfigureAwait(false);
            }
            catch (IOException ex) when (pending.Count > 1)
            {
                // One sandbox's leftovers must not cost the others their network: one at a time.
                LogRestoreSeparately(ex.Message);
                foreach (var net in pending)
                {
                    try
                    {
                        await WriteRulesAsync([(net.Id, net.Egress!)]).ConfigureAwait(false);
                    }
                    catch (IOException one)
                    {
                        results[net.Id] = new RestoredNetwork(null, Unavailable(one));
                    }
                }
            }

            foreach (var net in pending)
            {
                var egress = net.Egress!;
                try
                {
                    if (results.TryGetValue(net.Id, out var failed))
                    {
                        throw failed.Error!;
                    }

                    StartDns(net.Id, egress);
                    results[net.Id] = new RestoredNetwork(egress.Gateway.ToString(), null);
                    LogApplied(net.Id, egress.Ifname, egress.Address.ToString(), egress.Config.Allow.Count, egress.Config.Deny.Count);
                }
                catch (Exception ex) when (ex is IOException or SocketException or AirlockException)
                {
                    results[net.Id] = new RestoredNetwork(null, ex is AirlockException ? ex : Unavailable(ex));
                    await TeardownAsync(net.Id, egress).ConfigureAwait(false);
                    net.Egress = null;
                }
            }
        }
        finally
        {
            foreach (var net in held)
            {
                net.Gate.Release();
            }
        }

        return results;
    }

    /// <summary>
    /// Marks as installed the adopted sandboxes whose chains the previous process left in the table,
    /// so that a transaction before phase 2 (a sandbox that dies meanwhile is removed) keeps their
    /// dispatch instead of dropping it, and does not delete the table under them.
    /// </summary>
    private async Task MarkInstalledAsync(List<SandboxNet> nets, CancellationToken cancellationToken)
    {
        await _nftLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var (code, listing) = await HostCommand.RunAsync("nft", ["list", "table", "inet", _table], cancellationToken: cancellationToken).ConfigureAwait(false);
            if (code != 0)
            {
                return; // No table: nothing is installed.
            }

            var chains = ChainRegex().Matches(listing).Select(m => m.Value).ToHashSet(StringComparer.Ordinal);
            foreach (var net in nets)
            {
                net.Egress!.Installed = new[] { "in", "out", "back" }.All(c => chains.Contains($"chain {c}_{net.Id} {{"));
            }
        }
        finally
        {
            _nftLock.Release();
        }
    }

    private static AirlockException Unavailable(Exception ex) =>
        new("network_unavailable", 503, $"the sandbox network could not be set up: {ex.Message}");

    /// <summary>Starts the sandbox's DNS forwarder, or points a running one at the current rules.</summary>
    private void StartDns(string id, Egress egress)
    {
        var config = egress.Config;
        var allowRules = config.AllowRules;
        var denyRules = config.DenyRules;
        var hasDomains = allowRules.Any(r => r.Domain is not null);
        Func<string, bool> refuse = name => config.IsAllowList && hasDomains && !allowRules.Any(r => r.MatchesName(name));
        Func<string, IReadOnlyList<(IPAddress, int)>, Task> answered = (name, addresses) => FollowNameAsync(id, egress, name, addresses, allowRules, denyRules);
        if (egress.Dns is null)
        {
            egress.Dns = new DnsForwarder(egress.Gateway, _upstreams, refuse, answered);
        }
        else
        {
            egress.Dns.Refuse = refuse;
            egress.Dns.Answered = answered;
        }
    }

    public async Task RemoveAsync(string sandboxId, CancellationToken cancellationToken = default)
    {
        if (!_nets.TryRemove(sandboxId, out var net))
        {
            return;
        }

        await net.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (net.Egress is { } egress)
            {
                await TeardownAsync(net.Id, egress).ConfigureAwait(false);
                net.Egress = null;
            }
        }
        finally
        {
            net.Gate.Release();
            net.Netns.Dispose();
        }
    }

    public async Task SweepAsync(IReadOnlySet<string> liveIds, CancellationToken cancellationToken = default)
    {
        var (code, listing) = await HostCommand.RunAsync("nft", ["list", "table", "inet", _table], cancellationToken: cancellationToken).ConfigureAwait(false);
        if (code != 0)
        {
            return; // No table: nothing of ours exists.
        }

        var stale = ChainRegex().Matches(listing).Select(m => m.Groups[1].Value).Distinct()
            .Where(id => !liveIds.Contains(id) && !_nets.ContainsKey(id)).ToList();
        if (stale.Count == 0)
        {
            return;
        }

        var links = (await HostCommand.RunAsync("ip", ["-o", "link", "show"], cancellationToken: cancellationToken).ConfigureAwait(false)).Output;
        foreach (var id in stale)
        {
            LogSweep(id);
            await RemoveRulesAsync(id, null).ConfigureAwait(false);
            // Host ends of its veths, if its netns is somehow still alive.
            foreach (Match m in LinkRegex().Matches(links))
            {
                if (m.Groups[1].Value.StartsWith("al" + id[..Math.Min(10, id.Length)], StringComparison.Ordinal))
                {
                    await HostCommand.RunAsync("ip", ["link", "del", m.Groups[1].Value], cancellationToken: CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>The host's interfaces with an IPv4 /30 (what a sandbox's host end carries): name → address.</summary>
    private static Dictionary<string, IPAddress> ListVeths()
    {
        var result = new Dictionary<string, IPAddress>(StringComparer.Ordinal);
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            foreach (var a in nic.GetIPProperties().UnicastAddresses)
            {
                if (a.Address.AddressFamily == AddressFamily.InterNetwork && a.PrefixLength == 30)
                {
                    result.TryAdd(nic.Name, a.Address);
                }
            }
        }

        return result;
    }

    /// <summary>The sandbox's veth if one exists already (made before a restart), with its addresses.</summary>
    private Egress? FindEgress(SandboxNet net, Dictionary<string, IPAddress> veths)
    {
        var prefix = "al" + net.Id[..Math.Min(10, net.Id.Length)];
        foreach (var (ifname, gateway) in veths)
        {
            if (ifname.StartsWith(prefix, StringComparison.Ordinal) && ifname.Length == prefix.Length + 2
                && int.TryParse(ifname.AsSpan(prefix.Length), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var generation))
            {
                EnsureForwardingStatic();
                net.Generation = generation;
                return new Egress(ifname, gateway, FromUInt(ToUInt(gateway) + 1), _time);
            }
        }

        return null;
    }

    private async Task<Egress> CreateEgressAsync(SandboxNet net, CancellationToken cancellationToken)
    {
        EnsureForwarding();
        net.Generation++;
        // Never the name of an interface the kernel may still be deleting: a new generation each time.
        var ifname = "al" + net.Id[..Math.Min(10, net.Id.Length)] + (net.Generation % 256).ToString("x2", CultureInfo.InvariantCulture);
        await using (await HostLock.AcquireAsync(cancellationToken).ConfigureAwait(false))
        {
            var (gateway, address) = AllocateSubnet();
            var egress = new Egress(ifname, gateway, address, _time);
            try
            {
                await HostCommand.RequireAsync("ip", ["-batch", "-"], $"""
                    link add {ifname} type veth peer name eth0 netns {net.InitPid}
                    addr add {gateway}/30 dev {ifname}
                    link set {ifname} up
                    """, cancellationToken).ConfigureAwait(false);
                await HostCommand.RequireAsync("nsenter", ["-t", net.InitPid.ToString(CultureInfo.InvariantCulture), "-n", "ip", "-batch", "-"], $"""
                    addr add {address}/30 dev eth0
                    link set eth0 up
                    route add default via {gateway}
                    """, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await HostCommand.RunAsync("ip", ["link", "del", ifname], cancellationToken: CancellationToken.None).ConfigureAwait(false);
                throw;
            }

            return egress;
        }
    }

    private async Task TeardownAsync(string id, Egress egress)
    {
        if (egress.Dns is { } dns)
        {
            await dns.DisposeAsync().ConfigureAwait(false);
            egress.Dns = null;
        }

        await RemoveRulesAsync(id, egress).ConfigureAwait(false);
        // The pair goes with the sandbox's netns anyway; deleting it now frees the address at once.
        await HostCommand.RunAsync("ip", ["link", "del", egress.Ifname], cancellationToken: CancellationToken.None).ConfigureAwait(false);
        LogRemoved(id, egress.Ifname);
    }

    /// <summary>
    /// The dispatch from the base chains to every installed internet sandbox's chains (plus those the
    /// same transaction writes), regenerated whole. Called under <c>_nftLock</c>.
    /// </summary>
    private string BaseChains(IReadOnlyCollection<Egress> writing, string? without)
    {
        var s = new StringBuilder();
        s.AppendLine(CultureInfo.InvariantCulture, $"add table inet {_table}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add chain inet {_table} input {{ type filter hook input priority -1 ; policy accept ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add chain inet {_table} forward {{ type filter hook forward priority -1 ; policy accept ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add chain inet {_table} postrouting {{ type nat hook postrouting priority 100 ; policy accept ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"flush chain inet {_table} input");
        s.AppendLine(CultureInfo.InvariantCulture, $"flush chain inet {_table} forward");
        s.AppendLine(CultureInfo.InvariantCulture, $"flush chain inet {_table} postrouting");
        foreach (var net in _nets.Values)
        {
            if (net.Egress is { } e && net.Id != without && (e.Installed || writing.Contains(e)))
            {
                s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {_table} input iifname \"{e.Ifname}\" jump in_{net.Id}");
                s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {_table} forward iifname \"{e.Ifname}\" jump out_{net.Id}");
                s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {_table} forward oifname \"{e.Ifname}\" jump back_{net.Id}");
                s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {_table} postrouting ip saddr {e.Address} oifname != \"{e.Ifname}\" masquerade");
            }
        }

        return s.ToString();
    }

    /// <summary>Writes the sandboxes' chains and sets and the base chains' dispatch, in one transaction.</summary>
    private async Task WriteRulesAsync(IReadOnlyList<(string Id, Egress Egress)> sandboxes)
    {
        if (sandboxes.Count == 0)
        {
            return;
        }

        var s = new StringBuilder();
        foreach (var (id, egress) in sandboxes)
        {
            AppendRules(s, id, egress);
        }

        var writing = sandboxes.Select(x => x.Egress).ToList();
        await _nftLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await HostCommand.RequireAsync("nft", ["-f", "-"], s + BaseChains(writing, without: null)).ConfigureAwait(false);
            foreach (var egress in writing)
            {
                egress.Installed = true;
                // The transaction flushed its sets.
                egress.Followed.Clear();
            }
        }
        finally
        {
            _nftLock.Release();
        }
    }

    private void AppendRules(StringBuilder s, string id, Egress egress)
    {
        var t = _table;
        var config = egress.Config;
        s.AppendLine(CultureInfo.InvariantCulture, $"add table inet {t}");
        foreach (var chain in new[] { "in", "out", "back" })
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"add chain inet {t} {chain}_{id}");
            s.AppendLine(CultureInfo.InvariantCulture, $"flush chain inet {t} {chain}_{id}");
        }

        // Addresses names resolved to, filled by the DNS forwarder with the answers' TTLs.
        s.AppendLine(CultureInfo.InvariantCulture, $"add set inet {t} dns_{id} {{ type ipv4_addr ; flags timeout ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add set inet {t} dnsp_{id} {{ type ipv4_addr . inet_service ; flags timeout ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add set inet {t} dnsd_{id} {{ type ipv4_addr ; flags timeout ; }}");
        foreach (var set in new[] { "dns", "dnsp", "dnsd" })
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"flush set inet {t} {set}_{id}");
        }

        // To the host itself (any of its addresses, any service, the API): only this sandbox's DNS forwarder.
        s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {t} in_{id} ip daddr {egress.Gateway} udp dport 53 accept");
        s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {t} in_{id} drop");

        // Forwarded egress, in order: never-reachable, allow, deny, default.
        var o = $"add rule inet {t} out_{id}";
        s.AppendLine(CultureInfo.InvariantCulture, $"{o} meta nfproto ipv6 drop");
        s.AppendLine(CultureInfo.InvariantCulture, $"{o} ip daddr {{ 169.254.169.254, 127.0.0.0/8, 0.0.0.0/8, {_pool} }} drop");
        foreach (var rule in config.AllowRules)
        {
            AppendAddressRule(s, o, rule, "accept");
        }

        s.AppendLine(CultureInfo.InvariantCulture, $"{o} ip daddr @dns_{id} accept");
        s.AppendLine(CultureInfo.InvariantCulture, $"{o} ip daddr . tcp dport @dnsp_{id} accept");
        s.AppendLine(CultureInfo.InvariantCulture, $"{o} ip daddr . udp dport @dnsp_{id} accept");
        foreach (var rule in config.DenyRules)
        {
            AppendAddressRule(s, o, rule, "drop");
        }

        s.AppendLine(CultureInfo.InvariantCulture, $"{o} ip daddr @dnsd_{id} drop");
        if (config.IsAllowList)
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"{o} drop");
        }
        else
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"{o} ip daddr {{ {PrivateRanges} }} drop");
            s.AppendLine(CultureInfo.InvariantCulture, $"{o} accept");
        }

        // Forwarded ingress: replies to what the sandbox opened, nothing else.
        s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {t} back_{id} ct state established,related accept");
        s.AppendLine(CultureInfo.InvariantCulture, $"add rule inet {t} back_{id} drop");
    }

    private static void AppendAddressRule(StringBuilder s, string prefix, NetworkRule rule, string verdict)
    {
        if (rule.Prefix is not { } p || p.BaseAddress.AddressFamily != AddressFamily.InterNetwork)
        {
            return; // Domains go through the DNS sets; IPv6 rules are refused by NetworkConfig.Validate.
        }

        if (rule.Port is { } port)
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"{prefix} ip daddr {p} tcp dport {port} {verdict}");
            s.AppendLine(CultureInfo.InvariantCulture, $"{prefix} ip daddr {p} udp dport {port} {verdict}");
        }
        else
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"{prefix} ip daddr {p} {verdict}");
        }
    }

    /// <summary>Removes a sandbox's chains and sets (add-then-delete: no error when one is already gone).</summary>
    private async Task RemoveRulesAsync(string id, Egress? egress)
    {
        var t = _table;
        var s = new StringBuilder();
        foreach (var chain in new[] { "in", "out", "back" })
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"add chain inet {t} {chain}_{id}");
            s.AppendLine(CultureInfo.InvariantCulture, $"delete chain inet {t} {chain}_{id}");
        }

        s.AppendLine(CultureInfo.InvariantCulture, $"add set inet {t} dns_{id} {{ type ipv4_addr ; flags timeout ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add set inet {t} dnsp_{id} {{ type ipv4_addr . inet_service ; flags timeout ; }}");
        s.AppendLine(CultureInfo.InvariantCulture, $"add set inet {t} dnsd_{id} {{ type ipv4_addr ; flags timeout ; }}");
        foreach (var set in new[] { "dns", "dnsp", "dnsd" })
        {
            s.AppendLine(CultureInfo.InvariantCulture, $"delete set inet {t} {set}_{id}");
        }

        await _nftLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (egress is not null)
            {
                // From now on no other sandbox's transaction names its chains.
                egress.Installed = false;
            }

            // The last internet sandbox gone: the table goes too (a server leaves nothing behind).
            // One whose first transaction is still to come writes the table again.
            var script = _nets.Values.Any(n => n.Egress is { Installed: true } && n.Id != id)
                ? BaseChains([], without: id) + s
                : $"add table inet {t}\ndelete table inet {t}\n";
            var (code, output) = await HostCommand.RunAsync("nft", ["-f", "-"], script).ConfigureAwait(false);
            if (code != 0)
            {
                LogRemoveFailed(id, output.Trim());
            }
        }
        finally
        {
            _nftLock.Release();
        }
    }

    /// <summary>
    /// A DNS answer for a name some domain rule covers: its addresses join the sandbox's sets for
    /// their TTL. Elements that are still in a set for more than <see cref="FollowedAddresses.RefreshMargin"/>
    /// cost nothing, so a busy resolver does not run nft (under the server-wide lock) per answer.
    /// </summary>
    private async Task FollowNameAsync(string id, Egress egress, string name, IReadOnlyList<(IPAddress Address, int Ttl)> addresses, IReadOnlyList<NetworkRule> allow, IReadOnlyList<NetworkRule> deny)
    {
        var elements = new List<FollowedAddresses.Element>();
        foreach (var (address, ttl) in addresses)
        {
            // At least a minute: a client may connect a little after its resolver's cache says so.
            var timeout = TimeSpan.FromSeconds(Math.Max(ttl, 60));
            foreach (var rule in allow.Where(r => r.MatchesName(name)))
            {
                elements.Add(rule.Port is { } port
                    ? new($"dnsp_{id}", string.Create(CultureInfo.InvariantCulture, $"{address} . {port}"), timeout)
                    : new($"dns_{id}", address.ToString(), timeout));
            }

            if (deny.Any(r => r.MatchesName(name)))
            {
                elements.Add(new($"dnsd_{id}", address.ToString(), timeout));
            }
        }

        var due = egress.Followed.Due(elements);
        if (due.Count == 0)
        {
            return;
        }

        await _nftLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!egress.Installed)
            {
                return; // Torn down meanwhile: its sets are gone.
            }

            // "add" leaves an existing element's timeout as it was: add (so it exists), delete, add
            // again with the new timeout, all in one transaction (no moment without it).
            var s = new StringBuilder();
            foreach (var e in due)
            {
                var timeout = (long)e.Timeout.TotalSeconds;
                s.AppendLine(CultureInfo.InvariantCulture, $"add element inet {_table} {e.Set} {{ {e.Value} timeout {timeout}s }}");
                s.AppendLine(CultureInfo.InvariantCulture, $"delete element inet {_table} {e.Set} {{ {e.Value} }}");
                s.AppendLine(CultureInfo.InvariantCulture, $"add element inet {_table} {e.Set} {{ {e.Value} timeout {timeout}s }}");
            }

            var (code, output) = await HostCommand.RunAsync("nft", ["-f", "-"], s.ToString()).ConfigureAwait(false);
            if (code != 0)
            {
                LogRemoveFailed(id, output.Trim());
                return;
            }

            egress.Followed.Written(due);
        }
        finally
        {
            _nftLock.Release();
        }
    }

    /// <summary>
    /// The first /30 of the pool that no kernel address or route touches (other Airlock servers on
    /// this host allocate from the same pool under the same host-wide lock, and their addresses are
    /// on the host by the time the lock is released).
    /// </summary>
    private (IPAddress Gateway, IPAddress Address) AllocateSubnet()
    {
        var used = new List<IPNetwork>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            foreach (var a in nic.GetIPProperties().UnicastAddresses)
            {
                if (a.Address.AddressFamily == AddressFamily.InterNetwork)
                {
                    used.Add(new IPNetwork(a.Address, 32));
                }
            }
        }

        foreach (var line in File.ReadLines("/proc/net/route").Skip(1))
        {
            var f = line.Split('\t', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 8 && uint.TryParse(f[7], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var mask) && mask != 0
                && uint.TryParse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var dest))
            {
                used.Add(new IPNetwork(new IPAddress(dest), System.Numerics.BitOperations.PopCount(mask)));
            }
        }

        var baseValue = ToUInt(_pool.BaseAddress);
        var count = 1u << (32 - _pool.PrefixLength - 2);
        for (var i = 1u; i < count; i++)
        {
            var candidate = new IPNetwork(FromUInt(baseValue + (i << 2)), 30);
            if (!used.Any(u => Overlaps(u, candidate)))
            {
                return (FromUInt(baseValue + (i << 2) + 1), FromUInt(baseValue + (i << 2) + 2));
            }
        }

        throw new IOException($"no free /30 left in {_pool} (Airlock:Network:SubnetPool)");
    }

    private static bool Overlaps(IPNetwork a, IPNetwork b) => a.Contains(b.BaseAddress) || b.Contains(a.BaseAddress);

    private static uint ToUInt(IPAddress a) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(a.GetAddressBytes());

    private static IPAddress FromUInt(uint v)
    {
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, v);
        return new IPAddress(bytes);
    }

    /// <summary>Internet mode routes through the host: IPv4 forwarding must be on (turned on once, never off: other servers may rely on it).</summary>
    private void EnsureForwarding()
    {
        if (Interlocked.Exchange(ref _forwardingChecked, 1) == 0 && EnsureForwardingStatic())
        {
            LogForwarding();
        }
    }

    /// <summary>True when it had to turn forwarding on.</summary>
    private static bool EnsureForwardingStatic()
    {
        const string path = "/proc/sys/net/ipv4/ip_forward";
        if (File.ReadAllText(path).Trim() == "1")
        {
            return false;
        }

        File.WriteAllText(path, "1");
        return true;
    }

    private static long ReadCounter(string ifname, string counter)
    {
        try
        {
            return long.Parse(File.ReadAllText($"/sys/class/net/{ifname}/statistics/{counter}").Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static List<string> ReadResolvConf()
    {
        try
        {
            return File.ReadLines("/etc/resolv.conf")
                .Select(l => l.Trim().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f.Length >= 2 && f[0] == "nameserver")
                .Select(f => f[1])
                .ToList();
        }
        catch (IOException)
        {
            return [];
        }
    }

    private static IPEndPoint ParseEndpoint(string text) =>
        IPEndPoint.TryParse(text, out var endpoint)
            ? (endpoint.Port == 0 ? new IPEndPoint(endpoint.Address, 53) : endpoint)
            : throw new InvalidOperationException($"Airlock:Network:DnsServers: \"{text}\" is not an address or address:port");

    /// <summary>A host-wide lock (flock on a file in /run) shared by every Airlock server on this machine.</summary>
    private static class HostLock
    {
        public static async Task<FileStream> AcquireAsync(CancellationToken cancellationToken)
        {
            for (var i = 0; ; i++)
            {
                try
                {
                    // FileShare.None takes an exclusive flock on Unix.
                    return new FileStream(HostLockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                }
                catch (IOException) when (i < 2000)
                {
                    await Task.Delay(5, cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    [GeneratedRegex(@"chain (?:in|out|back)_([a-z0-9]+) \{")]
    private static partial Regex ChainRegex();

    [GeneratedRegex(@"^\d+: ([^:@]+)[:@]", RegexOptions.Multiline)]
    private static partial Regex LinkRegex();

    [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "sandbox {Id}: internet via {Ifname}, address {Address}, {Allow} allow and {Deny} deny rules")]
    private partial void LogApplied(string id, string ifname, string address, int allow, int deny);

    [LoggerMessage(EventId = 701, Level = LogLevel.Information, Message = "sandbox {Id}: network {Ifname} removed")]
    private partial void LogRemoved(string id, string ifname);

    [LoggerMessage(EventId = 702, Level = LogLevel.Warning, Message = "sandbox {Id}: nft change failed: {Output}")]
    private partial void LogRemoveFailed(string id, string output);

    [LoggerMessage(EventId = 703, Level = LogLevel.Information, Message = "sweeping network rules of unknown sandbox {Id}")]
    private partial void LogSweep(string id);

    [LoggerMessage(EventId = 704, Level = LogLevel.Warning, Message = "IPv4 forwarding was off; turned it on for internet mode (net.ipv4.ip_forward=1)")]
    private partial void LogForwarding();

    [LoggerMessage(EventId = 705, Level = LogLevel.Warning, Message = "recovery: restoring the sandboxes' network rules together failed ({Output}); restoring them one at a time")]
    private partial void LogRestoreSeparately(string output);
}
