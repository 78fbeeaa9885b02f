using System.Security.Cryptography;
using System.Text;
using Airlock.Core.Store;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Tenancy;

/// <summary>A console session: the secret for the cookie and the CSRF token for unsafe requests.</summary>
internal sealed record NewSession(UserRow User, string Token, string CsrfToken, DateTimeOffset ExpiresAt);

/// <summary>
/// Users (email + PBKDF2 password), console sessions, team membership with roles, and
/// invitations. Session and invitation secrets are stored as SHA-256 hashes, like keys.
/// </summary>
internal sealed partial class UserService(
    SqlTenancyStore store,
    TenancyService tenancy,
    AuditLog audit,
    IOptions<TenancyOptions> options,
    TimeProvider time,
    ILogger<UserService> logger)
{
    private const int MinPasswordLength = 8;
    private readonly TenancyOptions _options = options.Value;
    private readonly Lazy<string> _dummyHash = new(() => PasswordHasher.Hash("not a password", options.Value.PasswordIterations));

    public async Task<NewSession> LoginAsync(string? email, string? password, CancellationToken cancellationToken = default)
    {
        var user = string.IsNullOrEmpty(email) ? null : await store.GetUserByEmailAsync(NormalizeEmail(email), cancellationToken).ConfigureAwait(false);
        // An unknown email costs the same PBKDF2 as a wrong password, so timing does not tell them apart.
        var ok = PasswordHasher.Verify(password ?? "", user?.PasswordHash ?? _dummyHash.Value) && user is not null;
        if (!ok)
        {
            LogLoginFailed();
            throw new AirlockException("invalid_credentials", 401, "wrong email or password");
        }

        var token = Secret();
        var now = time.GetUtcNow();
        var expires = now.AddHours(_options.SessionHours);
        await store.InsertSessionAsync(
            new SessionRow { Hash = TenancyService.HashKey(token), UserId = user!.Id, CsrfHash = TenancyService.HashKey(CsrfOf(token)), CreatedAt = now.ToUnixTimeMilliseconds(), ExpiresAt = expires.ToUnixTimeMilliseconds() },
            cancellationToken).ConfigureAwait(false);
        return new NewSession(user, token, CsrfOf(token), expires);
    }

    public Task LogoutAsync(string token, CancellationToken cancellationToken = default) =>
        store.DeleteSessionAsync(TenancyService.HashKey(token), cancellationToken);

    /// <summary>
    /// The CSRF token of a session, derived from its secret: a page can ask for it again
    /// (<c>GET /v1/auth/me</c>) but another origin can neither read it nor forge it.
    /// </summary>
    public static string CsrfOf(string sessionToken) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("airlock-csrf:" + sessionToken)));

    public static bool CsrfMatches(string sessionToken, string? presented) =>
        presented is { Length: > 0 } && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(CsrfOf(sessionToken)), Encoding.UTF8.GetBytes(presented));

    /// <summary>
    /// The caller for a session cookie, acting in <paramref name="teamId"/> (or their oldest
    /// team); null when the session is unknown or expired.
    /// </summary>
    public async Task<Caller?> AuthenticateSessionAsync(string token, string? teamId, string? remoteAddress, CancellationToken cancellationToken = default)
    {
        var session = await store.GetSessionAsync(TenancyService.HashKey(token), cancellationToken).ConfigureAwait(false);
        if (session is null || session.ExpiresAt <= time.GetUtcNow().ToUnixTimeMilliseconds())
        {
            return null;
        }

        var user = await store.GetUserAsync(session.UserId, cancellationToken).ConfigureAwait(false);
        if (user is null)
        {
            return null;
        }

        var memberships = await store.ListMembershipsAsync(user.Id, cancellationToken).ConfigureAwait(false);
        var membership = string.IsNullOrEmpty(teamId) ? memberships.FirstOrDefault() : memberships.FirstOrDefault(m => m.TeamId == teamId);
        if (!string.IsNullOrEmpty(teamId) && membership is null)
        {
            throw AirlockException.NotFound($"team '{teamId}'");
        }

        return new Caller(
            CallerKind.User,
            membership?.TeamId,
            membership is null ? Scopes.None : Roles.ScopesOf(membership.Role),
            user.InstanceAdmin != 0,
            user.Id,
            user.Email,
            remoteAddress);
    }

    public async Task<(UserRow User, IReadOnlyList<MemberRow> Teams)> GetUserAsync(string userId, CancellationToken cancellationToken = default)
    {
        var user = await store.GetUserAsync(userId, cancellationToken).ConfigureAwait(false) ?? throw AirlockException.NotFound("user");
        return (user, await store.ListMembershipsAsync(userId, cancellationToken).ConfigureAwait(false));
    }

    // Members

    public async Task<IReadOnlyList<MemberRow>> ListMembersAsync(Caller caller, string teamId, CancellationToken cancellationToken = default)
    {
        await tenancy.RequireTeamAsync(caller, teamId, Scopes.UsageRead, cancellationToken).ConfigureAwait(false);
        return await store.ListMembersAsync(teamId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Direct add by a team admin: an existing user joins; a new one is created with <paramref name="password"/>.</summary>
    public async Task<MemberRow> AddMemberAsync(Caller caller, string teamId, string? email, string? role, string? password, string? name, CancellationToken cancellationToken = default)
    {
        await tenancy.RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        role = await CheckRoleAsync(caller, teamId, role, cancellationToken).ConfigureAwait(false);
        email = NormalizeEmail(email);
        var user = await store.GetUserByEmailAsync(email, cancellationToken).ConfigureAwait(false);
        if (user is not null)
        {
            // Adding an existing member again changes their role: an owner's only by an owner.
            await CheckOwnerChangeAsync(caller, teamId, user.Id, role, cancellationToken).ConfigureAwait(false);
        }

        user ??= await CreateUserAsync(email, password, name, cancellationToken).ConfigureAwait(false);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await store.UpsertMemberAsync(teamId, user.Id, role, now, cancellationToken).ConfigureAwait(false);
        audit.Record(teamId, "member.add", user.Id, $"email={email} role={role}");
        return new MemberRow { TeamId = teamId, UserId = user.Id, Email = email, Role = role, CreatedAt = now };
    }

    public async Task RemoveMemberAsync(Caller caller, string teamId, string userId, CancellationToken cancellationToken = default)
    {
        await tenancy.RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        await CheckOwnerChangeAsync(caller, teamId, userId, newRole: null, cancellationToken).ConfigureAwait(false);
        if (!await store.RemoveMemberAsync(teamId, userId, cancellationToken).ConfigureAwait(false))
        {
            throw AirlockException.NotFound($"member '{userId}'");
        }

        audit.Record(teamId, "member.remove", userId);
    }

    // Invitations

    public async Task<(InvitationRow Row, string Token)> InviteAsync(Caller caller, string teamId, string? email, string? role, CancellationToken cancellationToken = default)
    {
        await tenancy.RequireTeamAsync(caller, teamId, Scopes.TeamAdmin, cancellationToken).ConfigureAwait(false);
        role = await CheckRoleAsync(caller, teamId, role, cancellationToken).ConfigureAwait(false);
        var token = Secret();
        var now = time.GetUtcNow();
        var row = new InvitationRow
        {
            Id = TenancyService.NewId("inv_"),
            Hash = TenancyService.HashKey(token),
            TeamId = teamId,
            Email = NormalizeEmail(email),
            Role = role,
            CreatedBy = caller.ActorLabel ?? caller.ActorId,
            CreatedAt = now.ToUnixTimeMilliseconds(),
            ExpiresAt = now.AddDays(_options.InvitationDays).ToUnixTimeMilliseconds(),
        };
        await store.InsertInvitationAsync(row, cancellationToken).ConfigureAwait(false);
        audit.Record(teamId, "invitation.create", row.Id, $"email={row.Email} role={role}");
        return (row, token);
    }

    /// <summary>The token is the credential: the invited email joins (created with <paramref name="password"/> if new).</summary>
    public async Task<MemberRow> AcceptAsync(string? token, string? password, string? name, CancellationToken cancellationToken = default)
    {
        var invitation = string.IsNullOrEmpty(token) ? null : await store.GetInvitationByHashAsync(TenancyService.HashKey(token), cancellationToken).ConfigureAwait(false);
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        if (invitation is null || invitation.AcceptedAt is not null || invitation.ExpiresAt <= now)
        {
            throw AirlockException.NotFound("invitation (unknown, used or expired)");
        }

        var user = await store.GetUserByEmailAsync(invitation.Email, cancellationToken).ConfigureAwait(false);
        if (user is null)
        {
            CheckPassword(password);
        }

        if (!await store.MarkInvitationAcceptedAsync(invitation.Id, now, cancellationToken).ConfigureAwait(false))
        {
            throw AirlockException.NotFound("invitation (unknown, used or expired)");
        }

        user ??= await CreateUserAsync(invitation.Email, password, name, cancellationToken).ConfigureAwait(false);
        // The token goes to whoever made the invitation, and an existing user needs no password to
        // accept: so an invitation never demotes an owner (an admin could otherwise invite the owner
        // as a viewer and accept it themselves).
        var role = await RoleOfAsync(user.Id, invitation.TeamId, cancellationToken).ConfigureAwait(false) == Roles.Owner ? Roles.Owner : invitation.Role;
        await store.UpsertMemberAsync(invitation.TeamId, user.Id, role, now, cancellationToken).ConfigureAwait(false);
        var previous = Caller.Current;
        Caller.Current = new Caller(CallerKind.User, invitation.TeamId, Scopes.None, false, user.Id, user.Email, previous?.RemoteAddress);
        audit.Record(invitation.TeamId, "invitation.accept", invitation.Id, $"email={user.Email} role={role}");
        Caller.Current = previous;
        return new MemberRow { TeamId = invitation.TeamId, UserId = user.Id, Email = user.Email, Role = role, CreatedAt = now };
    }

    private async Task<UserRow> CreateUserAsync(string email, string? password, string? name, CancellationToken cancellationToken)
    {
        CheckPassword(password);
        var user = new UserRow
        {
            Id = TenancyService.NewId("usr_"),
            Email = email,
            Name = name,
            PasswordHash = PasswordHasher.Hash(password!, _options.PasswordIterations),
            CreatedAt = time.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        await store.InsertUserAsync(user, cancellationToken).ConfigureAwait(false);
        return user;
    }

    private static void CheckPassword(string? password)
    {
        if (password is null || password.Length < MinPasswordLength || password.Length > 1024)
        {
            throw AirlockException.Invalid($"a password of {MinPasswordLength} to 1024 characters is required for a new user");
        }
    }

    private async Task<string> CheckRoleAsync(Caller caller, string teamId, string? role, CancellationToken cancellationToken)
    {
        role ??= Roles.Member;
        if (!Roles.IsValid(role))
        {
            throw AirlockException.Invalid("role must be owner, admin, member or viewer");
        }

        // Only an owner of the team (or the instance admin) makes owners.
        if (role == Roles.Owner && !await IsOwnerAsync(caller, teamId, cancellationToken).ConfigureAwait(false))
        {
            throw new AirlockException("owner_required", 403, "only an owner of the team may make owners");
        }

        return role;
    }

    /// <summary>
    /// Demoting or removing an owner (<paramref name="newRole"/> null: removing) needs an owner of the
    /// team (or the instance admin), and never leaves a team that has owners without one.
    /// </summary>
    private async Task CheckOwnerChangeAsync(Caller caller, string teamId, string userId, string? newRole, CancellationToken cancellationToken)
    {
        if (newRole == Roles.Owner || await RoleOfAsync(userId, teamId, cancellationToken).ConfigureAwait(false) != Roles.Owner)
        {
            return;
        }

        if (!await IsOwnerAsync(caller, teamId, cancellationToken).ConfigureAwait(false))
        {
            throw new AirlockException("owner_required", 403, "only an owner of the team may demote or remove an owner");
        }

        var owners = (await store.ListMembersAsync(teamId, cancellationToken).ConfigureAwait(false)).Count(m => m.Role == Roles.Owner);
        if (owners <= 1)
        {
            throw new AirlockException("last_owner", 409, "the team's last owner cannot be demoted or removed; make another member owner first");
        }
    }

    /// <summary>Keys are never owners; a user is one when their membership in the team says so.</summary>
    private async Task<bool> IsOwnerAsync(Caller caller, string teamId, CancellationToken cancellationToken) =>
        caller.InstanceAdmin || (caller.Kind == CallerKind.User && await RoleOfAsync(caller.ActorId, teamId, cancellationToken).ConfigureAwait(false) == Roles.Owner);

    private async Task<string?> RoleOfAsync(string userId, string teamId, CancellationToken cancellationToken) =>
        (await store.ListMembershipsAsync(userId, cancellationToken).ConfigureAwait(false)).FirstOrDefault(m => m.TeamId == teamId)?.Role;

    private static string NormalizeEmail(string? email)
    {
        email = email?.Trim().ToLowerInvariant();
        if (string.IsNullOrEmpty(email) || email.Length > 254 || !email.Contains('@'))
        {
            throw AirlockException.Invalid("a valid email is required");
        }

        return email;
    }

    private static string Secret() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    [LoggerMessage(EventId = 440, Level = LogLevel.Information, Message = "console login failed")]
    private partial void LogLoginFailed();
}
