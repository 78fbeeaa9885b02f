namespace Airlock.Core.Tenancy;

/// <summary>Limits of a plan or a team's overrides. Null means "no limit" in a plan and "the plan's value" in an override.</summary>
internal sealed record QuotaLimits
{
    public int? MaxConcurrentSandboxes { get; init; }

    public int? MaxCpus { get; init; }

    public int? MaxMemoryMb { get; init; }

    public int? MaxTimeoutSeconds { get; init; }

    /// <summary>Sandbox-hours per calendar month (UTC); fractions allowed.</summary>
    public double? MonthlySandboxHours { get; init; }

    public int? RequestsPerMinute { get; init; }

    /// <summary>The override's values where set, else the plan's.</summary>
    public QuotaLimits Over(QuotaLimits plan) => new()
    {
        MaxConcurrentSandboxes = MaxConcurrentSandboxes ?? plan.MaxConcurrentSandboxes,
        MaxCpus = MaxCpus ?? plan.MaxCpus,
        MaxMemoryMb = MaxMemoryMb ?? plan.MaxMemoryMb,
        MaxTimeoutSeconds = MaxTimeoutSeconds ?? plan.MaxTimeoutSeconds,
        MonthlySandboxHours = MonthlySandboxHours ?? plan.MonthlySandboxHours,
        RequestsPerMinute = RequestsPerMinute ?? plan.RequestsPerMinute,
    };
}

/// <summary>Configuration section <c>Airlock:Tenancy</c> (plans under <c>Airlock:Plans</c>, loops under <c>Airlock:Quotas</c>).</summary>
internal sealed class TenancyOptions
{
    public const string Section = "Airlock:Tenancy";

    /// <summary>The plan of teams made by <c>POST /v1/teams</c>.</summary>
    public string DefaultPlan { get; set; } = "free";

    /// <summary>The plan of the first team, which owns the bootstrap admin key.</summary>
    public string BootstrapPlan { get; set; } = "enterprise";

    /// <summary>How long a validated key (or team quota) is trusted before it is re-read: the staleness bound for other servers sharing PostgreSQL.</summary>
    public int CacheSeconds { get; set; } = 10;

    /// <summary>How often <c>last_used_at</c> of a key is written at most.</summary>
    public int LastUsedWriteSeconds { get; set; } = 60;

    public int SessionHours { get; set; } = 12;

    public int InvitationDays { get; set; } = 7;

    /// <summary>PBKDF2-SHA256 iterations for new password hashes (OWASP 2023: 600,000).</summary>
    public int PasswordIterations { get; set; } = 600_000;

    /// <summary>
    /// Requests per minute per remote address to the routes that take a credential in their body
    /// (<c>POST /v1/auth/login</c>, <c>/v1/invitations/accept</c>): each costs a PBKDF2. 0: no limit.
    /// </summary>
    public int AnonymousRequestsPerMinute { get; set; } = 20;
}

/// <summary>Section <c>Airlock:Quotas</c>.</summary>
internal sealed class QuotaOptions
{
    public const string Section = "Airlock:Quotas";

    /// <summary>How often usage is metered and flushed and teams over their monthly hours are stopped.</summary>
    public int EnforceIntervalSeconds { get; set; } = 30;
}

/// <summary>Section <c>Airlock:Plans</c>: plan name → limits. The defaults below apply unless configured.</summary>
internal sealed class PlanOptions
{
    public const string Section = "Airlock:Plans";

    public Dictionary<string, QuotaLimits> Plans { get; set; } = new(StringComparer.OrdinalIgnoreCase)
    {
        ["free"] = new() { MaxConcurrentSandboxes = 5, MaxCpus = 2, MaxMemoryMb = 2048, MaxTimeoutSeconds = 3600, MonthlySandboxHours = 100, RequestsPerMinute = 600 },
        ["pro"] = new() { MaxConcurrentSandboxes = 50, MaxCpus = 8, MaxMemoryMb = 16_384, MaxTimeoutSeconds = 86_400, MonthlySandboxHours = 5000, RequestsPerMinute = 6000 },
        ["enterprise"] = new(),
    };
}
