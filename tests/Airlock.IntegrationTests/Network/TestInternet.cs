using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Airlock.IntegrationTests.Network;

/// <summary>
/// The "internet" of the network tests, made on this machine: a network namespace joined to the host
/// by a veth pair, on a /28 of 198.51.100.0/24 (TEST-NET-2: public as far as the sandbox's rules
/// are concerned, never routed anywhere real). Inside: two HTTP servers (<see cref="Server1"/>,
/// <see cref="Server2"/>, answering "server-1"/"server-2" on port 80) and a DNS server on
/// <see cref="Server1"/>:53 that answers <c>one.airlock.test</c> → server 1 and
/// <c>two.airlock.test</c> → server 2. A third HTTP server, <see cref="PrivateServer"/> ("private"
/// on port 80), has an address of 10.255.100.0/24 (a private range) on the same interface, routed
/// from the host through <see cref="Server1"/>: what a host's LAN neighbour looks like to a sandbox.
/// Everything is removed on dispose.
/// </summary>
public sealed class TestInternet : IAsyncDisposable
{
    private readonly List<Process> _processes = [];
    private readonly System.Text.StringBuilder _log = new();
    private readonly string _dir;

    private TestInternet(string ns, string hostIf, int block)
    {
        Namespace = ns;
        HostInterface = hostIf;
        HostSide = $"198.51.100.{block + 1}";
        Server1 = $"198.51.100.{block + 2}";
        Server2 = $"198.51.100.{block + 3}";
        PrivateServer = $"10.255.100.{block + 4}";
        _dir = Directory.CreateTempSubdirectory("al-inet-").FullName;
    }

    public string Namespace { get; }

    public string HostInterface { get; }

    public string HostSide { get; }

    public string Server1 { get; }

    public string Server2 { get; }

    public string PrivateServer { get; }

    public static async Task<TestInternet> StartAsync()
    {
        var tag = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        var used = NetworkInterface.GetAllNetworkInterfaces().SelectMany(i => i.GetIPProperties().UnicastAddresses).Select(a => a.Address.ToString()).ToHashSet();
        var block = Enumerable.Range(0, 16).Select(i => i * 16).OrderBy(_ => RandomNumberGenerator.GetInt32(1000))
            .First(b => !used.Contains($"198.51.100.{b + 1}"));
        var net = new TestInternet($"altest{tag}", $"altst{tag}", block);
        try
        {
            await RunAsync("ip", $"netns add {net.Namespace}");
            await RunAsync("ip", $"link add {net.HostInterface} type veth peer name eth0 netns {net.Namespace}");
            await RunAsync("ip", $"addr add {net.HostSide}/28 dev {net.HostInterface}");
            await RunAsync("ip", $"link set {net.HostInterface} up");
            await RunAsync("ip", $"-n {net.Namespace} addr add {net.Server1}/28 dev eth0");
            await RunAsync("ip", $"-n {net.Namespace} addr add {net.Server2}/28 dev eth0");
            await RunAsync("ip", $"-n {net.Namespace} addr add {net.PrivateServer}/32 dev eth0");
            await RunAsync("ip", $"-n {net.Namespace} link set eth0 up");
            await RunAsync("ip", $"-n {net.Namespace} link set lo up");
            await RunAsync("ip", $"-n {net.Namespace} route add default via {net.HostSide}");
            // Goes with the host interface on dispose.
            await RunAsync("ip", $"route add {net.PrivateServer}/32 via {net.Server1} dev {net.HostInterface}");
            foreach (var (address, name) in new[] { (net.Server1, "server-1"), (net.Server2, "server-2"), (net.PrivateServer, "private") })
            {
                var root = Path.Combine(net._dir, name);
                Directory.CreateDirectory(root);
                await File.WriteAllTextAsync(Path.Combine(root, "index.html"), name);
                net.Spawn("python3", "-c", HttpServer, address, root);
            }

            var dns = Path.Combine(net._dir, "dns.py");
            await File.WriteAllTextAsync(dns, DnsServer);
            net.Spawn("python3", dns, net.Server1, $"one.airlock.test={net.Server1}", $"two.airlock.test={net.Server2}");
            await net.WaitForAsync(net.Server1, 80);
            await net.WaitForAsync(net.Server2, 80);
            await net.WaitForAsync(net.PrivateServer, 80);
            return net;
        }
        catch
        {
            await net.DisposeAsync();
            throw;
        }
    }

    private void Spawn(params string[] argv)
    {
        var start = new ProcessStartInfo("ip") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "netns", "exec", Namespace }.Concat(argv))
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => Log(e.Data);
        process.ErrorDataReceived += (_, e) => Log(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _processes.Add(process);
    }

    private async Task WaitForAsync(string address, int port)
    {
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Parse(address), port).WaitAsync(TimeSpan.FromSeconds(1));
                return;
            }
            catch (Exception ex) when (ex is SocketException or TimeoutException)
            {
                await Task.Delay(100);
            }
        }

        throw new InvalidOperationException($"test server {address}:{port} did not start: {string.Join(", ", _processes.Select(p => p.HasExited ? $"exited {p.ExitCode}" : "running"))} {await RunAsync("ip", $"netns exec {Namespace} ss -ltnu", check: false)} {await RunAsync("ip", $"-n {Namespace} addr", check: false)} {Output}");
    }

    private string Output
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    private void Log(string? line)
    {
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    public static async Task<string> RunAsync(string file, string args, bool check = true)
    {
        var start = new ProcessStartInfo(file, args) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (check && process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {args}: {await error}");
        }

        return await output + await error;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in _processes)
        {
            try
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception)
            {
                // Already gone.
            }

            process.Dispose();
        }

        await RunAsync("ip", $"link del {HostInterface}", check: false);
        await RunAsync("ip", $"netns del {Namespace}", check: false);
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>
    /// http.server on one address, without its reverse lookup of the bind address at start (which
    /// waits for the host's resolver, unreachable from the test namespace).
    /// </summary>
    private const string HttpServer = """
        import functools, http.server, socketserver, sys
        class Server(http.server.ThreadingHTTPServer):
            def server_bind(self):
                socketserver.TCPServer.server_bind(self)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
        Server((sys.argv[1], 80), handler).serve_forever()
        """;

    /// <summary>A tiny authoritative DNS server (python3 stdlib): A records from name=address arguments, NXDOMAIN otherwise.</summary>
    private const string DnsServer = """
        import socket, struct, sys
        bind, records = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind, 53))
        while True:
            q, peer = s.recvfrom(512)
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
            qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
            question = q[12:i + 5]
            name = ".".join(labels).lower()
            addr = records.get(name)
            if addr and qtype == 1:
                answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(addr)
                head = q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
            else:
                answer = b""
                head = q[:2] + (b"\x81\x80" if addr else b"\x81\x83") + struct.pack(">HHHH", 1, 0, 0, 0)
            s.sendto(head + question + answer, peer)
        """;
}
