using System.Net;
using System.Security.Cryptography;
using System.Text;
using Airlock.Core;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Airlock.Server.Proxy;

/// <summary>
/// Port exposure (docs/networking.md): HTTP and WebSocket to any port a sandbox listens on, through
/// this server's own listener. The upstream connection is made inside the sandbox's network
/// namespace (<see cref="ISandboxNetwork.ConnectAsync"/>), so it works in mode <c>none</c> too and
/// reaches servers bound to the sandbox's loopback. Bodies stream both ways; an upgrade (WebSocket)
/// becomes an opaque byte tunnel once the sandbox answers 101.
/// </summary>
internal sealed partial class PortProxy : IDisposable
{
    public const string TrafficTokenHeader = "e2b-traffic-access-token";
    private static readonly HttpRequestOptionsKey<Target> s_target = new("airlock.proxy.target");

    // RFC 9110 §7.6.1 hop-by-hop fields, plus those HttpClient/Kestrel manage themselves.
    private static readonly HashSet<string> s_hopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host", "Expect", TrafficTokenHeader,
    };

    private readonly HttpMessageInvoker _client;
    private readonly SandboxService _sandboxes;
    private readonly ISandboxNetwork _network;
    private readonly ILogger<PortProxy> _logger;

    public PortProxy(SandboxService sandboxes, ISandboxNetwork network, ILogger<PortProxy> logger)
    {
        _sandboxes = sandboxes;
        _network = network;
        _logger = logger;
        _client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = null,
            // Idle connections into a sandbox hold its netns; let them go soon.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(15),
            ConnectTimeout = TimeSpan.FromSeconds(10),
            ConnectCallback = ConnectAsync,
        });
    }

    private sealed record Target(SandboxRecord Record, int Port);

    private sealed class PortClosedException() : IOException("nothing listens on the port");

    /// <summary>Middleware after authentication: takes the requests the edge marked for a sandbox port.</summary>
    public Task HandleAsync(HttpContext context, Func<Task> next) =>
        E2b.SandboxRouting.ProxyPort(context) is { } port ? ProxyAsync(context, E2b.SandboxRouting.SandboxId(context), port) : next();

    public async Task ProxyAsync(HttpContext context, string id, int port)
    {
        if (port is < 1 or > 65535)
        {
            // The edge refuses these already; the request URI below could not even be made.
            await Problems.WriteAsync(context, 400, "invalid_argument", $"sandbox port {port} is not between 1 and 65535").ConfigureAwait(false);
            return;
        }

        LiveSandbox live;
        try
        {
            // Through Core, so whatever visibility rules it applies (teams) apply here too.
            live = _sandboxes.Get(id);
        }
        catch (AirlockException ex) when (ex.Status == 404)
        {
            await Problems.WriteAsync(context, 502, "sandbox_not_found", $"sandbox '{id}' not found").ConfigureAwait(false);
            return;
        }

        if (live.Record.TrafficAccessToken is { } token && !TokenMatches(context.Request.Headers[TrafficTokenHeader], token))
        {
            await Problems.WriteAsync(context, 403, "traffic_access_token_invalid", $"sandbox '{id}' requires the {TrafficTokenHeader} header").ConfigureAwait(false);
            return;
        }

        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        var isUpgrade = upgrade?.IsUpgradableRequest == true;
        using var request = CreateRequest(context, id, port, isUpgrade);
        request.Options.Set(s_target, new Target(live.Record, port));

        HttpResponseMessage response;
        try
        {
            response = await _client.SendAsync(request, context.RequestAborted).ConfigureAwait(false);
        }
        catch (HttpRequestException ex) when (FindPortClosed(ex))
        {
            await WritePortClosedAsync(context, id, port).ConfigureAwait(false);
            return;
        }
        catch (HttpRequestException ex)
        {
            LogUpstreamFailed(id, port, ex.Message);
            await Problems.WriteAsync(context, 502, "upstream_failed", $"port {port} of sandbox '{id}' did not answer: {ex.Message}").ConfigureAwait(false);
            return;
        }

        using (response)
        {
            context.Response.StatusCode = (int)response.StatusCode;
            CopyResponseHeaders(response, context.Response, keepUpgrade: isUpgrade && response.StatusCode == HttpStatusCode.SwitchingProtocols);
            if (isUpgrade && response.StatusCode == HttpStatusCode.SwitchingProtocols)
            {
                await TunnelAsync(context, upgrade!, response).ConfigureAwait(false);
                return;
            }

            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            await using var body = await response.Content.ReadAsStreamAsync(context.RequestAborted).ConfigureAwait(false);
            var buffer = new byte[16 * 1024];
            try
            {
                int n;
                while ((n = await body.ReadAsync(buffer, context.RequestAborted).ConfigureAwait(false)) > 0)
                {
                    // Flush every chunk: server-sent events and long polls must arrive as written.
                    await context.Response.Body.WriteAsync(buffer.AsMemory(0, n), context.RequestAborted).ConfigureAwait(false);
                    await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
                }
            }
            catch (IOException)
            {
                // The sandbox side broke off mid-body: the client must not mistake it for a complete answer.
                context.Abort();
            }
        }
    }

    private static HttpRequestMessage CreateRequest(HttpContext context, string id, int port, bool isUpgrade)
    {
        var incoming = context.Request;
        var rawTarget = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        // The target exactly as the client sent it (the edge rewrote Path, not RawTarget); the
        // absolute form (a client talking to us as a forward proxy) keeps only its path.
        var target = rawTarget is { Length: > 0 } && rawTarget[0] == '/' ? rawTarget
            : Uri.TryCreate(rawTarget, UriKind.Absolute, out var absolute) ? absolute.PathAndQuery : "/";
        // The URI's host is only the connection-pool key (one pool per sandbox port); the Host
        // header the dev server sees is the client's.
        var request = new HttpRequestMessage(new HttpMethod(incoming.Method), new Uri($"http://{id}:{port}{target}"))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

        if (!isUpgrade && context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true)
        {
            request.Content = new StreamContent(incoming.Body);
            if (incoming.ContentLength is null)
            {
                request.Headers.TransferEncodingChunked = true;
            }
        }

        foreach (var (name, values) in incoming.Headers)
        {
            if (s_hopByHop.Contains(name) || name.StartsWith(':'))
            {
                continue;
            }

            if (!request.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
            {
                request.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }

        if (isUpgrade)
        {
            request.Headers.TryAddWithoutValidation("Connection", "Upgrade");
            request.Headers.TryAddWithoutValidation("Upgrade", (IEnumerable<string?>)incoming.Headers.Upgrade);
        }

        request.Headers.Host = incoming.Host.Value;
        if (context.Connection.RemoteIpAddress is { } remote)
        {
            request.Headers.TryAddWithoutValidation("X-Forwarded-For", remote.ToString());
        }

        request.Headers.TryAddWithoutValidation("X-Forwarded-Proto", incoming.Scheme);
        request.Headers.TryAddWithoutValidation("X-Forwarded-Host", incoming.Host.Value);
        return request;
    }

    private static void CopyResponseHeaders(HttpResponseMessage response, HttpResponse to, bool keepUpgrade)
    {
        // NonValidated: the values exactly as the sandbox sent them (no re-parsing of Server, Date, …).
        foreach (var (name, values) in response.Headers.NonValidated.Concat(response.Content.Headers.NonValidated))
        {
            if (s_hopByHop.Contains(name) && !(keepUpgrade && name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }

            to.Headers[name] = values.Count == 1 ? new Microsoft.Extensions.Primitives.StringValues(values.ToString()) : values.ToArray();
        }
    }

    /// <summary>After a 101: the client's connection and the sandbox's are joined byte for byte until either closes.</summary>
    private static async Task TunnelAsync(HttpContext context, IHttpUpgradeFeature upgrade, HttpResponseMessage response)
    {
        await using var upstream = await response.Content.ReadAsStreamAsync(context.RequestAborted).ConfigureAwait(false);
        await using var client = await upgrade.UpgradeAsync().ConfigureAwait(false);
        using var done = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        var up = PumpAsync(client, upstream, done.Token);
        var down = PumpAsync(upstream, client, done.Token);
        await Task.WhenAny(up, down).ConfigureAwait(false);
        await done.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(up, down).ConfigureAwait(false);
    }

    private static async Task PumpAsync(Stream from, Stream to, CancellationToken cancellationToken)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            int n;
            while ((n = await from.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
            {
                await to.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                await to.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // Either side went away; the tunnel ends.
        }
    }

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        if (!context.InitialRequestMessage.Options.TryGetValue(s_target, out var target))
        {
            throw new InvalidOperationException("a proxy request without a target");
        }

        return await _network.ConnectAsync(target.Record, target.Port, cancellationToken).ConfigureAwait(false) ?? throw new PortClosedException();
    }

    private static bool FindPortClosed(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is PortClosedException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Upstream's answer for a port nothing listens on, in its JSON shape.</summary>
    private static async Task WritePortClosedAsync(HttpContext context, string id, int port)
    {
        context.Response.StatusCode = 502;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(
            $"{{\"message\":\"The sandbox is running but port is not open\",\"sandboxId\":\"{id}\",\"port\":{port},\"code\":502}}").ConfigureAwait(false);
    }

    private static bool TokenMatches(string? given, string expected) =>
        given is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(expected));

    public void Dispose() => _client.Dispose();

    [LoggerMessage(EventId = 600, Level = LogLevel.Debug, Message = "port {Port} of sandbox {Id} failed: {Reason}")]
    private partial void LogUpstreamFailed(string id, int port, string reason);
}
