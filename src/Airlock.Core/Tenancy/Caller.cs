namespace Airlock.Core.Tenancy;

internal enum CallerKind
{
    /// <summary>An API key of a team.</summary>
    ApiKey,
    /// <summary>A console user with a session cookie, acting in one of their teams.</summary>
    User,
    /// <summary>The sandbox surface (envd, code interpreter): authorised by that one sandbox's access token.</summary>
    SandboxToken,
    /// <summary>The server itself (quota enforcement, expiry).</summary>
    System,
}

/// <summary>
/// Who is calling, set by the auth middleware for the duration of a request and read by Core
/// (<see cref="Current"/> is an <see cref="AsyncLocal{T}"/>, so it flows into everything the
/// request awaits). Isolation is enforced against it in one place, <c>SandboxService.Get/List</c>:
/// no caller sees nothing (default deny).
/// </summary>
internal sealed record Caller(
    CallerKind Kind,
    string? TeamId,
    Scopes Scopes,
    bool InstanceAdmin,
    string ActorId,
    string? ActorLabel,
    string? RemoteAddress,
    string? SandboxId = null)
{
    private static readonly AsyncLocal<Caller?> s_current = new();

    public static Caller? Current
    {
        get => s_current.Value;
        set => s_current.Value = value;
    }

    public static Caller ForSystem(string what) => new(CallerKind.System, null, Scopes.None, false, what, null, null);

    public bool Has(Scopes scope) => (Scopes & scope) == scope;

    /// <summary>
    /// A sandbox's secrets (the envd access token grants exec and files) are shown only to callers
    /// that may write to it; a read-only key gets null instead, so it cannot escalate through them.
    /// </summary>
    public static string? SecretForWriters(string? secret) =>
        Current is { } c && (c.Kind == CallerKind.SandboxToken || c.Has(Scopes.SandboxesWrite)) ? secret : null;

    /// <summary>The isolation rule: a team sees its own sandboxes; a sandbox token sees its sandbox.</summary>
    public bool CanAccess(string sandboxId, string sandboxTeamId) => Kind switch
    {
        CallerKind.SandboxToken => SandboxId == sandboxId,
        CallerKind.ApiKey or CallerKind.User => TeamId == sandboxTeamId,
        _ => false,
    };
}
