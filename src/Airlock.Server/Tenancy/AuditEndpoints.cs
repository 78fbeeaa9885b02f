using System.Globalization;
using Airlock.Core;
using Airlock.Core.Tenancy;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Tenancy;

/// <summary><c>GET /v1/audit</c>: the caller's team's events, newest first, with filters and a cursor.</summary>
internal static class AuditEndpoints
{
    private const int DefaultLimit = 50;
    private const int MaxLimit = 500;

    public static IEndpointRouteBuilder MapAudit(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/audit", QueryAsync);
        return app;
    }

    private static async Task<IResult> QueryAsync(HttpRequest request, AuditLog audit, CancellationToken cancellationToken)
    {
        var caller = TenancyEndpoints.Caller();
        var teamId = caller.TeamId ?? throw AirlockException.NotFound("team");
        var q = request.Query;
        var limit = DefaultLimit;
        if (q["limit"].ToString() is { Length: > 0 } l && (!int.TryParse(l, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > MaxLimit))
        {
            throw AirlockException.Invalid($"limit must be between 1 and {MaxLimit}");
        }

        long? before = null;
        if (q["cursor"].ToString() is { Length: > 0 } c)
        {
            before = long.TryParse(c, CultureInfo.InvariantCulture, out var id) && id > 0 ? id : throw AirlockException.Invalid("cursor is not one this server returned");
        }

        var events = await audit.QueryAsync(
            new AuditQuery(teamId, limit, before, Optional(q["action"]), Optional(q["sandboxId"]), Time(q["since"], "since"), Time(q["until"], "until")),
            cancellationToken);
        var dtos = events.Select(e => new AuditEventDto(
            e.Id.ToString(CultureInfo.InvariantCulture), DateTimeOffset.FromUnixTimeMilliseconds(e.At), e.TeamId, e.ActorType, e.ActorId, e.ActorLabel, e.Action, e.Target, e.Detail, e.RemoteAddress)).ToList();
        var next = events.Count == limit ? events[^1].Id.ToString(CultureInfo.InvariantCulture) : null;
        return TypedResults.Json(new AuditPageDto(dtos, next), TenancyJsonContext.Default.AuditPageDto);
    }

    private static string? Optional(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static long? Time(string? value, string name)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        return DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t.ToUnixTimeMilliseconds()
            : throw AirlockException.Invalid($"{name} must be an ISO 8601 time");
    }
}
