using System.Buffers.Binary;
using System.Net.Sockets;
using Airlock.Runtime.Linux.Init;
using Airlock.Runtime.Linux.Reactor;
using BenchmarkDotNet.Attributes;

namespace Airlock.MicroBench;

/// <summary>
/// The SPAWN message of the init protocol. Its encoding is inline in InitClient.SpawnAsync (no
/// separate encoder to call), and InitClient only exists connected to a socket, so this measures
/// the whole client side of a spawn against a fake init on a real SOCK_SEQPACKET socket in this
/// process: encode, sendmsg, the reactor reading the reply, the continuation. The fake init answers
/// SPAWNED at once, so this is the server's share of a spawn's round trip, not a fork+exec.
/// No fds are attached (the real call attaches the child's 3 stdio fds with SCM_RIGHTS).
/// </summary>
[MemoryDiagnoser]
public class InitSpawnBenchmarks
{
    private static readonly string[] s_argv = ["/bin/bash", "-l", "-c", "echo hello"];

    private static readonly string[] s_env =
    [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/home/user",
        "USER=user",
        "LOGNAME=user",
        "SHELL=/bin/bash",
        "LANG=C.UTF-8",
        "TERM=xterm-256color",
        "E2B_SANDBOX=true",
    ];

    private string _dir = "";
    private Socket _listener = null!;
    private Thread _fakeInit = null!;
    private InitClient _client = null!;
    private OutputReactor _reactor = null!;

    [GlobalSetup]
    public void Setup()
    {
        _dir = Directory.CreateTempSubdirectory("airlock-microbench-").FullName;
        var path = Path.Combine(_dir, "ctl");
        _listener = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(1);
        _fakeInit = new Thread(Serve) { IsBackground = true, Name = "fake-init" };
        _fakeInit.Start();
        _reactor = new OutputReactor();
        _client = InitClient.Connect(path, _reactor, (_, _) => { });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _reactor.Dispose();
        _listener.Dispose();
        _fakeInit.Join(TimeSpan.FromSeconds(5));
        Directory.Delete(_dir, recursive: true);
    }

    [Benchmark]
    public Task<(int Err, int Pid, string Step)> SpawnRoundTrip() =>
        _client.SpawnAsync(1000, 1000, 0, "/home/user", s_argv, s_env, [], (_, _, _) => { });

    private void Serve()
    {
        try
        {
            using var connection = _listener.Accept();
            var buffer = new byte[256 * 1024];
            var reply = new byte[16];
            while (true)
            {
                var n = connection.Receive(buffer);
                if (n <= 0)
                {
                    return;
                }

                // [type][seq] -> [SPAWNED][seq][err 0][pid 42]
                BinaryPrimitives.WriteUInt32LittleEndian(reply, InitClient.RespSpawned);
                buffer.AsSpan(4, 4).CopyTo(reply.AsSpan(4));
                BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(8), 0);
                BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(12), 42);
                connection.Send(reply);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }
}
