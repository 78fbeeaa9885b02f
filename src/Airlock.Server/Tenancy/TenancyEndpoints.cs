using Airlock.Core;
using Airlock.Core.Tenancy;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Tenancy;

/// <summary>Teams, API keys, quotas, usage, members and invitations: thin adapters over <see cref="TenancyService"/> and <see cref="UserService"/>.</summary>
internal static class TenancyEndpoints
{
    public static IEndpointRouteBuilder MapTenancy(this IEndpointRouteBuilder app)
    {
        var teams = app.MapGroup("/v1/teams");
        teams.MapPost("", CreateTeamAsync);
        teams.MapGet("", ListTeamsAsync);
        teams.MapGet("/{id}", GetTeamAsync);
        teams.MapPost("/{id}/api-keys", CreateKeyAsync);
        teams.MapGet("/{id}/api-keys", ListKeysAsync);
        teams.MapPut("/{id}/quota", SetQuotaAsync);
        teams.MapGet("/{id}/quota", GetQuotaAsync);
        teams.MapGet("/{id}/usage", GetUsageAsync);
        teams.MapGet("/{id}/members", ListMembersAsync);
        teams.MapPost("/{id}/members", AddMemberAsync);
        teams.MapDelete("/{id}/members/{userId}", RemoveMemberAsync);
        teams.MapPost("/{id}/invitations", InviteAsync);
        app.MapDelete("/v1/api-keys/{id}", RevokeKeyAsync);
        app.MapPost("/v1/invitations/accept", AcceptAsync);
        return app;
    }

    internal static Caller Caller() => Core.Tenancy.Caller.Current ?? throw new AirlockException("unauthorized", 401, "not authenticated");

    private static async Task<IResult> CreateTeamAsync(HttpRequest request, TenancyService tenancy, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, TenancyJsonContext.Default.CreateTeamBody, cancellationToken);
        var team = await tenancy.CreateTeamAsync(Caller(), body.Name, cancellationToken);
        return TypedResults.Json(ToDto(team), TenancyJsonContext.Default.TeamDto, statusCode: 201);
    }

    private static async Task<IResult> ListTeamsAsync(TenancyService tenancy, CancellationToken cancellationToken)
    {
        var teams = await tenancy.ListTeamsAsync(Caller(), cancellationToken);
        return TypedResults.Json(teams.Select(ToDto).ToList(), TenancyJsonContext.Default.ListTeamDto);
    }

    private static async Task<IResult> GetTeamAsync(string id, TenancyService tenancy, CancellationToken cancellationToken)
    {
        var team = await tenancy.RequireTeamAsync(Caller(), id, Scopes.None, cancellationToken);
        return TypedResults.Json(ToDto(team), TenancyJsonContext.Default.TeamDto);
    }

    private static async Task<IResult> CreateKeyAsync(string id, HttpRequest request, TenancyService tenancy, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, TenancyJsonContext.Default.CreateKeyBody, cancellationToken);
        var (row, secret) = await tenancy.CreateKeyAsync(Caller(), id, body.Name, body.Scopes, body.ExpiresAt, cancellationToken);
        var dto = new CreatedKeyDto(row.Id, secret, row.Prefix, row.Name, ScopeNames.ToList(ScopeNames.ParseStored(row.Scopes)), Time(row.ExpiresAt));
        return TypedResults.Json(dto, TenancyJsonContext.Default.CreatedKeyDto, statusCode: 201);
    }

    private static async Task<IResult> ListKeysAsync(string id, TenancyService tenancy, CancellationToken cancellationToken)
    {
        var keys = await tenancy.ListKeysAsync(Caller(), id, cancellationToken);
        var list = keys.Select(k => new KeyDto(
            k.Id, k.Name, k.Prefix, ScopeNames.ToList(ScopeNames.ParseStored(k.Scopes)), DateTimeOffset.FromUnixTimeMilliseconds(k.CreatedAt), k.CreatedBy, Time(k.ExpiresAt), Time(k.LastUsedAt))).ToList();
        return TypedResults.Json(list, TenancyJsonContext.Default.ListKeyDto);
    }

    private static async Task<IResult> RevokeKeyAsync(string id, TenancyService tenancy, CancellationToken cancellationToken)
    {
        await tenancy.RevokeKeyAsync(Caller(), id, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> SetQuotaAsync(string id, HttpRequest request, TenancyService tenancy, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, TenancyJsonContext.Default.QuotaBody, cancellationToken);
        var overrides = new QuotaLimits
        {
            MaxConcurrentSandboxes = body.MaxConcurrentSandboxes,
            MaxCpus = body.MaxCpus,
            MaxMemoryMb = body.MaxMemoryMb,
            MaxTimeoutSeconds = body.MaxTimeoutSeconds,
            MonthlySandboxHours = body.MonthlySandboxHours,
            RequestsPerMinute = body.RequestsPerMinute,
        };
        await tenancy.SetQuotaAsync(Caller(), id, body.Plan, overrides, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> GetQuotaAsync(string id, TenancyService tenancy, CancellationToken cancellationToken)
    {
        var team = await tenancy.RequireTeamAsync(Caller(), id, Scopes.UsageRead, cancellationToken);
        var effective = await tenancy.GetLimitsAsync(id, cancellationToken);
        return TypedResults.Json(new QuotaDto(team.Plan, team.Overrides, effective), TenancyJsonContext.Default.QuotaDto);
    }

    private static async Task<IResult> GetUsageAsync(string id, TenancyService tenancy, QuotaLedger ledger, TimeProvider time, CancellationToken cancellationToken)
    {
        await tenancy.RequireTeamAsync(Caller(), id, Scopes.UsageRead, cancellationToken);
        var usedMs = await ledger.UsedMsAsync(id, cancellationToken);
        var limits = await tenancy.GetLimitsAsync(id, cancellationToken);
        var dto = new UsageDto(id, QuotaLedger.MonthOf(time.GetUtcNow()), usedMs / 1000.0, usedMs / 3_600_000.0, ledger.RunningOf(id).Count, limits);
        return TypedResults.Json(dto, TenancyJsonContext.Default.UsageDto);
    }

    private static async Task<IResult> ListMembersAsync(string id, UserService users, CancellationToken cancellationToken)
    {
        var members = await users.ListMembersAsync(Caller(), id, cancellationToken);
        return TypedResults.Json(members.Select(ToDto).ToList(), TenancyJsonContext.Default.ListMemberDto);
    }

    private static async Task<IResult> AddMemberAsync(string id, HttpRequest request, UserService users, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, TenancyJsonContext.Default.AddMemberBody, cancellationToken);
        var member = await users.AddMemberAsync(Caller(), id, body.Email, body.Role, body.Password, body.Name, cancellationToken);
        return TypedResults.Json(ToDto(member), TenancyJsonContext.Default.MemberDto, statusCode: 201);
    }

    private static async Task<IResult> RemoveMemberAsync(string id, string userId, UserService users, CancellationToken cancellationToken)
    {
        await users.RemoveMemberAsync(Caller(), id, userId, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> InviteAsync(string id, HttpRequest request, UserService users, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, TenancyJsonContext.Default.InviteBody, cancellationToken);
        var (row, token) = await users.InviteAsync(Caller(), id, body.Email, body.Role, cancellationToken);
        var dto = new InvitationDto(row.Id, token, row.TeamId, row.Email, row.Role, DateTimeOffset.FromUnixTimeMilliseconds(row.ExpiresAt));
        return TypedResults.Json(dto, TenancyJsonContext.Default.InvitationDto, statusCode: 201);
    }

    private static async Task<IResult> AcceptAsync(HttpRequest request, UserService users, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, TenancyJsonContext.Default.AcceptBody, cancellationToken);
        var member = await users.AcceptAsync(body.Token, body.Password, body.Name, cancellationToken);
        return TypedResults.Json(ToDto(member), TenancyJsonContext.Default.MemberDto);
    }

    private static TeamDto ToDto(TeamRow t) => new(t.Id, t.Name, t.Plan, DateTimeOffset.FromUnixTimeMilliseconds(t.CreatedAt));

    private static MemberDto ToDto(MemberRow m) => new(m.UserId, m.Email, m.Role, DateTimeOffset.FromUnixTimeMilliseconds(m.CreatedAt));

    private static DateTimeOffset? Time(long? ms) => ms is { } v ? DateTimeOffset.FromUnixTimeMilliseconds(v) : null;
}
