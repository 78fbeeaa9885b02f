using Airlock.Core.Sandboxes;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Sandboxes;

internal static class SandboxEndpoints
{
    public static IEndpointRouteBuilder MapSandboxes(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/sandboxes");
        group.MapPost("", CreateAsync);
        group.MapGet("", List);
        group.MapGet("/{id}", Get);
        group.MapDelete("/{id}", KillAsync);
        group.MapPost("/{id}/timeout", SetTimeoutAsync);
        group.MapGet("/{id}/metrics", Metrics);
        group.MapPut("/{id}/network", SetNetworkAsync);
        return app;
    }

    private static async Task<IResult> CreateAsync(HttpRequest request, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.ReadAsync(request, ApiJsonContext.Default.CreateSandboxBody, cancellationToken);
        var live = await sandboxes.CreateAsync(
            new CreateSandboxRequest
            {
                Template = body?.Template,
                TimeoutSeconds = body?.TimeoutSeconds,
                Metadata = body?.Metadata,
                Env = body?.Env,
                Cpus = body?.Cpus,
                MemoryMb = body?.MemoryMb,
                DiskMb = body?.DiskMb,
                Network = body?.Network is { } network ? ToConfig(network) : null,
            },
            cancellationToken);
        return TypedResults.Json(ToDto(live.Record), ApiJsonContext.Default.SandboxDto, statusCode: 201);
    }

    private static IResult List(HttpRequest request, SandboxService sandboxes)
    {
        // ?metadata.k=v, repeatable, all must match.
        var filter = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, values) in request.Query)
        {
            if (key.StartsWith("metadata.", StringComparison.Ordinal) && key.Length > 9)
            {
                filter[key[9..]] = values.ToString();
            }
        }

        var list = sandboxes.List(filter).Select(s => ToDto(s.Record)).ToList();
        return TypedResults.Json(list, ApiJsonContext.Default.ListSandboxDto);
    }

    private static IResult Get(string id, SandboxService sandboxes) =>
        TypedResults.Json(ToDto(sandboxes.Get(id).Record), ApiJsonContext.Default.SandboxDto);

    private static async Task<IResult> KillAsync(string id, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        await sandboxes.KillAsync(id, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> SetTimeoutAsync(string id, HttpRequest request, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, ApiJsonContext.Default.TimeoutBody, cancellationToken);
        if (body.TimeoutSeconds is not { } seconds)
        {
            throw Core.AirlockException.Invalid("timeoutSeconds is required");
        }

        await sandboxes.SetTimeoutAsync(id, seconds, cancellationToken);
        return TypedResults.NoContent();
    }

    private static IResult Metrics(string id, SandboxService sandboxes)
    {
        var u = sandboxes.GetUsage(id);
        var n = sandboxes.GetNetworkUsage(id);
        return TypedResults.Json(
            new SandboxMetricsDto(u.MemoryUsed, u.MemoryLimit, u.DiskUsed, u.DiskTotal)
            {
                NetworkSentBytes = n.SentBytes,
                NetworkReceivedBytes = n.ReceivedBytes,
                EgressSentBytes = n.EgressSentBytes,
                EgressReceivedBytes = n.EgressReceivedBytes,
                ProxySentBytes = n.ProxySentBytes,
                ProxyReceivedBytes = n.ProxyReceivedBytes,
            },
            ApiJsonContext.Default.SandboxMetricsDto);
    }

    private static async Task<IResult> SetNetworkAsync(string id, HttpRequest request, SandboxService sandboxes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, ApiJsonContext.Default.NetworkBody, cancellationToken);
        await sandboxes.SetNetworkAsync(id, ToConfig(body), cancellationToken);
        return TypedResults.NoContent();
    }

    public static NetworkConfig ToConfig(NetworkBody body) => new()
    {
        Mode = NetworkConfig.ParseMode(body.Mode),
        Allow = body.Allow ?? [],
        Deny = body.Deny ?? [],
        AllowPublicTraffic = body.AllowPublicTraffic ?? true,
    };

    public static NetworkDto ToDto(NetworkConfig c) =>
        new(c.Mode.ToString().ToLowerInvariant(), [.. c.Allow], [.. c.Deny], c.AllowPublicTraffic);

    public static SandboxDto ToDto(SandboxRecord r) => new(
        r.Id, r.Template, r.State.ToString().ToLowerInvariant(), r.CreatedAt, r.ExpiresAt, r.Metadata, r.Cpus, r.MemoryMb, r.DiskMb, Core.Tenancy.Caller.SecretForWriters(r.AccessToken))
    {
        Network = ToDto(r.Network),
        TrafficAccessToken = Core.Tenancy.Caller.SecretForWriters(r.TrafficAccessToken),
    };
}
