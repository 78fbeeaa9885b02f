using Airlock.Core;
using Airlock.Core.Sandboxes;

namespace Airlock.Core.Tests.Network;

public sealed class NetworkConfigTests
{
    [Theory]
    [InlineData("10.0.0.0/8", "10.0.0.0/8", null, null)]
    [InlineData("1.2.3.4", "1.2.3.4/32", null, null)]
    [InlineData("1.2.3.4:443", "1.2.3.4/32", null, 443)]
    [InlineData("198.51.100.0/24:80", "198.51.100.0/24", null, 80)]
    [InlineData("[2001:db8::/32]:443", "2001:db8::/32", null, 443)]
    [InlineData("API.Example.com", null, "api.example.com", null)]
    [InlineData("*.example.com:8080", null, "*.example.com", 8080)]
    public void Parse_ValidRule_Parses(string text, string? prefix, string? domain, int? port)
    {
        var rule = NetworkRule.Parse(text);
        Assert.Equal(prefix, rule.Prefix?.ToString());
        Assert.Equal(domain, rule.Domain);
        Assert.Equal(port, rule.Port);
    }

    [Theory]
    [InlineData("not a rule!")]
    [InlineData("1.2.3.4:0")]
    [InlineData("1.2.3.4:70000")]
    [InlineData("-bad-.com")]
    [InlineData("")]
    public void Parse_InvalidRule_Throws(string text) =>
        Assert.Equal("invalid_argument", Assert.Throws<AirlockException>(() => NetworkRule.Parse(text)).Code);

    [Theory]
    [InlineData("2001:db8::/32")]
    [InlineData("[2001:db8::1]:443")]
    [InlineData("::/0")]
    public void Validate_Ipv6Rule_ThrowsInvalidArgument(string rule)
    {
        Assert.Equal("invalid_argument", Assert.Throws<AirlockException>(() => new NetworkConfig { Allow = [rule] }.Validate()).Code);
        Assert.Equal("invalid_argument", Assert.Throws<AirlockException>(() => new NetworkConfig { Deny = [rule] }.Validate()).Code);
        new NetworkConfig { Allow = ["198.51.100.0/24:443", "api.example.com"], Deny = ["0.0.0.0/0"] }.Validate();
    }

    [Fact]
    public void MatchesName_Wildcard_CoversSubdomainsAndApex()
    {
        var rule = NetworkRule.Parse("*.example.com");
        Assert.True(rule.MatchesName("a.example.com"));
        Assert.True(rule.MatchesName("example.com"));
        Assert.False(rule.MatchesName("badexample.com"));
        Assert.True(NetworkRule.Parse("example.com").MatchesName("example.com"));
        Assert.False(NetworkRule.Parse("example.com").MatchesName("a.example.com"));
    }

    [Fact]
    public void IsAllowList_OnlyWithoutDenyRules()
    {
        Assert.True(new NetworkConfig { Allow = ["1.2.3.4"] }.IsAllowList);
        Assert.False(new NetworkConfig { Allow = ["1.2.3.4"], Deny = ["0.0.0.0/0"] }.IsAllowList);
        Assert.False(new NetworkConfig().IsAllowList);
    }

    [Fact]
    public void ParseMode_Unknown_Throws()
    {
        Assert.Equal(NetworkMode.Internet, NetworkConfig.ParseMode("Internet"));
        Assert.Equal(NetworkMode.None, NetworkConfig.ParseMode(null));
        Assert.Throws<AirlockException>(() => NetworkConfig.ParseMode("satellite"));
    }
}
