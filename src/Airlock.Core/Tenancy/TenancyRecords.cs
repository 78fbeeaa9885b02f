namespace Airlock.Core.Tenancy;

// Rows of the tenancy tables (Dapper maps them by property name; times are unix milliseconds).

internal sealed class TeamRow
{
    public string Id { get; set; } = "";

    public string Name { get; set; } = "";

    public string Plan { get; set; } = "";

    public long CreatedAt { get; set; }

    public int? MaxConcurrentSandboxes { get; set; }

    public int? MaxCpus { get; set; }

    public int? MaxMemoryMb { get; set; }

    public int? MaxTimeoutSeconds { get; set; }

    public double? MonthlySandboxHours { get; set; }

    public int? RequestsPerMinute { get; set; }

    public QuotaLimits Overrides => new()
    {
        MaxConcurrentSandboxes = MaxConcurrentSandboxes,
        MaxCpus = MaxCpus,
        MaxMemoryMb = MaxMemoryMb,
        MaxTimeoutSeconds = MaxTimeoutSeconds,
        MonthlySandboxHours = MonthlySandboxHours,
        RequestsPerMinute = RequestsPerMinute,
    };
}

internal sealed class ApiKeyRow
{
    public string Id { get; set; } = "";

    public string TeamId { get; set; } = "";

    public string Name { get; set; } = "";

    /// <summary>The visible start of the key (<c>e2b_</c> + 8 hex), to tell keys apart.</summary>
    public string Prefix { get; set; } = "";

    /// <summary>SHA-256 of the whole key, hex. Keys are 160 random bits: a fast hash is enough.</summary>
    public string Hash { get; set; } = "";

    public string Scopes { get; set; } = "";

    public int InstanceAdmin { get; set; }

    public long CreatedAt { get; set; }

    public string? CreatedBy { get; set; }

    public long? ExpiresAt { get; set; }

    public long? LastUsedAt { get; set; }

    public long? RevokedAt { get; set; }
}

internal sealed class UserRow
{
    public string Id { get; set; } = "";

    public string Email { get; set; } = "";

    public string? Name { get; set; }

    /// <summary>Versioned: <c>pbkdf2-sha256$&lt;iterations&gt;$&lt;salt b64&gt;$&lt;hash b64&gt;</c>.</summary>
    public string PasswordHash { get; set; } = "";

    public int InstanceAdmin { get; set; }

    public long CreatedAt { get; set; }
}

internal sealed class MemberRow
{
    public string TeamId { get; set; } = "";

    public string UserId { get; set; } = "";

    public string Email { get; set; } = "";

    public string Role { get; set; } = "";

    public long CreatedAt { get; set; }
}

internal sealed class SessionRow
{
    public string Hash { get; set; } = "";

    public string UserId { get; set; } = "";

    public string CsrfHash { get; set; } = "";

    public long CreatedAt { get; set; }

    public long ExpiresAt { get; set; }
}

internal sealed class InvitationRow
{
    public string Id { get; set; } = "";

    public string Hash { get; set; } = "";

    public string TeamId { get; set; } = "";

    public string Email { get; set; } = "";

    public string Role { get; set; } = "";

    public string? CreatedBy { get; set; }

    public long CreatedAt { get; set; }

    public long ExpiresAt { get; set; }

    public long? AcceptedAt { get; set; }
}

internal sealed class AuditEvent
{
    public long Id { get; set; }

    public string TeamId { get; set; } = "";

    public long At { get; set; }

    /// <summary><c>key</c>, <c>user</c>, <c>sandbox</c> (its access token) or <c>system</c>.</summary>
    public string ActorType { get; set; } = "";

    public string ActorId { get; set; } = "";

    /// <summary>The key's prefix or the user's email.</summary>
    public string? ActorLabel { get; set; }

    public string Action { get; set; } = "";

    public string? Target { get; set; }

    public string? Detail { get; set; }

    public string? RemoteAddress { get; set; }
}

internal sealed record AuditQuery(string TeamId, int Limit, long? Before, string? Action, string? SandboxId, long? Since, long? Until);
