using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Airlock.Runtime.Linux.Network;

namespace Airlock.Core.Tests.Network;

public sealed class DnsForwarderTests
{
    [Fact]
    public async Task Loop_QueryFlood_AtMostMaxInFlightReachUpstream()
    {
        // An upstream that never answers: every forwarded query stays in flight for its 3 s timeout.
        using var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        upstream.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using var forwarder = new DnsForwarder(IPAddress.Loopback, [(IPEndPoint)upstream.LocalEndPoint!], _ => false, (_, _) => Task.CompletedTask, port: 0);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        const int sent = 300;
        for (var i = 0; i < sent; i++)
        {
            await client.SendToAsync(Query((ushort)i, "flood.example.com"), forwarder.LocalEndPoint, TestContext.Current.CancellationToken);
        }

        var seen = new HashSet<ushort>();
        var buffer = new byte[512];
        using var quiet = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        quiet.CancelAfter(TimeSpan.FromSeconds(1.5));
        try
        {
            while (true)
            {
                var n = await upstream.ReceiveAsync(buffer, quiet.Token);
                seen.Add(BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(0, n)));
            }
        }
        catch (OperationCanceledException) when (!TestContext.Current.CancellationToken.IsCancellationRequested)
        {
        }

        Assert.InRange(seen.Count, 1, DnsForwarder.MaxInFlight);
    }

    private static byte[] Query(ushort id, string name)
    {
        var message = new List<byte>();
        message.AddRange([(byte)(id >> 8), (byte)id, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        foreach (var label in name.Split('.'))
        {
            message.Add((byte)label.Length);
            message.AddRange(System.Text.Encoding.ASCII.GetBytes(label));
        }

        message.AddRange([0, 0, 1, 0, 1]);
        return [.. message];
    }
}
