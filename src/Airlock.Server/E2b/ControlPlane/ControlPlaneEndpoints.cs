using System.Text.Json.Serialization.Metadata;
using Airlock.Core;
using Airlock.Core.Sandboxes;
using Airlock.Runtime.Linux;
using Airlock.Server.Auth;
using Airlock.Server.Http;
using Microsoft.Extensions.Options;

namespace Airlock.Server.E2b.ControlPlane;

/// <summary>
/// E2B's control-plane REST API (spec §1, §5.1) as a thin adapter over <see cref="SandboxService"/>:
/// create (v2 and the v1 path of Python and JS ≤ 2.50), connect, list, get, kill, timeout,
/// metrics, and the pause/resume family answered with the codes the SDKs map. Every answer,
/// errors included, has E2B's shape (<c>{"code":&lt;status&gt;,"message"}</c>), because the SDKs
/// branch on the integer <c>code</c> of the body, not on the HTTP status.
/// </summary>
internal static partial class ControlPlaneEndpoints
{
    /// <summary>Deprecated upstream but still required by the Python SDK; upstream returns this constant.</summary>
    public const string ClientId = "6532622b";

    private const int V2DefaultTimeout = 300;

    /// <summary>The v1 spec default; Python and JS ≤ 2.50 always send a timeout anyway.</summary>
    private const int V1DefaultTimeout = 15;

    private const int ConnectDefaultTimeout = 300;

    public static IEndpointRouteBuilder MapE2bControlPlane(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("").AddEndpointFilter((context, next) => GuardAsync(context, next));
        group.MapPost("/v2/sandboxes", (HttpContext c, SandboxService s, IOptions<E2bOptions> o) => CreateAsync(c, s, o.Value, V2DefaultTimeout));
        group.MapPost("/sandboxes", (HttpContext c, SandboxService s, IOptions<E2bOptions> o) => CreateAsync(c, s, o.Value, V1DefaultTimeout));
        group.MapPost("/v2/sandboxes/{id}/connect", ConnectAsync);
        group.MapPost("/sandboxes/{id}/connect", ConnectAsync);
        group.MapGet("/v2/sandboxes", ListV2);
        group.MapGet("/sandboxes", ListV1);
        group.MapGet("/sandboxes/{id}", Get);
        group.MapDelete("/sandboxes/{id}", KillAsync);
        group.MapPost("/sandboxes/{id}/timeout", SetTimeoutAsync);
        group.MapPut("/sandboxes/{id}/network", SetNetworkAsync);
        group.MapGet("/sandboxes/{id}/metrics", Metrics);
        group.MapPost("/sandboxes/{id}/pause", Pause);
        group.MapPost("/sandboxes/{id}/resume", Resume);
        group.MapPost("/sandboxes/{id}/snapshots", (string id, SandboxService s) => NotSupported(id, s, "snapshots"));
        group.MapPost("/sandboxes/{id}/fork", (string id, SandboxService s) => NotSupported(id, s, "forking"));
        return app;
    }

    private static async ValueTask<object?> GuardAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        // The SDKs send only X-API-KEY to the control plane (spec §1).
        var key = context.HttpContext.Request.Headers["X-API-KEY"].ToString();
        // The key was authenticated (and its scope and rate limit checked) by ApiKeyAuthentication.
        if (!ApiKeyAuthentication.IsAuthenticated())
        {
            return Error(401, key.Length == 0 ? "missing API key: set the X-API-KEY header (E2B_API_KEY)" : "invalid API key");
        }

        try
        {
            return await next(context).ConfigureAwait(false);
        }
        catch (AirlockException ex)
        {
            return Error(ex.Status, ex.Message);
        }
    }

    private static async Task<IResult> CreateAsync(HttpContext context, SandboxService sandboxes, E2bOptions options, int defaultTimeout)
    {
        var body = await JsonBody.ReadAsync(context.Request, E2bControlPlaneJsonContext.Default.NewSandboxBody, context.RequestAborted);
        var template = body?.TemplateId ?? body?.TemplateIdSnake;
        if (string.IsNullOrEmpty(template))
        {
            throw AirlockException.Invalid("templateID is required");
        }

        // autoPause and secure are accepted and ignored: there is no pause yet, and every sandbox gets
        // an access token (the envd surface always checks it). allow_internet_access and network map
        // onto the Core network config (docs/networking.md).
        var internet = body?.AllowInternetAccess ?? body?.AllowInternetAccessCamel;
        var network = body?.Network;
        var live = await sandboxes.CreateAsync(
            new CreateSandboxRequest
            {
                Template = template,
                TimeoutSeconds = body?.Timeout ?? defaultTimeout,
                Metadata = body?.Metadata,
                Env = body?.EnvVars ?? body?.EnvVarsSnake,
                Network = internet is null && network is null ? null : new NetworkConfig
                {
                    // E2B: internet unless switched off; rules imply it.
                    Mode = internet == false ? NetworkMode.None : NetworkMode.Internet,
                    Allow = network?.AllowOut ?? [],
                    Deny = network?.DenyOut ?? [],
                    AllowPublicTraffic = network?.AllowPublicTraffic ?? true,
                },
            },
            context.RequestAborted);
        return Json(ToSandbox(live, context, options), E2bControlPlaneJsonContext.Default.E2bSandboxDto, 201);
    }

    private static async Task<IResult> ConnectAsync(string id, HttpContext context, SandboxService sandboxes, IOptions<E2bOptions> options, TimeProvider time)
    {
        var body = await JsonBody.ReadAsync(context.Request, E2bControlPlaneJsonContext.Default.ConnectBody, context.RequestAborted);
        var live = sandboxes.Get(id);
        var timeout = body?.Timeout ?? ConnectDefaultTimeout;

        // Connect only ever extends the TTL; a running sandbox answers 200 (201 would mean "resumed").
        if (timeout > 0 && time.GetUtcNow().AddSeconds(timeout) > live.Record.ExpiresAt)
        {
            await sandboxes.SetTimeoutAsync(id, timeout, context.RequestAborted);
        }

        return Json(ToSandbox(live, context, options.Value), E2bControlPlaneJsonContext.Default.E2bSandboxDto, 200);
    }

    private static IResult ListV2(HttpContext context, SandboxService sandboxes, IOptions<E2bOptions> options)
    {
        var query = context.Request.Query;
        var metadata = ListQuery.ParseMetadata(query["metadata"]);
        var (running, _) = ListQuery.ParseStates(query["state"]);
        var limit = ListQuery.ParseLimit(query["limit"]);
        var ascending = ListQuery.ParseAscending(query["order"]);
        var startedAfter = ListQuery.ParseTime(query["startedAfter"], "startedAfter");
        string? template = query["template"];
        string? nextToken = query["nextToken"];
        var cursor = string.IsNullOrEmpty(nextToken) ? ((DateTimeOffset, string)?)null : ListQuery.DecodeCursor(nextToken);

        // Every sandbox here is running (no pause yet), so a paused-only query is empty.
        var all = running ? sandboxes.List(metadata) : [];
        var matching = all
            .Where(s => startedAfter is null || s.Record.CreatedAt >= startedAfter)
            .Where(s => string.IsNullOrEmpty(template) || s.Record.Template == template);
        var ordered = ascending
            ? matching.OrderBy(s => s.Record.CreatedAt).ThenBy(s => s.Record.Id, StringComparer.Ordinal)
            : matching.OrderByDescending(s => s.Record.CreatedAt).ThenByDescending(s => s.Record.Id, StringComparer.Ordinal);
        var rest = ordered.Where(s => cursor is not { } c || IsAfter(s.Record, c, ascending)).ToList();
        var page = rest.Take(limit).ToList();

        // The SDK's paginator sets hasNext from the mere presence of the header.
        if (rest.Count > page.Count)
        {
            var last = page[^1].Record;
            context.Response.Headers["X-Next-Token"] = ListQuery.EncodeCursor(last.CreatedAt, last.Id);
        }

        context.Response.Headers["X-Total-Running"] = sandboxes.List().Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Json(page.Select(s => ToListed(s, options.Value)).ToList(), E2bControlPlaneJsonContext.Default.ListE2bListedSandboxDto, 200);
    }

    /// <summary>The deprecated v1 list (old SDKs): running sandboxes, metadata filter, no paging.</summary>
    private static IResult ListV1(HttpContext context, SandboxService sandboxes, IOptions<E2bOptions> options)
    {
        var metadata = ListQuery.ParseMetadata(context.Request.Query["metadata"]);
        var list = sandboxes.List(metadata).Select(s => ToListed(s, options.Value)).ToList();
        return Json(list, E2bControlPlaneJsonContext.Default.ListE2bListedSandboxDto, 200);
    }

    private static IResult Get(string id, HttpContext context, SandboxService sandboxes, IOptions<E2bOptions> options)
    {
        var live = sandboxes.Get(id);
        var r = live.Record;
        var detail = new E2bSandboxDetailDto(
            r.Id, ClientId, r.Template, r.Template, options.Value.EnvdVersion, Core.Tenancy.Caller.SecretForWriters(r.AccessToken), Domain(context, options.Value),
            r.CreatedAt, r.ExpiresAt, r.Cpus, r.MemoryMb, r.DiskMb, "running", r.Metadata,
            new E2bLifecycleDto("kill", false), []);
        return Json(detail, E2bControlPlaneJsonContext.Default.E2bSandboxDetailDto, 200);
    }

    private static async Task<IResult> KillAsync(string id, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        await sandboxes.KillAsync(id, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> SetTimeoutAsync(string id, HttpRequest request, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.ReadAsync(request, E2bControlPlaneJsonContext.Default.E2bTimeoutBody, cancellationToken);
        if (body?.Timeout is not { } seconds)
        {
            throw AirlockException.Invalid("timeout (seconds) is required");
        }

        // Unknown ids are 404 before the range check, as the SDK maps 404 to SandboxNotFoundError.
        sandboxes.Get(id);
        await sandboxes.SetTimeoutAsync(id, seconds, cancellationToken);
        return TypedResults.NoContent();
    }

    /// <summary>
    /// One sample, taken now, from the sandbox's cgroup (memory) and the statfs of its root, whose
    /// overlay reports the writable tmpfs layer, i.e. the disk quota. No history is kept, so
    /// <c>start</c>/<c>end</c> are not applied.
    /// </summary>
    private static IResult Metrics(string id, SandboxService sandboxes, TimeProvider time)
    {
        var r = sandboxes.Get(id).Record;
        var now = time.GetUtcNow();
        var usage = sandboxes.GetUsage(id);
        var metric = new E2bMetricDto(
            now, now.ToUnixTimeSeconds(), r.Cpus, 0, usage.MemoryUsed, usage.MemoryLimit, 0, usage.DiskUsed, usage.DiskTotal);
        return Json([metric], E2bControlPlaneJsonContext.Default.ListE2bMetricDto, 200);
    }

    /// <summary>
    /// Pausing needs a snapshot the runtime cannot take yet. 409 is the code the SDKs map
    /// (<c>pause()</c> returns false) rather than an exception; the sandbox keeps running.
    /// </summary>
    private static IResult Pause(string id, SandboxService sandboxes)
    {
        sandboxes.Get(id);
        return Error(409, $"sandbox '{id}' cannot be paused: this Airlock server does not support pause yet; it keeps running");
    }

    /// <summary>Nothing is ever paused, so an existing sandbox is running: upstream's 409.</summary>
    private static IResult Resume(string id, SandboxService sandboxes)
    {
        sandboxes.Get(id);
        return Error(409, $"sandbox '{id}' is already running");
    }

    private static IResult NotSupported(string id, SandboxService sandboxes, string what)
    {
        sandboxes.Get(id);
        return Error(501, $"{what} are not supported by this Airlock server yet");
    }

    private static bool IsAfter(SandboxRecord r, (DateTimeOffset StartedAt, string Id) cursor, bool ascending)
    {
        var byTime = r.CreatedAt.UtcTicks.CompareTo(cursor.StartedAt.UtcTicks);
        var order = byTime != 0 ? byTime : string.CompareOrdinal(r.Id, cursor.Id);
        return ascending ? order > 0 : order < 0;
    }

    private static E2bSandboxDto ToSandbox(LiveSandbox live, HttpContext context, E2bOptions options) => new(
        live.Record.Id, ClientId, live.Record.Template, live.Record.Template, options.EnvdVersion, live.Record.AccessToken, live.Record.TrafficAccessToken, Domain(context, options));

    /// <summary><c>PUT /sandboxes/{id}/network</c>: the same Core call as the native API's.</summary>
    private static async Task<IResult> SetNetworkAsync(string id, HttpRequest request, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.ReadAsync(request, E2bControlPlaneJsonContext.Default.E2bNetworkBody, cancellationToken);
        var current = sandboxes.Get(id).Record.Network;
        var hasRules = body?.AllowOut is not null || body?.DenyOut is not null;
        await sandboxes.SetNetworkAsync(
            id,
            current with
            {
                Mode = body?.AllowInternetAccess switch
                {
                    false => NetworkMode.None,
                    true => NetworkMode.Internet,
                    null => hasRules ? NetworkMode.Internet : current.Mode,
                },
                Allow = body?.AllowOut ?? (hasRules ? [] : current.Allow),
                Deny = body?.DenyOut ?? (hasRules ? [] : current.Deny),
            },
            cancellationToken);
        return TypedResults.NoContent();
    }

    private static E2bListedSandboxDto ToListed(LiveSandbox live, E2bOptions options)
    {
        var r = live.Record;
        return new E2bListedSandboxDto(
            r.Id, ClientId, r.Template, r.Template, r.CreatedAt, r.ExpiresAt, r.Cpus, r.MemoryMb, r.DiskMb, "running", options.EnvdVersion, r.Metadata, []);
    }

    /// <summary>The configured domain, else this request's host (and port), so <c>getHost</c> points back here.</summary>
    private static string Domain(HttpContext context, E2bOptions options) =>
        string.IsNullOrEmpty(options.Domain) ? context.Request.Host.Value ?? "localhost" : options.Domain;

    private static IResult Json<T>(T value, JsonTypeInfo<T> type, int status) => TypedResults.Json(value, type, statusCode: status);

    public static IResult Error(int status, string message) =>
        TypedResults.Json(new E2bErrorDto(status, message), E2bControlPlaneJsonContext.Default.E2bErrorDto, statusCode: status);
}
