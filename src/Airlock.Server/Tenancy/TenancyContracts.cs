using System.Text.Json.Serialization;
using Airlock.Core.Tenancy;

namespace Airlock.Server.Tenancy;

internal sealed record CreateTeamBody(string? Name);

internal sealed record TeamDto(string Id, string Name, string Plan, DateTimeOffset CreatedAt);

internal sealed record CreateKeyBody(string? Name, List<string>? Scopes, DateTimeOffset? ExpiresAt);

internal sealed record CreatedKeyDto(string Id, string Key, string Prefix, string Name, List<string> Scopes, DateTimeOffset? ExpiresAt);

internal sealed record KeyDto(string Id, string Name, string Prefix, List<string> Scopes, DateTimeOffset CreatedAt, string? CreatedBy, DateTimeOffset? ExpiresAt, DateTimeOffset? LastUsedAt);

internal sealed record QuotaBody(
    string? Plan,
    int? MaxConcurrentSandboxes,
    int? MaxCpus,
    int? MaxMemoryMb,
    int? MaxTimeoutSeconds,
    double? MonthlySandboxHours,
    int? RequestsPerMinute);

// Limits leave as Core's QuotaLimits itself: its properties are the JSON fields (docs/api.md, "Quotas").
internal sealed record QuotaDto(string Plan, QuotaLimits Overrides, QuotaLimits Effective);

internal sealed record UsageDto(string TeamId, string Month, double SandboxSeconds, double SandboxHours, int RunningSandboxes, QuotaLimits Limits);

internal sealed record AuditEventDto(
    string Id,
    DateTimeOffset Time,
    string TeamId,
    string ActorType,
    string ActorId,
    string? ActorLabel,
    string Action,
    string? Target,
    string? Detail,
    string? RemoteAddress);

internal sealed record AuditPageDto(List<AuditEventDto> Events, string? NextCursor);

internal sealed record LoginBody(string? Email, string? Password);

internal sealed record MembershipDto(string TeamId, string Role);

internal sealed record LoginDto(string UserId, string Email, string CsrfToken, DateTimeOffset ExpiresAt, List<MembershipDto> Teams);

internal sealed record MeDto(string Kind, string? TeamId, List<string> Scopes, bool InstanceAdmin, string Id, string? Label, string? CsrfToken);

internal sealed record AddMemberBody(string? Email, string? Role, string? Password, string? Name);

internal sealed record MemberDto(string UserId, string Email, string Role, DateTimeOffset CreatedAt);

internal sealed record InviteBody(string? Email, string? Role);

internal sealed record InvitationDto(string Id, string Token, string TeamId, string Email, string Role, DateTimeOffset ExpiresAt);

internal sealed record AcceptBody(string? Token, string? Password, string? Name);

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(CreateTeamBody))]
[JsonSerializable(typeof(TeamDto))]
[JsonSerializable(typeof(List<TeamDto>))]
[JsonSerializable(typeof(CreateKeyBody))]
[JsonSerializable(typeof(CreatedKeyDto))]
[JsonSerializable(typeof(List<KeyDto>))]
[JsonSerializable(typeof(QuotaBody))]
[JsonSerializable(typeof(QuotaDto))]
[JsonSerializable(typeof(UsageDto))]
[JsonSerializable(typeof(AuditPageDto))]
[JsonSerializable(typeof(LoginBody))]
[JsonSerializable(typeof(LoginDto))]
[JsonSerializable(typeof(MeDto))]
[JsonSerializable(typeof(AddMemberBody))]
[JsonSerializable(typeof(MemberDto))]
[JsonSerializable(typeof(List<MemberDto>))]
[JsonSerializable(typeof(InviteBody))]
[JsonSerializable(typeof(InvitationDto))]
[JsonSerializable(typeof(AcceptBody))]
internal sealed partial class TenancyJsonContext : JsonSerializerContext;
