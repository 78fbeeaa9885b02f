using System.Security.Cryptography;
using System.Text;
using Airlock.Core;
using Airlock.Core.Sandboxes;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// What every request to a sandbox's envd surface shares: the sandbox the edge routed it to, the
/// access-token check and the user chosen by <c>Authorization: Basic base64(user:)</c>.
/// </summary>
internal static class EnvdRequest
{
    /// <summary>The routed sandbox; a sandbox that is gone throws 502, which the SDKs read as "not running".</summary>
    public static LiveSandbox Sandbox(HttpContext context, SandboxService sandboxes)
    {
        var id = SandboxRouting.SandboxId(context);
        try
        {
            return sandboxes.Get(id);
        }
        catch (AirlockException ex) when (ex.Code == "not_found")
        {
            throw new AirlockException("sandbox_not_found", 502, $"sandbox '{id}' is not running");
        }
    }

    /// <summary>True when <c>X-Access-Token</c> equals the sandbox's token (constant time).</summary>
    public static bool HasValidToken(HttpContext context, LiveSandbox sandbox)
    {
        var presented = context.Request.Headers["X-Access-Token"].ToString();
        return presented.Length > 0 && CryptographicOperations.FixedTimeEquals(
            Encoding.UTF8.GetBytes(presented), Encoding.UTF8.GetBytes(sandbox.Record.AccessToken));
    }

    /// <summary>The user from <c>Authorization: Basic</c>, or null for the template's default user.</summary>
    public static string? User(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        try
        {
            var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..].Trim()));
            var user = decoded.Split(':', 2)[0];
            return user.Length > 0 ? user : null;
        }
        catch (FormatException)
        {
            throw AirlockException.Invalid("malformed Basic authorization");
        }
    }
}
