using System.Globalization;
using System.Security.Cryptography;
using Airlock.Core.Tenancy;
using Airlock.Server.E2b;
using Airlock.Server.E2b.ControlPlane;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Airlock.Server.Auth;

/// <summary>
/// Who is calling, for every request, set as <see cref="Caller.Current"/> for Core:
/// <list type="bullet">
/// <item>the sandbox surfaces (<c>/_sandbox/…</c>, after the edge): that one sandbox; its access token is checked by the surface;</item>
/// <item><c>/v1</c>: an API key (<c>Authorization: Bearer</c> or <c>X-API-Key</c>) or a console session cookie
/// (unsafe methods then need <c>X-CSRF-Token</c>);</item>
/// <item>the E2B control plane: <c>X-API-KEY</c>, errors in E2B's shape.</item>
/// </list>
/// Then the route's scope (<see cref="RouteScopes"/>) and the key's rate limit are checked. The two
/// anonymous routes (their body is the credential) are rate-limited per remote address.
/// </summary>
internal sealed partial class ApiKeyAuthentication(TenancyService tenancy, UserService users, RateLimiter limiter, IOptions<TenancyOptions> options)
{
    public const string SessionCookie = "airlock_session";
    public const string CsrfHeader = "X-CSRF-Token";
    public const string TeamHeader = "X-Airlock-Team";

    /// <summary>
    /// The bootstrap admin key: from <c>AIRLOCK_BOOTSTRAP_API_KEY</c>, or generated on first start
    /// into <c>&lt;data&gt;/admin.key</c> (0600). It belongs to the first team and is the instance admin.
    /// Keys look like <c>e2b_&lt;hex&gt;</c> so the E2B SDKs accept them unchanged.
    /// </summary>
    public static string LoadBootstrapKey(string? configuredKey, string dataDir, ILogger logger)
    {
        if (!string.IsNullOrWhiteSpace(configuredKey))
        {
            return configuredKey.Trim();
        }

        var path = Path.Combine(dataDir, "admin.key");
        if (File.Exists(path))
        {
            return File.ReadAllText(path).Trim();
        }

        var key = "e2b_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        File.WriteAllText(path, "");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(path, key + "\n");
        // Printed once, on the console only (not through the logger, which may ship logs elsewhere).
        Console.WriteLine($"Admin API key (shown once, also saved to {path}): {key}");
        LogGenerated(logger, path);
        return key;
    }

    public static string? Presented(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return authorization[7..].Trim();
        }

        var header = request.Headers["X-API-Key"].ToString();
        return header.Length > 0 ? header : null;
    }

    /// <summary>For the E2B control plane's guard: did an API key authenticate this request?</summary>
    public static bool IsAuthenticated() => Caller.Current is { Kind: CallerKind.ApiKey or CallerKind.User };

    public async Task HandleAsync(HttpContext context, Func<Task> next)
    {
        var request = context.Request;
        var path = request.Path;
        var remote = context.Connection.RemoteIpAddress?.ToString();
        if (path.StartsWithSegments(SandboxRouting.Prefix))
        {
            var id = SandboxRouting.SandboxId(context);
            Caller.Current = new Caller(CallerKind.SandboxToken, null, Scopes.None, false, id, null, remote, id);
            await next().ConfigureAwait(false);
            return;
        }

        var e2b = !path.StartsWithSegments("/v1");
        if (e2b)
        {
            // The control plane: the SDKs send X-API-KEY only. Without one, the endpoint's guard answers 401
            // (and /health and unknown paths need none).
            var header = request.Headers["X-API-KEY"].ToString();
            if (header.Length == 0)
            {
                await next().ConfigureAwait(false);
                return;
            }

            var key = await tenancy.AuthenticateAsync(header, context.RequestAborted).ConfigureAwait(false);
            if (key is null)
            {
                await WriteE2bAsync(context, 401, "invalid API key (unknown, revoked or expired)").ConfigureAwait(false);
                return;
            }

            await AuthorizedAsync(context, FromKey(key, remote), key.Id, e2b: true, next).ConfigureAwait(false);
            return;
        }

        if (IsAnonymous(request))
        {
            // No key to rate-limit by, and each request costs a PBKDF2: limit by remote address.
            var rpm = options.Value.AnonymousRequestsPerMinute;
            if (limiter.TryAcquire("anonymous:" + (remote ?? "-"), rpm) is { } wait)
            {
                await Problems.WriteAsync(context, 429, "rate_limited", $"too many sign-in attempts from this address ({rpm} per minute); retry after {wait} s", "anonymousRequestsPerMinute", rpm, wait).ConfigureAwait(false);
                return;
            }

            Caller.Current = new Caller(CallerKind.System, null, Scopes.None, false, "anonymous", null, remote);
            await next().ConfigureAwait(false);
            return;
        }

        if (Presented(request) is { } presented)
        {
            var key = await tenancy.AuthenticateAsync(presented, context.RequestAborted).ConfigureAwait(false);
            if (key is null)
            {
                await Problems.WriteAsync(context, 401, "unauthorized", "the API key is unknown, revoked or expired").ConfigureAwait(false);
                return;
            }

            await AuthorizedAsync(context, FromKey(key, remote), key.Id, e2b: false, next).ConfigureAwait(false);
            return;
        }

        if (request.Cookies[SessionCookie] is { Length: > 0 } session)
        {
            var caller = await users.AuthenticateSessionAsync(session, request.Headers[TeamHeader].ToString(), remote, context.RequestAborted).ConfigureAwait(false);
            if (caller is null)
            {
                await Problems.WriteAsync(context, 401, "unauthorized", "the session expired or was logged out").ConfigureAwait(false);
                return;
            }

            // The cookie is sent by the browser on its own; a request that changes something must also
            // prove it comes from our page (SameSite=Strict is the first line, this the second).
            if (!IsSafe(request.Method) && !UserService.CsrfMatches(session, request.Headers[CsrfHeader].ToString()))
            {
                await Problems.WriteAsync(context, 403, "csrf_token_invalid", $"a cookie-authenticated {request.Method} needs the {CsrfHeader} header from login").ConfigureAwait(false);
                return;
            }

            await AuthorizedAsync(context, caller, "user:" + caller.ActorId, e2b: false, next).ConfigureAwait(false);
            return;
        }

        await Problems.WriteAsync(context, 401, "unauthorized", "a valid API key is required (Authorization: Bearer <key> or X-API-Key), or a console session").ConfigureAwait(false);
    }

    private async Task AuthorizedAsync(HttpContext context, Caller caller, string rateKey, bool e2b, Func<Task> next)
    {
        var needed = RouteScopes.For(context.Request.Method, context.Request.Path);
        if (needed[0] != Scopes.None && !needed.Any(caller.Has))
        {
            var detail = $"this {(caller.Kind == CallerKind.User ? "role" : "key")} lacks the scope {string.Join(" or ", needed.Select(ScopeNames.Name))} that {context.Request.Method} {context.Request.Path} needs";
            if (e2b)
            {
                await WriteE2bAsync(context, 403, detail).ConfigureAwait(false);
            }
            else
            {
                await Problems.WriteAsync(context, 403, "insufficient_scope", detail).ConfigureAwait(false);
            }

            return;
        }

        if (caller.TeamId is { } teamId)
        {
            var limits = await tenancy.GetLimitsAsync(teamId, context.RequestAborted).ConfigureAwait(false);
            if (limits.RequestsPerMinute is { } rpm && limiter.TryAcquire(rateKey, rpm) is { } retryAfter)
            {
                // Integer seconds: the E2B SDKs (and most HTTP clients) retry after it.
                context.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
                var detail = $"rate limit of {rpm} requests per minute per key exceeded; retry after {retryAfter} s";
                if (e2b)
                {
                    await WriteE2bAsync(context, 429, detail).ConfigureAwait(false);
                }
                else
                {
                    await Problems.WriteAsync(context, 429, "rate_limited", detail, "requestsPerMinute", rpm, retryAfter).ConfigureAwait(false);
                }

                return;
            }
        }

        Caller.Current = caller;
        await next().ConfigureAwait(false);
    }

    private static Caller FromKey(ValidKey key, string? remote) =>
        new(CallerKind.ApiKey, key.TeamId, key.Scopes, key.InstanceAdmin, key.Id, key.Prefix, remote);

    /// <summary>The two /v1 routes whose body is the credential.</summary>
    private static bool IsAnonymous(HttpRequest request) =>
        HttpMethods.IsPost(request.Method) && (request.Path.Equals("/v1/auth/login", StringComparison.Ordinal) || request.Path.Equals("/v1/invitations/accept", StringComparison.Ordinal));

    private static bool IsSafe(string method) => HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method);

    private static Task WriteE2bAsync(HttpContext context, int status, string message) =>
        ControlPlaneEndpoints.Error(status, message).ExecuteAsync(context);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "generated a new admin API key in {Path}")]
    private static partial void LogGenerated(ILogger logger, string path);
}
