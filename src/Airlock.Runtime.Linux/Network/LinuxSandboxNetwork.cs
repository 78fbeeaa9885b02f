using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Win32.SafeHandles;

namespace Airlock.Runtime.Linux.Network;

/// <summary>
/// Sandbox networking on Linux (docs/networking.md): connections into a sandbox's network namespace
/// for port exposure, and (internet mode) a veth pair, nftables rules and a DNS forwarder per sandbox.
/// </summary>
internal sealed partial class LinuxSandboxNetwork : ISandboxNetwork, IDisposable
{
    private readonly NetnsSockets _sockets = new();
    private readonly ConcurrentDictionary<string, SandboxNet> _nets = new(StringComparer.Ordinal);
    private readonly ILogger<LinuxSandboxNetwork> _logger;
    private readonly RuntimeOptions _runtimeOptions;
    private readonly NetworkOptions _options;
    private readonly TimeProvider _time;

    public LinuxSandboxNetwork(IOptions<RuntimeOptions> runtimeOptions, IOptions<NetworkOptions> options, TimeProvider time, ILogger<LinuxSandboxNetwork> logger)
    {
        _runtimeOptions = runtimeOptions.Value;
        _options = options.Value;
        _time = time;
        _logger = logger;
        InitEgress();
    }

    /// <summary>What this server keeps per live sandbox: its netns fd, counters, and internet-mode state.</summary>
    private sealed class SandboxNet(string id, int initPid, long initStartTime, SafeFileHandle netns)
    {
        public string Id { get; } = id;

        public int InitPid { get; } = initPid;

        public long InitStartTime { get; } = initStartTime;

        public SafeFileHandle Netns { get; } = netns;

        public TrafficCounters Counters { get; } = new();

        public SemaphoreSlim Gate { get; } = new(1, 1);

        public Egress? Egress { get; set; }

        /// <summary>Counts veth pairs made for this sandbox, so a new pair never takes a name still being deleted.</summary>
        public int Generation { get; set; }
    }

    public async ValueTask<Stream?> ConnectAsync(SandboxRecord record, int port, CancellationToken cancellationToken = default)
    {
        var net = GetNet(record);
        // The sandbox's own loopback: a dev server bound to 127.0.0.1, ::1 or 0.0.0.0 all answer here.
        foreach (var address in new[] { IPAddress.Loopback, IPAddress.IPv6Loopback })
        {
            var socket = await _sockets.CreateAsync(net.Netns, address.AddressFamily).ConfigureAwait(false);
            try
            {
                socket.NoDelay = true;
                await socket.ConnectAsync(new IPEndPoint(address, port), cancellationToken).ConfigureAwait(false);
                return new CountingStream(new NetworkStream(socket, ownsSocket: true), net.Counters);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported or SocketError.NetworkUnreachable)
            {
                socket.Dispose();
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        return null;
    }

    public NetworkUsage GetUsage(SandboxRecord record)
    {
        if (!_nets.TryGetValue(record.Id, out var net))
        {
            return default;
        }

        var (sent, received) = net.Egress is { } egress ? EgressCounters(egress) : (0, 0);
        return new NetworkUsage(sent, received, net.Counters.ProxySent, net.Counters.ProxyReceived);
    }

    /// <summary>The sandbox's netns, opened once and checked against the record's init (pid reuse).</summary>
    private SandboxNet GetNet(SandboxRecord record)
    {
        if (_nets.TryGetValue(record.Id, out var net) && net.InitPid == record.InitPid && net.InitStartTime == record.InitStartTime)
        {
            return net;
        }

        var handle = OpenSandboxNetns(record);
        var fresh = new SandboxNet(record.Id, record.InitPid, record.InitStartTime, handle);
        net = _nets.AddOrUpdate(record.Id, fresh, (_, old) => old.InitPid == fresh.InitPid && old.InitStartTime == fresh.InitStartTime ? old : fresh);
        if (!ReferenceEquals(net, fresh))
        {
            handle.Dispose();
        }

        return net;
    }

    /// <summary>
    /// The init's network namespace. The init makes it just after it has reported ready
    /// (docs/init-protocol.md, step 8); until then <c>/proc/&lt;init&gt;/ns/net</c> is the host's own,
    /// which must never be configured or connected from: wait the moment out.
    /// </summary>
    private static SafeFileHandle OpenSandboxNetns(SandboxRecord record)
    {
        var deadline = Environment.TickCount64 + 5000;
        while (true)
        {
            SafeFileHandle handle;
            try
            {
                handle = File.OpenHandle($"/proc/{record.InitPid}/ns/net", FileMode.Open, FileAccess.Read);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new Core.AirlockException("sandbox_not_found", 502, $"sandbox '{record.Id}' has no network: {ex.Message}");
            }

            if (LinuxSandboxRuntime.ReadStartTime(record.InitPid) != record.InitStartTime)
            {
                handle.Dispose();
                throw new Core.AirlockException("sandbox_not_found", 502, $"sandbox '{record.Id}' is gone");
            }

            if (Inode(handle) != s_hostNetns.Value)
            {
                return handle;
            }

            handle.Dispose();
            if (Environment.TickCount64 > deadline)
            {
                throw new Core.AirlockException("sandbox_not_ready", 503, $"sandbox '{record.Id}' has not made its network namespace");
            }

            Thread.Sleep(1);
        }
    }

    private static readonly Lazy<ulong> s_hostNetns = new(() =>
    {
        using var own = File.OpenHandle("/proc/self/ns/net", FileMode.Open, FileAccess.Read);
        return Inode(own);
    });

    private static unsafe ulong Inode(SafeFileHandle handle)
    {
        Interop.Libc.Statx st;
        if (Interop.Libc.statx((int)handle.DangerousGetHandle(), "", 0x1000 /* AT_EMPTY_PATH */, 0x100 /* STATX_INO */, &st) != 0)
        {
            throw new IOException($"statx of a network namespace: {Interop.Libc.StrError(Interop.Libc.Errno)}");
        }

        return st.Ino;
    }

    public void Dispose()
    {
        _sockets.Dispose();
        DisposeEgress();
    }
}
