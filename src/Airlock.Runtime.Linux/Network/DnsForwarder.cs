using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Airlock.Runtime.Linux.Network;

/// <summary>
/// A sandbox's DNS server: UDP on its gateway address (port 53), which the firewall lets only that
/// sandbox reach. It forwards each query to the upstream servers and tells its owner what names
/// resolved to (<see cref="Answered"/>), so domain rules can follow them into the nft sets. In an
/// allow-list, names no domain rule covers are refused (no answers to exfiltrate through).
/// </summary>
internal sealed class DnsForwarder : IAsyncDisposable
{
    /// <summary>
    /// Queries answered at once; beyond it packets are dropped (the sandbox's resolver retries), so
    /// a flood costs the server at most this many tasks, upstream sockets and nft runs per sandbox.
    /// </summary>
    internal const int MaxInFlight = 64;

    private readonly Socket _socket;
    private readonly IReadOnlyList<IPEndPoint> _upstreams;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _inFlight;

    public DnsForwarder(IPAddress address, IReadOnlyList<IPEndPoint> upstreams, Func<string, bool> refuse, Func<string, IReadOnlyList<(IPAddress Address, int Ttl)>, Task> answered, int port = 53)
    {
        _upstreams = upstreams;
        Refuse = refuse;
        Answered = answered;
        _socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        _socket.Bind(new IPEndPoint(address, port));
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Whether a (lower-case) name must be answered REFUSED; swapped when the rules change.</summary>
    public Func<string, bool> Refuse { get; set; }

    public Func<string, IReadOnlyList<(IPAddress Address, int Ttl)>, Task> Answered { get; set; }

    internal IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    private async Task LoopAsync()
    {
        var buffer = new byte[4096];
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await _socket.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0), _stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            if (Interlocked.Increment(ref _inFlight) > MaxInFlight)
            {
                Interlocked.Decrement(ref _inFlight);
                continue;
            }

            var query = buffer.AsSpan(0, received.ReceivedBytes).ToArray();
            _ = Task.Run(() => AnswerAsync(query, received.RemoteEndPoint));
        }
    }

    private async Task AnswerAsync(byte[] query, EndPoint client)
    {
        try
        {
            if (query.Length < 12 || ReadQuestion(query, 12, out _) is not { } name)
            {
                return;
            }

            byte[]? response = null;
            if (Refuse(name))
            {
                response = Refused(query);
            }
            else
            {
                foreach (var upstream in _upstreams)
                {
                    response = await AskAsync(upstream, query).ConfigureAwait(false);
                    if (response is not null)
                    {
                        break;
                    }
                }

                if (response is not null)
                {
                    var addresses = ReadAnswers(response);
                    if (addresses.Count > 0)
                    {
                        // Before the sandbox sees the answer: its first connection must already pass.
                        await Answered(name, addresses).ConfigureAwait(false);
                    }
                }
            }

            if (response is not null)
            {
                await _socket.SendToAsync(response, client, _stop.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException or IOException or ArgumentOutOfRangeException or IndexOutOfRangeException)
        {
            // A malformed packet or an unreachable upstream: the sandbox's resolver retries.
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task<byte[]?> AskAsync(IPEndPoint upstream, byte[] query)
    {
        using var socket = new Socket(upstream.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(3));
        try
        {
            await socket.ConnectAsync(upstream, timeout.Token).ConfigureAwait(false);
            await socket.SendAsync(query, timeout.Token).ConfigureAwait(false);
            var buffer = new byte[4096];
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, timeout.Token).ConfigureAwait(false);
                // Same transaction id, or it is not our answer.
                if (n >= 12 && buffer[0] == query[0] && buffer[1] == query[1])
                {
                    return buffer.AsSpan(0, n).ToArray();
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException)
        {
            return null;
        }
    }

    private static byte[] Refused(byte[] query)
    {
        var response = query.ToArray();
        response[2] = (byte)(0x80 | (query[2] & 0x79)); // QR=1, keep opcode and RD
        response[3] = 0x80 | 5; // RA, RCODE=REFUSED
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(6), 0);
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(8), 0);
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(10), 0);
        return response;
    }

    /// <summary>The A records of an answer with their TTLs (CNAME chains are followed by the resolver, not here).</summary>
    internal static List<(IPAddress Address, int Ttl)> ReadAnswers(byte[] message)
    {
        var result = new List<(IPAddress, int)>();
        var questions = BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(4));
        var answers = BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(6));
        var offset = 12;
        for (var i = 0; i < questions; i++)
        {
            offset = SkipName(message, offset) + 4;
        }

        for (var i = 0; i < answers; i++)
        {
            offset = SkipName(message, offset);
            var type = BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(offset));
            var ttl = BinaryPrimitives.ReadInt32BigEndian(message.AsSpan(offset + 4));
            var length = BinaryPrimitives.ReadUInt16BigEndian(message.AsSpan(offset + 8));
            offset += 10;
            if (type == 1 && length == 4)
            {
                result.Add((new IPAddress(message.AsSpan(offset, 4)), Math.Max(ttl, 0)));
            }

            offset += length;
        }

        return result;
    }

    /// <summary>The first question's name, lower-case without the trailing dot; null when malformed.</summary>
    internal static string? ReadQuestion(byte[] message, int offset, out int end)
    {
        var name = new StringBuilder();
        end = offset;
        while (offset < message.Length)
        {
            var length = message[offset];
            if (length == 0)
            {
                end = offset + 1;
                return name.ToString().ToLowerInvariant();
            }

            if (length > 63 || offset + 1 + length > message.Length)
            {
                return null;
            }

            if (name.Length > 0)
            {
                name.Append('.');
            }

            name.Append(Encoding.ASCII.GetString(message, offset + 1, length));
            offset += 1 + length;
        }

        return null;
    }

    private static int SkipName(byte[] message, int offset)
    {
        while (true)
        {
            var length = message[offset];
            if (length == 0)
            {
                return offset + 1;
            }

            if ((length & 0xc0) == 0xc0)
            {
                return offset + 2;
            }

            offset += 1 + length;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }
}
