using Airlock.Core.Tenancy;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Auth;

/// <summary>
/// The scope each route needs, decided in one table (docs/api.md, "Scopes"). Reading a sandbox is
/// <c>sandboxes:read</c>; everything that changes one or runs code in it (exec, processes, stdin,
/// the PTY WebSocket, file writes) is <c>sandboxes:write</c>. Team routes check their scopes in
/// Core against the team named in the path.
/// </summary>
internal static class RouteScopes
{
    /// <summary>The scopes of which the caller needs at least one, or <see cref="Scopes.None"/> for "checked by the handler".</summary>
    public static Scopes[] For(string method, PathString path)
    {
        var read = HttpMethods.IsGet(method) || HttpMethods.IsHead(method);
        if (path.StartsWithSegments("/v1/sandboxes", out var rest) || path.StartsWithSegments("/sandboxes", out rest) || path.StartsWithSegments("/v2/sandboxes", out rest))
        {
            // The PTY is a GET (a WebSocket upgrade) that types into the sandbox.
            var pty = rest.HasValue && rest.Value!.EndsWith("/pty", StringComparison.Ordinal);
            return [read && !pty ? Scopes.SandboxesRead : Scopes.SandboxesWrite];
        }

        if (path.StartsWithSegments("/v1/templates"))
        {
            return [read ? Scopes.TemplatesRead : Scopes.TemplatesWrite];
        }

        if (path.StartsWithSegments("/v1/audit"))
        {
            return [Scopes.TeamAdmin, Scopes.UsageRead];
        }

        return [Scopes.None];
    }
}
