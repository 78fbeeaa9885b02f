using System.Net;
using System.Net.Sockets;
using System.Text;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Tenancy;

/// <summary>The routes anyone may call (login, accepting an invitation): bounded bodies, rate-limited per address.</summary>
public sealed class AnonymousRouteTests(TenancyServerFixture fixture) : IClassFixture<TenancyServerFixture>
{
    private AirlockServer Server => fixture.Server;

    [Fact]
    public async Task Login_ChunkedBodyOverOneMiB_Answers413BeforeTheBodyEnds()
    {
        const long total = 64L << 20;
        using var cts = Api.NewTimeout();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(Server.BaseAddress.Host, Server.BaseAddress.Port, cts.Token);
        var stream = tcp.GetStream();
        // No Content-Length: only the bytes read can tell the size. The JSON is a string that never
        // ends, so nothing but the size can refuse it.
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST /v1/auth/login HTTP/1.1\r\nHost: {Server.BaseAddress.Authority}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"), cts.Token);
        var response = ReadResponseAsync(stream, cts.Token);

        var payload = new byte[64 * 1024];
        Array.Fill(payload, (byte)'a');
        "{\"email\":\""u8.CopyTo(payload);
        var chunk = Encoding.ASCII.GetBytes($"{payload.Length:x}\r\n").Concat(payload).Concat("\r\n"u8.ToArray()).ToArray();
        long sent = 0;
        try
        {
            while (sent < total && !response.IsCompleted)
            {
                await stream.WriteAsync(chunk, cts.Token);
                sent += payload.Length;
            }
        }
        catch (IOException)
        {
            // The server closed the connection on the rest of the body: what we want.
        }

        if (!response.IsCompleted)
        {
            // All sent and no answer yet: end the body, so a server that reads it all answers now.
            await stream.WriteAsync("0\r\n\r\n"u8.ToArray(), cts.Token);
        }

        var text = await response;
        Assert.StartsWith("HTTP/1.1 413", text);
        Assert.Contains("\"code\":\"payload_too_large\"", text);
        // The server answered long before the body's end: it did not read (or buffer) it all.
        Assert.True(sent < total / 2, $"sent {sent} of {total} bytes before the answer");
    }

    [Fact]
    public async Task Login_RapidBadAttemptsFromOneAddress_Answer429WithRetryAfter()
    {
        const int limit = 5;
        await using var server = await AirlockServer.StartAsync(
            cancellationToken: TestContext.Current.CancellationToken,
            environment: new Dictionary<string, string>
            {
                ["Airlock__Tenancy__AnonymousRequestsPerMinute"] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Airlock__Tenancy__PasswordIterations"] = "10000",
                ["Airlock__Sandboxes__WarmPoolSize"] = "0",
            });
        using var anonymous = server.CreateClient(null);
        for (var i = 0; i < limit; i++)
        {
            await (await anonymous.SendAsync(HttpMethod.Post, "/v1/auth/login", new { email = "nobody@example.com", password = "guess" + i }))
                .ExpectProblemAsync(HttpStatusCode.Unauthorized, "invalid_credentials");
        }

        foreach (var (path, body) in new (string, object)[] { ("/v1/auth/login", new { email = "nobody@example.com", password = "one more" }), ("/v1/invitations/accept", new { token = "guess" }) })
        {
            using var limited = await anonymous.SendAsync(HttpMethod.Post, path, body);
            var problem = await limited.ExpectProblemAsync(HttpStatusCode.TooManyRequests, "rate_limited");
            Assert.True(int.Parse(limited.Headers.GetValues("Retry-After").Single(), System.Globalization.CultureInfo.InvariantCulture) >= 1);
            Assert.Equal("anonymousRequestsPerMinute", problem.GetProperty("limit").GetString());
        }

        // Keys are not anonymous: the admin key still works from the same address.
        Assert.Equal(HttpStatusCode.OK, (await server.Client.SendAsync(HttpMethod.Get, "/v1/teams")).StatusCode);
    }

    /// <summary>Reads until the server closes the connection or a whole ProblemDetails (plain or chunked) has arrived.</summary>
    private static async Task<string> ReadResponseAsync(NetworkStream stream, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer, cancellationToken)) > 0)
            {
                text.Append(Encoding.UTF8.GetString(buffer, 0, n));
                var sofar = text.ToString();
                if (sofar.Contains("\"code\":", StringComparison.Ordinal) && (sofar.EndsWith('}') || sofar.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal)))
                {
                    break;
                }
            }
        }
        catch (IOException)
        {
            // Reset after the answer: what was read is the answer.
        }

        return text.ToString();
    }
}
