using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>Invariant: with network <c>none</c> only loopback exists; no host, API or other-sandbox address is reachable.</summary>
public sealed class NetworkIsolationTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    private static List<string> HostAddresses() =>
        NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(i => i.GetIPProperties().UnicastAddresses)
            .Where(a => a.Address.AddressFamily == AddressFamily.InterNetwork)
            .Select(a => a.Address.ToString())
            .Distinct()
            .ToList();

    private const string PyConnect = """
        import socket, sys
        def probe(host, port):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                s.connect((host, port))
                print(f"{host}:{port}=CONNECTED", flush=True)
            except OSError as e:
                print(f"{host}:{port}={type(e).__name__}:{e.errno}", flush=True)
            finally:
                s.close()

        """;

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task HostAndApi_FromInside_AreUnreachable(string who)
    {
        // A host service on every interface (0.0.0.0): the thing a careless veth setup exposes.
        using var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        var hostPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        var apiPort = fixture.Server.BaseAddress.Port;
        var addresses = HostAddresses();
        Assert.Contains("127.0.0.1", addresses);
        var id = await _client.CreateSandboxAsync();
        try
        {
            // Control: from the host the API port answers.
            using (var control = new TcpClient())
            {
                await control.ConnectAsync(IPAddress.Loopback, apiPort, TestContext.Current.CancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
            }

            var probes = string.Join('\n', addresses.SelectMany(a => new[] { $"probe('{a}', {apiPort})", $"probe('{a}', {hostPort})" }))
                + "\nprobe('10.0.2.2', 80)\nprobe('169.254.169.254', 80)\nprobe('1.1.1.1', 443)\n";
            var result = await _client.PyAsync(id, who, PyConnect + probes, timeoutSeconds: 60);
            var r = Attack.Results(result);
            Assert.True(r.Count == (addresses.Count * 2) + 3, r.ToString());
            Assert.All(r.All, kv => Assert.True(kv.Value != "CONNECTED", $"{kv.Key} reachable from inside"));
            // Loopback is the sandbox's own: refused (nothing listens), not the host's API.
            Assert.StartsWith("ConnectionRefusedError", r[$"127.0.0.1:{apiPort}"]);
        }
        finally
        {
            listener.Stop();
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task Interfaces_FromInside_OnlyLoopback(string who)
    {
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.ShAsync(id, who, """
                ip -o link show | awk -F': ' '{print "link=" $2}'
                ls /sys/class/net | sed 's/^/sys=/'
                ip -4 -o addr | awk '{print "addr=" $4}'
                ip route show | sed 's/^/route=/'
                """);
            var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(["link=lo", "sys=lo", "addr=127.0.0.1/8"], lines.Where(l => !l.StartsWith("route=", StringComparison.Ordinal)).ToArray());
            Assert.DoesNotContain(lines, l => l.StartsWith("route=default", StringComparison.Ordinal));
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task LoopbackServer_OfOneSandbox_IsUnreachableFromAnother()
    {
        var a = await _client.CreateSandboxAsync();
        var b = await _client.CreateSandboxAsync();
        try
        {
            const int port = 7777;
            var started = await _client.ExecAsync(a, $"setsid python3 -c \"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(60)\" > /dev/null 2>&1 < /dev/null & sleep 0.5; echo started");
            Assert.Equal("started\n", started.Stdout);
            // Control: inside A the server is there, so B's failure below means isolation.
            var inA = Attack.Results(await _client.PyAsync(a, "user", PyConnect + $"probe('127.0.0.1', {port})\n"));
            Assert.Equal("CONNECTED", inA[$"127.0.0.1:{port}"]);
            foreach (var who in new[] { "user", "root" })
            {
                var inB = Attack.Results(await _client.PyAsync(b, who, PyConnect + $"probe('127.0.0.1', {port})\nprobe('localhost', {port})\n"));
                Assert.StartsWith("ConnectionRefusedError", inB[$"127.0.0.1:{port}"]);
                Assert.NotEqual("CONNECTED", inB[$"localhost:{port}"]);
            }
        }
        finally
        {
            await _client.DeleteSandboxAsync(a);
            await _client.DeleteSandboxAsync(b);
        }
    }

    [Theory]
    [MemberData(nameof(Attack.Identities), MemberType = typeof(Attack))]
    public async Task AbstractUnixSocket_OfHost_IsUnreachable(string who)
    {
        // Abstract unix sockets are scoped by network namespace: a host one must not be visible.
        var name = $"airlock-abstract-{Guid.NewGuid():N}";
        using var host = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        host.Bind(new UnixDomainSocketEndPoint("\0" + name));
        host.Listen();
        var id = await _client.CreateSandboxAsync();
        try
        {
            var result = await _client.PyAsync(id, who, $$"""
                import socket
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect("\0{{name}}")
                    print("abstract=CONNECTED")
                except OSError as e:
                    print(f"abstract={type(e).__name__}")
                """);
            Assert.Equal("ConnectionRefusedError", Attack.Results(result)["abstract"]);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }
}
