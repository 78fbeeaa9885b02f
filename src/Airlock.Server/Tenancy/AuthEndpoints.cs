using Airlock.Core.Tenancy;
using Airlock.Server.Auth;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Tenancy;

/// <summary>Console login: a session cookie (HttpOnly, SameSite=Strict) plus a CSRF token for unsafe requests.</summary>
internal static class AuthEndpoints
{
    public static IEndpointRouteBuilder MapAuth(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/auth/login", LoginAsync);
        app.MapPost("/v1/auth/logout", LogoutAsync);
        app.MapGet("/v1/auth/me", Me);
        return app;
    }

    private static async Task<IResult> LoginAsync(HttpContext context, UserService users, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(context.Request, TenancyJsonContext.Default.LoginBody, cancellationToken);
        var session = await users.LoginAsync(body.Email, body.Password, cancellationToken);
        context.Response.Cookies.Append(ApiKeyAuthentication.SessionCookie, session.Token, new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Secure = context.Request.IsHttps,
            Path = "/",
            Expires = session.ExpiresAt,
        });
        var (_, teams) = await users.GetUserAsync(session.User.Id, cancellationToken);
        var dto = new LoginDto(session.User.Id, session.User.Email, session.CsrfToken, session.ExpiresAt, teams.Select(t => new MembershipDto(t.TeamId, t.Role)).ToList());
        return TypedResults.Json(dto, TenancyJsonContext.Default.LoginDto);
    }

    private static async Task<IResult> LogoutAsync(HttpContext context, UserService users, CancellationToken cancellationToken)
    {
        if (context.Request.Cookies[ApiKeyAuthentication.SessionCookie] is { Length: > 0 } token)
        {
            await users.LogoutAsync(token, cancellationToken);
        }

        context.Response.Cookies.Delete(ApiKeyAuthentication.SessionCookie, new CookieOptions { Path = "/", HttpOnly = true, SameSite = SameSiteMode.Strict });
        return TypedResults.NoContent();
    }

    /// <summary>Who the caller is; for a session, also its CSRF token (a reloaded page asks again; other origins cannot read it).</summary>
    private static IResult Me(HttpContext context)
    {
        var caller = TenancyEndpoints.Caller();
        var csrf = caller.Kind == CallerKind.User && context.Request.Cookies[ApiKeyAuthentication.SessionCookie] is { Length: > 0 } token ? UserService.CsrfOf(token) : null;
        var dto = new MeDto(caller.Kind == CallerKind.User ? "user" : "key", caller.TeamId, ScopeNames.ToList(caller.Scopes), caller.InstanceAdmin, caller.ActorId, caller.ActorLabel, csrf);
        return TypedResults.Json(dto, TenancyJsonContext.Default.MeDto);
    }
}
