using Airlock.Core.Tests.Tenancy;
using Airlock.Runtime.Linux.Network;

namespace Airlock.Core.Tests.Network;

public sealed class FollowedAddressesTests
{
    private static readonly FollowedAddresses.Element s_one = new("dns_x", "198.51.100.1", TimeSpan.FromSeconds(60));
    private static readonly FollowedAddresses.Element s_port = new("dnsp_x", "198.51.100.1 . 443", TimeSpan.FromSeconds(60));

    [Fact]
    public void Due_RepeatedAnswer_NothingToWriteUntilTheMargin()
    {
        var time = new ManualTime(DateTimeOffset.UnixEpoch);
        var followed = new FollowedAddresses(time);
        Assert.Equal([s_one, s_port], followed.Due([s_one, s_port, s_one]));
        followed.Written([s_one, s_port]);

        // The same answer again, while the elements have more than 30 s left: no nft run.
        Assert.Empty(followed.Due([s_one, s_port]));
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Empty(followed.Due([s_one]));

        // Within the margin of their expiry: written again (with a fresh timeout).
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal([s_one], followed.Due([s_one]));
        followed.Written([s_one]);
        Assert.Empty(followed.Due([s_one]));
        Assert.Equal([s_port], followed.Due([s_one, s_port]));
    }

    [Fact]
    public void Clear_SetsFlushed_EverythingIsDueAgain()
    {
        var followed = new FollowedAddresses(new ManualTime(DateTimeOffset.UnixEpoch));
        followed.Written([s_one]);
        followed.Clear();
        Assert.Equal([s_one], followed.Due([s_one]));
    }
}
