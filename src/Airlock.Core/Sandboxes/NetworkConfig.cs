using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Airlock.Core.Sandboxes;

internal enum NetworkMode
{
    /// <summary>Loopback only (the default).</summary>
    None,

    /// <summary>A veth pair and NAT through the host, narrowed by the rules.</summary>
    Internet,
}

/// <summary>
/// A sandbox's network: its mode and egress rules (docs/networking.md). Evaluation for a packet
/// leaving the sandbox in <c>internet</c> mode: never-reachable addresses (host, other sandboxes,
/// metadata) are refused first; then an <see cref="Allow"/> match is admitted; then a
/// <see cref="Deny"/> match is refused; then, when <see cref="Allow"/> is non-empty and
/// <see cref="Deny"/> is empty, everything else is refused (an allow-list); else public addresses
/// are admitted and private ranges refused.
/// </summary>
internal sealed record NetworkConfig
{
    public static readonly NetworkConfig Default = new();

    public NetworkMode Mode { get; init; } = NetworkMode.None;

    /// <summary>Rules as given: CIDR or address, optional <c>:port</c>, or a domain name (<c>*.</c> prefix for subdomains).</summary>
    public IReadOnlyList<string> Allow { get; init; } = [];

    public IReadOnlyList<string> Deny { get; init; } = [];

    /// <summary>False: port exposure requires the sandbox's traffic access token (E2B <c>allowPublicTraffic</c>).</summary>
    public bool AllowPublicTraffic { get; init; } = true;

    [System.Text.Json.Serialization.JsonIgnore]
    public bool IsAllowList => Allow.Count > 0 && Deny.Count == 0;

    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<NetworkRule> AllowRules => Allow.Select(NetworkRule.Parse).ToList();

    [System.Text.Json.Serialization.JsonIgnore]
    public IReadOnlyList<NetworkRule> DenyRules => Deny.Select(NetworkRule.Parse).ToList();

    /// <summary>Throws <c>invalid_argument</c> naming the first bad rule (IPv6 ones included: no IPv6 egress exists to rule on).</summary>
    public void Validate()
    {
        if (Allow.Count + Deny.Count > 256)
        {
            throw AirlockException.Invalid("network: at most 256 rules");
        }

        foreach (var rule in Allow.Concat(Deny))
        {
            if (NetworkRule.Parse(rule).Prefix is { } prefix && prefix.BaseAddress.AddressFamily != AddressFamily.InterNetwork)
            {
                throw AirlockException.Invalid($"network rule \"{rule}\" is IPv6; sandboxes have IPv4 egress only (all IPv6 is refused)");
            }
        }
    }

    public static NetworkMode ParseMode(string? mode) => mode?.ToLowerInvariant() switch
    {
        null or "" or "none" => NetworkMode.None,
        "internet" => NetworkMode.Internet,
        _ => throw AirlockException.Invalid($"network.mode must be \"none\" or \"internet\", not \"{mode}\""),
    };
}

/// <summary>One parsed egress rule: an address prefix or a domain name, optionally one TCP/UDP port.</summary>
internal sealed partial record NetworkRule(IPNetwork? Prefix, string? Domain, int? Port)
{
    public static NetworkRule Parse(string text)
    {
        var s = text.Trim();
        int? port = null;
        // "[v6/len]:port", "v4/len:port", "name:port": a trailing :digits is a port unless the rest is bare IPv6.
        if (s.StartsWith('[') && s.IndexOf(']') is var close and > 0)
        {
            if (close + 1 < s.Length)
            {
                port = ParsePort(s[(close + 1)..].TrimStart(':'), text);
            }

            s = s[1..close];
        }
        else if (s.Count(c => c == ':') == 1)
        {
            var colon = s.IndexOf(':');
            port = ParsePort(s[(colon + 1)..], text);
            s = s[..colon];
        }

        if (IPNetwork.TryParse(s, out var prefix))
        {
            return new NetworkRule(prefix, null, port);
        }

        if (IPAddress.TryParse(s, out var address))
        {
            return new NetworkRule(new IPNetwork(address, address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128), null, port);
        }

        var name = s.ToLowerInvariant().TrimEnd('.');
        if (name.Length is > 0 and <= 253 && DomainRegex().IsMatch(name))
        {
            return new NetworkRule(null, name, port);
        }

        throw AirlockException.Invalid($"network rule \"{text}\" is not an address, a CIDR, a domain name or one of those with :port");
    }

    /// <summary>Whether a (lower-case, no trailing dot) DNS name is covered by this domain rule.</summary>
    public bool MatchesName(string name) =>
        Domain is { } d && (d.StartsWith("*.", StringComparison.Ordinal)
            ? name.EndsWith(d[1..], StringComparison.Ordinal) || name == d[2..]
            : name == d);

    private static int ParsePort(string s, string text) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is >= 1 and <= 65535
            ? p
            : throw AirlockException.Invalid($"network rule \"{text}\" has an invalid port");

    [GeneratedRegex(@"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")]
    private static partial Regex DomainRegex();
}
