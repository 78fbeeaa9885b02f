using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Airlock.Core.Sandboxes;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// Signed file URLs (spec §3.5), what <c>uploadUrl()</c>/<c>downloadUrl()</c> produce:
/// <c>"v1_" + base64(sha256("path:operation:username:token[:expiry]"))</c>, padding stripped.
/// </summary>
internal sealed class EnvdFileSignatures(SandboxService sandboxes, TimeProvider time)
{
    public const string Read = "read";
    public const string Write = "write";

    /// <summary>The operation a method signs: GET reads, POST writes; null for anything else.</summary>
    public static string? OperationOf(string method) =>
        HttpMethods.IsGet(method) ? Read : HttpMethods.IsPost(method) ? Write : null;

    public static string Compute(string path, string operation, string username, string token, long? expiry)
    {
        var raw = expiry is { } e
            ? $"{path}:{operation}:{username}:{token}:{e.ToString(CultureInfo.InvariantCulture)}"
            : $"{path}:{operation}:{username}:{token}";
        return "v1_" + Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(raw))).TrimEnd('=');
    }

    /// <summary>
    /// True when the request's <c>signature</c> (and <c>signature_expiration</c>, if any) was made with
    /// this token for its <c>path</c>, <c>username</c> and method, and has not expired.
    /// </summary>
    public bool IsValid(HttpRequest request, string token)
    {
        var signature = request.Query["signature"].ToString();
        var operation = OperationOf(request.Method);
        if (signature.Length == 0 || operation is null || token.Length == 0)
        {
            return false;
        }

        long? expiry = null;
        var expiration = request.Query["signature_expiration"].ToString();
        if (expiration.Length > 0)
        {
            if (!long.TryParse(expiration, NumberStyles.Integer, CultureInfo.InvariantCulture, out var e) || e < time.GetUtcNow().ToUnixTimeSeconds())
            {
                return false;
            }

            expiry = e;
        }

        var expected = Compute(request.Query["path"].ToString(), operation, request.Query["username"].ToString(), token, expiry);
        return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(signature), Encoding.UTF8.GetBytes(expected));
    }

    /// <summary>
    /// The known gap (spec §2.3): a signed URL carries no sandbox id, so the sandbox is the live one
    /// whose token verifies the signature. A sha256 per live sandbox; null when none does.
    /// </summary>
    public string? FindSandbox(HttpRequest request)
    {
        if (request.Query["signature"].ToString().Length == 0)
        {
            return null;
        }

        // Before auth (the edge runs first) and across teams: the signature is the credential.
        foreach (var sandbox in sandboxes.ListAllUnscoped())
        {
            if (IsValid(request, sandbox.Record.AccessToken))
            {
                return sandbox.Record.Id;
            }
        }

        return null;
    }
}
