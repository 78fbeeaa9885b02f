using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.E2b;

/// <summary>
/// envd's plain HTTP endpoints (spec §3.4/§3.5) over the wire, as the SDKs (and the Python SDK,
/// which can't run here) call them: routed by <c>E2b-Sandbox-Id</c>, authorised by
/// <c>X-Access-Token</c> or a signed URL, errors in envd's <c>{"code","message"}</c> shape.
/// </summary>
public sealed class EnvdHttpTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    // No API key, no automatic decompression: exactly what reaches envd from an SDK.
    private readonly HttpClient _envd = fixture.Server.CreateClient(key: null);

    [Fact]
    public async Task Health_LiveThenKilled_204Then502WithEdgeBody()
    {
        var id = await _client.CreateSandboxAsync();
        using var cts = Api.NewTimeout();
        try
        {
            // No token needed for /health.
            using var live = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/health"), cts.Token);
            Assert.Equal(HttpStatusCode.NoContent, live.StatusCode);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }

        using var gone = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/health"), cts.Token);
        Assert.Equal(HttpStatusCode.BadGateway, gone.StatusCode);
        var body = await gone.JsonAsync();
        Assert.Equal(502, body.GetProperty("code").GetInt32());
        Assert.Equal(id, body.GetProperty("sandboxId").GetString());
        Assert.Equal("The sandbox was not found", body.GetProperty("message").GetString());

        // /files of a gone sandbox too: the SDK turns 502 into "not running".
        using var files = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/files?path=/etc/hostname", token: "x"), cts.Token);
        Assert.Equal(HttpStatusCode.BadGateway, files.StatusCode);
    }

    [Fact]
    public async Task Edge_OtherPortOrInternalPrefix_ClearAnswersNoLeak()
    {
        var id = await _client.CreateSandboxAsync();
        using var cts = Api.NewTimeout();
        try
        {
            // A port nothing serves yet: upstream's 502 shape, naming the port.
            using var request = new HttpRequestMessage(HttpMethod.Get, "/");
            request.Headers.Add("E2b-Sandbox-Id", id);
            request.Headers.Add("E2b-Sandbox-Port", "8000");
            using var port = await _envd.SendAsync(request, cts.Token);
            Assert.Equal(HttpStatusCode.BadGateway, port.StatusCode);
            var body = await port.JsonAsync();
            Assert.Equal(8000, body.GetProperty("port").GetInt32());
            Assert.Equal(id, body.GetProperty("sandboxId").GetString());

            // The same by Host name <port>-<id>.<domain>.
            using var byHost = new HttpRequestMessage(HttpMethod.Get, "/health");
            byHost.Headers.Host = $"49983-{id}.sandbox.test";
            using var health = await _envd.SendAsync(byHost, cts.Token);
            Assert.Equal(HttpStatusCode.NoContent, health.StatusCode);

            // The internal prefix the edge rewrites to is not reachable from outside.
            using var direct = await _envd.GetAsync($"/_sandbox/49983/health", cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, direct.StatusCode);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Auth_MissingOrWrongToken_401InEnvdShape_OnEveryProtectedPath()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            using var cts = Api.NewTimeout();
            foreach (var (method, path) in new[] { (HttpMethod.Get, "/files?path=/etc/hostname"), (HttpMethod.Post, "/files?path=/tmp/x"), (HttpMethod.Get, "/envs"), (HttpMethod.Get, "/metrics") })
            {
                foreach (var presented in new[] { null, "wrong", token + "x", token.ToUpperInvariant() })
                {
                    var request = Envd(method, id, path, presented);
                    if (method == HttpMethod.Post)
                    {
                        request.Content = Octets("should not be written");
                    }

                    using var response = await _envd.SendAsync(request, cts.Token);
                    Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{method} {path} with '{presented}': {(int)response.StatusCode}");
                    var body = await response.JsonAsync();
                    Assert.Equal(401, body.GetProperty("code").GetInt32());
                    Assert.StartsWith("unauthorized access", body.GetProperty("message").GetString());
                }
            }

            // Nothing was written by the refused POSTs.
            using var read = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/files?path=/tmp/x", token), cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, read.StatusCode);

            // Another sandbox's token is no key to this one.
            var other = await _client.CreateSandboxAsync();
            try
            {
                using var cross = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/envs", await TokenAsync(other)), cts.Token);
                Assert.Equal(HttpStatusCode.Unauthorized, cross.StatusCode);
            }
            finally
            {
                await _client.DeleteSandboxAsync(other);
            }
        });
    }

    [Fact]
    public async Task Write_MultipartMultiFile_EachPartLandsAtItsFilename_OwnedByTheUser()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            using var cts = Api.NewTimeout();
            using var form = new MultipartFormDataContent();
            form.Add(new ByteArrayContent("alpha"u8.ToArray()), "file", "/home/user/deep/er/a.txt");
            form.Add(new ByteArrayContent("beta"u8.ToArray()), "file", "rel/b.txt");
            form.Add(new StringContent("ignored"), "other");
            var request = Envd(HttpMethod.Post, id, "/files", token);
            request.Content = form;
            using var response = await _envd.SendAsync(request, cts.Token);
            var text = await response.Content.ReadAsStringAsync(cts.Token);
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            var entries = JsonDocument.Parse(text).RootElement.EnumerateArray().ToList();
            Assert.Equal(2, entries.Count);
            Assert.Equal("/home/user/deep/er/a.txt", entries[0].GetProperty("path").GetString());
            Assert.Equal("a.txt", entries[0].GetProperty("name").GetString());
            Assert.Equal("file", entries[0].GetProperty("type").GetString());
            Assert.Equal("/home/user/rel/b.txt", entries[1].GetProperty("path").GetString());

            var inside = await _client.ExecAsync(id, "cat /home/user/deep/er/a.txt; echo; cat /home/user/rel/b.txt; echo; stat -c %U /home/user/deep/er/a.txt /home/user/deep /home/user/rel/b.txt", user: "root");
            Assert.Equal("alpha\nbeta\nuser\nuser\nuser\n", inside.Stdout);
        });
    }

    [Fact]
    public async Task Write_AsRootByUsernameOrBasicAuth_OwnedByRoot_UnknownUser401()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            using var cts = Api.NewTimeout();
            var byQuery = Envd(HttpMethod.Post, id, "/files?path=q.txt&username=root", token);
            byQuery.Content = Octets("q");
            using var r1 = await _envd.SendAsync(byQuery, cts.Token);
            Assert.Equal("/root/q.txt", (await r1.JsonAsync())[0].GetProperty("path").GetString());

            var byBasic = Envd(HttpMethod.Post, id, "/files?path=/tmp/b.txt", token);
            byBasic.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String("root:"u8));
            byBasic.Content = Octets("b");
            using var r2 = await _envd.SendAsync(byBasic, cts.Token);
            Assert.Equal(HttpStatusCode.OK, r2.StatusCode);
            Assert.Equal("root root\n", (await _client.ExecAsync(id, "stat -c '%U %G' /tmp/b.txt")).Stdout);

            var nobody = Envd(HttpMethod.Get, id, "/files?path=/tmp/b.txt&username=ghost", token);
            using var r3 = await _envd.SendAsync(nobody, cts.Token);
            Assert.Equal(HttpStatusCode.Unauthorized, r3.StatusCode);
            Assert.Equal(401, (await r3.JsonAsync()).GetProperty("code").GetInt32());
        });
    }

    [Fact]
    public async Task Write_OctetStreamGzip_IsDecompressed_Overwrites_ReadGzipAndIdentity()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            using var cts = Api.NewTimeout();
            var content = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("compressible line ü\n", 5000)));
            var compressed = new MemoryStream();
            await using (var gz = new GZipStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
            {
                await gz.WriteAsync(content, cts.Token);
            }

            // First a longer file, so the gzip write must truncate it.
            var first = Envd(HttpMethod.Post, id, "/files?path=/tmp/z.txt", token);
            first.Content = Octets(new string('x', content.Length + 1000));
            (await _envd.SendAsync(first, cts.Token)).Dispose();

            var write = Envd(HttpMethod.Post, id, "/files?path=/tmp/z.txt", token);
            write.Content = new ByteArrayContent(compressed.ToArray());
            write.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            write.Content.Headers.ContentEncoding.Add("gzip");
            using var written = await _envd.SendAsync(write, cts.Token);
            Assert.Equal(HttpStatusCode.OK, written.StatusCode);

            var identity = Envd(HttpMethod.Get, id, "/files?path=/tmp/z.txt", token);
            using var plain = await _envd.SendAsync(identity, cts.Token);
            Assert.Equal(content.Length, plain.Content.Headers.ContentLength);
            Assert.Empty(plain.Content.Headers.ContentEncoding);
            Assert.Equal(content, await plain.Content.ReadAsByteArrayAsync(cts.Token));

            var gzipped = Envd(HttpMethod.Get, id, "/files?path=/tmp/z.txt", token);
            gzipped.Headers.AcceptEncoding.ParseAdd("gzip");
            using var zipped = await _envd.SendAsync(gzipped, cts.Token);
            Assert.Equal("gzip", Assert.Single(zipped.Content.Headers.ContentEncoding));
            var raw = await zipped.Content.ReadAsByteArrayAsync(cts.Token);
            Assert.True(raw.Length < content.Length / 10, $"gzip body of {raw.Length} bytes");
            await using var unzip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            var back = new MemoryStream();
            await unzip.CopyToAsync(back, cts.Token);
            Assert.Equal(content, back.ToArray());

            // A corrupt gzip body is the client's fault.
            var corrupt = Envd(HttpMethod.Post, id, "/files?path=/tmp/c.txt", token);
            corrupt.Content = new ByteArrayContent([0x1f, 0x8b, 1, 2, 3, 4]);
            corrupt.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            corrupt.Content.Headers.ContentEncoding.Add("gzip");
            using var bad = await _envd.SendAsync(corrupt, cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Equal(400, (await bad.JsonAsync()).GetProperty("code").GetInt32());
        });
    }

    [Fact]
    public async Task Read_EmptyMissingDirectory_ContentLength0_404_400()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            using var cts = Api.NewTimeout();
            await _client.ExecAsync(id, ": > /home/user/empty");
            var empty = Envd(HttpMethod.Get, id, "/files?path=empty", token);
            empty.Headers.AcceptEncoding.ParseAdd("gzip"); // still identity: the SDK keys an empty file on Content-Length: 0
            using var r1 = await _envd.SendAsync(empty, cts.Token);
            Assert.Equal(HttpStatusCode.OK, r1.StatusCode);
            Assert.Equal(0, r1.Content.Headers.ContentLength);

            using var r2 = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/files?path=/nope/missing.txt", token), cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, r2.StatusCode);
            Assert.Equal(404, (await r2.JsonAsync()).GetProperty("code").GetInt32());

            using var r3 = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/files?path=/etc", token), cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, r3.StatusCode);
            Assert.Equal(400, (await r3.JsonAsync()).GetProperty("code").GetInt32());
        });
    }

    [Fact]
    public async Task Signature_ValidForPathUserOperation_Only()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            using var cts = Api.NewTimeout();
            await _client.ExecAsync(id, "echo secret > /home/user/s.txt; echo other > /home/user/o.txt");
            async Task<HttpStatusCode> Get(string query)
            {
                using var response = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/files?" + query), cts.Token);
                return response.StatusCode;
            }

            var read = Sign("s.txt", "read", "", token);
            Assert.Equal(HttpStatusCode.OK, await Get($"path=s.txt&signature={Uri.EscapeDataString(read)}"));
            // Bound to the path, the operation, the user and the token.
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=o.txt&signature={Uri.EscapeDataString(read)}"));
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=s.txt&username=root&signature={Uri.EscapeDataString(read)}"));
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=s.txt&signature={Uri.EscapeDataString(Sign("s.txt", "write", "", token))}"));
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=s.txt&signature={Uri.EscapeDataString(Sign("s.txt", "read", "", token + "0"))}"));
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=s.txt&signature={Uri.EscapeDataString(read)}x"));

            // Expiry: signed in, checked against the clock, not editable.
            var future = DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 120;
            var expiring = Uri.EscapeDataString(Sign("/home/user/s.txt", "read", "root", token, future));
            Assert.Equal(HttpStatusCode.OK, await Get($"path=%2Fhome%2Fuser%2Fs.txt&username=root&signature={expiring}&signature_expiration={future}"));
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=%2Fhome%2Fuser%2Fs.txt&username=root&signature={expiring}&signature_expiration={future + 1000}"));
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=%2Fhome%2Fuser%2Fs.txt&username=root&signature={expiring}"));
            var past = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 5;
            Assert.Equal(HttpStatusCode.Unauthorized, await Get($"path=s.txt&signature={Uri.EscapeDataString(Sign("s.txt", "read", "", token, past))}&signature_expiration={past}"));

            // A write signature writes.
            var upload = Envd(HttpMethod.Post, id, $"/files?path=up.txt&signature={Uri.EscapeDataString(Sign("up.txt", "write", "", token))}");
            upload.Content = Octets("uploaded");
            using var uploaded = await _envd.SendAsync(upload, cts.Token);
            Assert.Equal(HttpStatusCode.OK, uploaded.StatusCode);
            Assert.Equal("uploaded", (await _client.ExecAsync(id, "cat /home/user/up.txt")).Stdout);
        });
    }

    [Fact]
    public async Task SignedUrl_WithoutSandboxHeader_ServedByTheSandboxWhoseTokenSignedIt()
    {
        var a = await _client.CreateSandboxAsync();
        var b = await _client.CreateSandboxAsync();
        try
        {
            using var cts = Api.NewTimeout();
            await _client.ExecAsync(a, "echo from-a > /tmp/f");
            await _client.ExecAsync(b, "echo from-b > /tmp/f");
            var tokenB = await TokenAsync(b);

            // Exactly what downloadUrl() returns: the bare origin, no header.
            var url = $"/files?path=%2Ftmp%2Ff&signature={Uri.EscapeDataString(Sign("/tmp/f", "read", "", tokenB))}";
            Assert.Equal("from-b\n", await _envd.GetStringAsync(url, cts.Token));

            using var upload = await _envd.PostAsync($"/files?path=%2Ftmp%2Fu&signature={Uri.EscapeDataString(Sign("/tmp/u", "write", "", tokenB))}", Octets("up-b"), cts.Token);
            Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
            Assert.Equal("up-b", (await _client.ExecAsync(b, "cat /tmp/u")).Stdout);
            Assert.Equal(1, (await _client.ExecAsync(a, "test -e /tmp/u")).ExitCode);

            // A signature no live sandbox made: envd's 401, not a control-plane answer.
            using var forged = await _envd.GetAsync($"/files?path=%2Ftmp%2Ff&signature={Uri.EscapeDataString(Sign("/tmp/f", "read", "", "guess"))}", cts.Token);
            Assert.Equal(HttpStatusCode.Unauthorized, forged.StatusCode);
            Assert.Equal(401, (await forged.JsonAsync()).GetProperty("code").GetInt32());

            // Once b is gone its URLs stop working.
            await _client.DeleteSandboxAsync(b);
            using var dead = await _envd.GetAsync(url, cts.Token);
            Assert.Equal(HttpStatusCode.Unauthorized, dead.StatusCode);
        }
        finally
        {
            await _client.DeleteSandboxAsync(a);
            await _client.DeleteSandboxAsync(b);
        }
    }

    [Fact]
    public async Task Write_DiskFull_507NotEnoughSpace()
    {
        var id = await _client.CreateSandboxAsync(new { diskMb = 16 });
        try
        {
            using var cts = Api.NewTimeout();
            var token = await TokenAsync(id);
            var write = Envd(HttpMethod.Post, id, "/files?path=/tmp/fill", token);
            write.Content = new ByteArrayContent(new byte[48 << 20]);
            write.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var response = await _envd.SendAsync(write, cts.Token);
            var text = await response.Content.ReadAsStringAsync(cts.Token);
            Assert.True((int)response.StatusCode == 507, $"{(int)response.StatusCode} {text}");
            Assert.Equal(507, JsonDocument.Parse(text).RootElement.GetProperty("code").GetInt32());
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Fact]
    public async Task Multipart_100MegabyteUpload_StreamsWithoutBuffering()
    {
        await WithSandboxAsync(async (id, token) =>
        {
            const long size = 100L * 1024 * 1024;
            using var cts = Api.NewTimeout(TimeSpan.FromSeconds(90));
            var peakBefore = PeakRssKb(fixture.Server.Pid);
            var upload = new GeneratedContent(size);
            using var form = new MultipartFormDataContent { { upload, "file", "/home/user/big.bin" } };
            var request = Envd(HttpMethod.Post, id, "/files?path=%2Fhome%2Fuser%2Fbig.bin", token);
            request.Content = form;
            using var response = await _envd.SendAsync(request, cts.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var expected = Convert.ToHexStringLower(upload.Sha256!);
            Assert.Equal(expected + "\n", (await _client.ExecAsync(id, "sha256sum /home/user/big.bin | cut -d' ' -f1")).Stdout);

            using var read = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/files?path=big.bin", token), HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(size, read.Content.Headers.ContentLength);
            await using var body = await read.Content.ReadAsStreamAsync(cts.Token);
            Assert.Equal(expected, Convert.ToHexStringLower(await SHA256.HashDataAsync(body, cts.Token)));

            // Buffered, the server's peak resident memory would grow by at least the file's size.
            var growthMb = (PeakRssKb(fixture.Server.Pid) - peakBefore) / 1024;
            Assert.True(growthMb < 60, $"server peak RSS grew by {growthMb} MB for a 100 MB file");
        });
    }

    [Fact]
    public async Task EnvsAndMetrics_WithToken_DescribeTheSandbox()
    {
        var id = await _client.CreateSandboxAsync(new { env = new Dictionary<string, string> { ["FOO"] = "bar baz" }, memoryMb = 256, diskMb = 64 });
        try
        {
            using var cts = Api.NewTimeout();
            var token = await TokenAsync(id);
            using var envs = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/envs", token), cts.Token);
            var env = await envs.JsonAsync();
            Assert.Equal("bar baz", env.GetProperty("FOO").GetString());

            await _client.ExecAsync(id, "head -c 20000000 /dev/urandom > /tmp/blob");
            using var metrics = await _envd.SendAsync(Envd(HttpMethod.Get, id, "/metrics", token), cts.Token);
            var m = await metrics.JsonAsync();
            Assert.Equal(256L << 20, m.GetProperty("mem_total").GetInt64());
            Assert.Equal(256, m.GetProperty("mem_total_mib").GetInt64());
            Assert.InRange(m.GetProperty("mem_used").GetInt64(), 1, 256L << 20);
            Assert.Equal(1, m.GetProperty("cpu_count").GetInt32());
            Assert.InRange(m.GetProperty("disk_total").GetInt64(), 60L << 20, 64L << 20);
            Assert.InRange(m.GetProperty("disk_used").GetInt64(), 19L << 20, 64L << 20);
            Assert.InRange(m.GetProperty("ts").GetInt64(), DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    private async Task WithSandboxAsync(Func<string, string, Task> test) =>
        await _client.WithSandboxAsync(async id => await test(id, await TokenAsync(id)));

    private async Task<string> TokenAsync(string id)
    {
        var sandbox = await _client.GetFromJsonAsync<JsonElement>($"/v1/sandboxes/{id}", TestContext.Current.CancellationToken);
        return sandbox.GetProperty("envdAccessToken").GetString()!;
    }

    private static HttpRequestMessage Envd(HttpMethod method, string id, string pathAndQuery, string? token = null)
    {
        var request = new HttpRequestMessage(method, pathAndQuery);
        request.Headers.Add("E2b-Sandbox-Id", id);
        request.Headers.Add("E2b-Sandbox-Port", "49983");
        if (token is not null)
        {
            request.Headers.Add("X-Access-Token", token);
        }

        return request;
    }

    private static ByteArrayContent Octets(string text)
    {
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(text));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    /// <summary>The SDK's signature (§3.5), computed independently of the server's code.</summary>
    private static string Sign(string path, string operation, string user, string token, long? expiry = null)
    {
        var raw = $"{path}:{operation}:{user}:{token}" + (expiry is { } e ? $":{e}" : "");
        return "v1_" + Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(raw))).TrimEnd('=');
    }

    private static long PeakRssKb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    }

    /// <summary>Random bytes generated while sending, hashed on the way.</summary>
}
