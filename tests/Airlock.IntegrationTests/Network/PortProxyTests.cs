using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Network;

/// <summary>Port exposure: servers inside a sandbox (network <c>none</c>) through the server's own listener.</summary>
public sealed class PortProxyTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Fact]
    public async Task DevServer_ByHostAndByE2bHeaders_Answers()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            await _client.StartInSandboxAsync(id, "mkdir -p /tmp/site && echo hello-from-sandbox > /tmp/site/index.html && cd /tmp/site && exec python3 -m http.server 8000", 8000);

            using var byHost = new HttpRequestMessage(HttpMethod.Get, "/index.html");
            byHost.Headers.Host = $"8000-{id}.localhost";
            using var r1 = await fixture.Server.CreateClient(key: null).SendAsync(byHost, cts.Token);
            Assert.Equal(HttpStatusCode.OK, r1.StatusCode);
            Assert.Equal("hello-from-sandbox\n", await r1.Content.ReadAsStringAsync(cts.Token));

            using var r2 = await SendByHeadersAsync(id, 8000, HttpMethod.Get, "/index.html", cts.Token);
            Assert.Equal(HttpStatusCode.OK, r2.StatusCode);
            Assert.Equal("hello-from-sandbox\n", await r2.Content.ReadAsStringAsync(cts.Token));
            Assert.StartsWith("SimpleHTTP", string.Join(' ', r2.Headers.GetValues("Server")));

            // Nothing listens: upstream's JSON shape.
            using var closed = await SendByHeadersAsync(id, 8001, HttpMethod.Get, "/", cts.Token);
            Assert.Equal(HttpStatusCode.BadGateway, closed.StatusCode);
            var json = await closed.Content.ReadFromJsonAsync<JsonElement>(cts.Token);
            Assert.Equal("The sandbox is running but port is not open", json.GetProperty("message").GetString());
            Assert.Equal(8001, json.GetProperty("port").GetInt32());
        });
    }

    [Fact]
    public async Task Proxy_UnknownSandbox_Answers502SandboxNotFound()
    {
        using var cts = Api.NewTimeout();
        using var response = await SendByHeadersAsync("nosuchsandbox0000000", 8000, HttpMethod.Get, "/", cts.Token);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("sandbox_not_found", (await response.Content.ReadFromJsonAsync<JsonElement>(cts.Token)).GetProperty("code").GetString());
    }

    private const string StreamingServer = """
        import http.server, sys, time
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (b"first\n", b"second\n"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part)); self.wfile.flush()
                    time.sleep(3)
                self.wfile.write(b"0\r\n\r\n")
            def do_POST(self):
                n = 0
                if self.headers.get("Transfer-Encoding") == "chunked":
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        n += len(self.rfile.read(size)); self.rfile.readline()
                        if size == 0: break
                else:
                    n = len(self.rfile.read(int(self.headers["Content-Length"])))
                body = str(n).encode()
                self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
                self.wfile.write(body)
        http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
        """;

    [Fact]
    public async Task Proxy_Bodies_StreamBothWays()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            await _client.WriteSandboxFileAsync(id, "/tmp/stream.py", StreamingServer);
            await _client.StartInSandboxAsync(id, "exec python3 /tmp/stream.py 8080", 8080);

            // The first chunk arrives while the sandbox still sleeps before the second.
            using var response = await SendByHeadersAsync(id, 8080, HttpMethod.Get, "/", cts.Token, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            var started = DateTime.UtcNow;
            Assert.Equal("first", await reader.ReadLineAsync(cts.Token));
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(2.5), "the first chunk was held back");
            Assert.Equal("second", await reader.ReadLineAsync(cts.Token));

            // 8 MiB up, streamed (chunked: no Content-Length known in advance).
            using var upload = new HttpRequestMessage(HttpMethod.Post, "/upload") { Content = new NetworkApi.GeneratedContentStream(8 << 20) };
            upload.Headers.Add("E2b-Sandbox-Id", id);
            upload.Headers.Add("E2b-Sandbox-Port", "8080");
            using var up = await fixture.Server.CreateClient(key: null).SendAsync(upload, cts.Token);
            Assert.Equal(HttpStatusCode.OK, up.StatusCode);
            Assert.Equal((8 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), await up.Content.ReadAsStringAsync(cts.Token));

            // The metering hook saw it.
            var metrics = await _client.GetFromJsonAsync<JsonElement>($"/v1/sandboxes/{id}/metrics", cts.Token);
            Assert.True(metrics.GetProperty("networkReceivedBytes").GetInt64() >= 8 << 20, metrics.ToString());
            Assert.True(metrics.GetProperty("networkSentBytes").GetInt64() > 0, metrics.ToString());
        });
    }

    [Fact]
    public async Task WebSocket_ByE2bHeadersAndByHost_Echoes()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            await _client.WriteSandboxFileAsync(id, "/tmp/wsecho.py", WsEchoServer);
            await _client.StartInSandboxAsync(id, "exec python3 /tmp/wsecho.py 9000", 9000);
            var uri = new Uri($"ws://{fixture.Server.BaseAddress.Authority}/ws");

            using (var ws = new ClientWebSocket())
            {
                ws.Options.SetRequestHeader("E2b-Sandbox-Id", id);
                ws.Options.SetRequestHeader("E2b-Sandbox-Port", "9000");
                await ws.ConnectAsync(uri, cts.Token);
                Assert.Equal("echo:one", await EchoAsync(ws, "one", cts.Token));
                Assert.Equal("echo:two", await EchoAsync(ws, "two", cts.Token));
                await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
            }

            using (var ws = new ClientWebSocket())
            {
                ws.Options.SetRequestHeader("Host", $"9000-{id}.localhost");
                await ws.ConnectAsync(uri, cts.Token);
                Assert.Equal("echo:by host", await EchoAsync(ws, "by host", cts.Token));
                await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
            }
        });
    }

    [Fact]
    public async Task Proxy_PublicTrafficOff_RequiresTrafficToken()
    {
        using var cts = Api.NewTimeout();
        var response = await _client.PostAsJsonAsync("/v1/sandboxes", new { network = new { allowPublicTraffic = false } }, cts.Token);
        var created = await response.JsonAsync();
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = created.GetProperty("id").GetString()!;
        try
        {
            var token = created.GetProperty("trafficAccessToken").GetString();
            Assert.False(string.IsNullOrEmpty(token));
            await _client.StartInSandboxAsync(id, "cd /tmp && exec python3 -m http.server 8000", 8000);
            using (var denied = await SendByHeadersAsync(id, 8000, HttpMethod.Get, "/", cts.Token))
            {
                Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            }

            // A token, but not this sandbox's: as good as none.
            using (var wrong = new HttpRequestMessage(HttpMethod.Get, "/"))
            {
                wrong.Headers.Host = $"8000-{id}.localhost";
                wrong.Headers.Add("e2b-traffic-access-token", token![..^1] + (token[^1] == '0' ? '1' : '0'));
                using var response2 = await fixture.Server.CreateClient(key: null).SendAsync(wrong, cts.Token);
                Assert.Equal(HttpStatusCode.Forbidden, response2.StatusCode);
                Assert.Equal("traffic_access_token_invalid", (await response2.Content.ReadFromJsonAsync<JsonElement>(cts.Token)).GetProperty("code").GetString());
            }

            using var request = new HttpRequestMessage(HttpMethod.Get, "/");
            request.Headers.Host = $"8000-{id}.localhost";
            request.Headers.Add("e2b-traffic-access-token", token);
            using var allowed = await fixture.Server.CreateClient(key: null).SendAsync(request, cts.Token);
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Proxy_OutOfRangePort_Answers400()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            using var client = fixture.Server.CreateClient(key: null);
            foreach (var port in new[] { "70000", "0", "-1", "99999" })
            {
                using var byHeaders = new HttpRequestMessage(HttpMethod.Get, "/");
                byHeaders.Headers.Add("E2b-Sandbox-Id", id);
                byHeaders.Headers.Add("E2b-Sandbox-Port", port);
                using var r1 = await client.SendAsync(byHeaders, cts.Token);
                Assert.True(r1.StatusCode == HttpStatusCode.BadRequest, $"header port {port}: {(int)r1.StatusCode} {await r1.Content.ReadAsStringAsync(cts.Token)}");
                Assert.Equal("invalid_argument", (await r1.Content.ReadFromJsonAsync<JsonElement>(cts.Token)).GetProperty("code").GetString());

                using var byHost = new HttpRequestMessage(HttpMethod.Get, "/");
                byHost.Headers.Host = $"{port}-{id}.localhost";
                using var r2 = await client.SendAsync(byHost, cts.Token);
                var body = await r2.Content.ReadAsStringAsync(cts.Token);
                // "-1-<id>" is no sandbox host at all (the control plane answers); the others name a port that cannot exist.
                Assert.True(port == "-1" ? r2.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Unauthorized : r2.StatusCode == HttpStatusCode.BadRequest, $"host port {port}: {(int)r2.StatusCode} {body}");
                Assert.False(string.IsNullOrEmpty(JsonDocument.Parse(body).RootElement.GetProperty("code").GetString()), body);
            }
        });
    }

    private async Task<HttpResponseMessage> SendByHeadersAsync(string id, int port, HttpMethod method, string path, CancellationToken cancellationToken, HttpCompletionOption option = HttpCompletionOption.ResponseContentRead)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Add("E2b-Sandbox-Id", id);
        request.Headers.Add("E2b-Sandbox-Port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        // No API key: preview traffic is public unless the sandbox says otherwise.
        using var client = fixture.Server.CreateClient(key: null);
        return await client.SendAsync(request, option, cancellationToken);
    }

    private static async Task<string> EchoAsync(ClientWebSocket ws, string text, CancellationToken cancellationToken)
    {
        await ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cancellationToken);
        var buffer = new byte[1024];
        var result = await ws.ReceiveAsync(buffer, cancellationToken);
        return Encoding.UTF8.GetString(buffer, 0, result.Count);
    }

    /// <summary>A minimal RFC 6455 echo server (python3 stdlib): text frames come back as "echo:&lt;text&gt;".</summary>
    internal const string WsEchoServer = """
        import base64, hashlib, socket, struct, sys, threading
        GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        def serve(c):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk: return
                data += chunk
            key = [l.split(b":", 1)[1].strip() for l in data.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            f = c.makefile("rb")
            while True:
                h = f.read(2)
                if len(h) < 2: return
                op, ln = h[0] & 0x0f, h[1] & 0x7f
                if ln == 126: ln = struct.unpack(">H", f.read(2))[0]
                elif ln == 127: ln = struct.unpack(">Q", f.read(8))[0]
                mask = f.read(4) if h[1] & 0x80 else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(ln)))
                if op == 8:
                    c.sendall(b"\x88\x00"); return
                if op in (1, 2):
                    payload = b"echo:" + payload
                    hdr = bytes([0x80 | op]) + (bytes([len(payload)]) if len(payload) < 126 else b"\x7e" + struct.pack(">H", len(payload)))
                    c.sendall(hdr + payload)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
        """;
}

/// <summary>Helpers shared by the network tests.</summary>
internal static class NetworkApi
{
    public static async Task WriteSandboxFileAsync(this HttpClient client, string id, string path, string content)
    {
        using var cts = new CancellationTokenSource(Api.Timeout);
        using var response = await client.PutAsync($"/v1/sandboxes/{id}/files?path={Uri.EscapeDataString(path)}", new StringContent(content), cts.Token);
        Assert.True(response.IsSuccessStatusCode, $"write {path}: {(int)response.StatusCode}");
    }

    /// <summary>Starts a long-running server in the background and waits until it accepts on <paramref name="port"/> inside.</summary>
    public static async Task StartInSandboxAsync(this HttpClient client, string id, string command, int port)
    {
        var start = await client.ExecAsync(id, $"nohup sh -c '{command.Replace("'", "'\\''", StringComparison.Ordinal)}' >/tmp/server-{port}.log 2>&1 &\necho started");
        Assert.Equal(0, start.ExitCode);
        var wait = await client.ExecAsync(id, $$"""
            python3 -c '
            import socket, time
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", {{port}}), timeout=1).close(); print("up"); break
                except OSError: time.sleep(0.1)
            '
            """);
        Assert.True(wait.Stdout.Contains("up", StringComparison.Ordinal), $"server on {port} did not start: {wait.Stdout}{wait.Stderr}");
    }

    /// <summary>A request body of <paramref name="length"/> bytes with no Content-Length (sent chunked).</summary>
    public sealed class GeneratedContentStream(long length) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var chunk = new byte[64 * 1024];
            for (long sent = 0; sent < length; sent += chunk.Length)
            {
                await stream.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, length - sent)));
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
