using System.Security.Cryptography;
using System.Text;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Auth;

/// <summary>
/// The bootstrap admin key: from <c>AIRLOCK_BOOTSTRAP_API_KEY</c>, or generated on first start into
/// <c>&lt;data&gt;/admin.key</c> (0600). Only its SHA-256 is kept in memory for comparison.
/// Keys look like <c>e2b_&lt;hex&gt;</c> so the E2B SDKs accept them unchanged.
/// </summary>
internal sealed partial class ApiKeyAuthentication
{
    private readonly byte[] _adminKeyHash;

    private ApiKeyAuthentication(string key) => _adminKeyHash = SHA256.HashData(Encoding.UTF8.GetBytes(key));

    public static ApiKeyAuthentication Load(string? configuredKey, string dataDir, ILogger logger)
    {
        if (!string.IsNullOrWhiteSpace(configuredKey))
        {
            return new ApiKeyAuthentication(configuredKey.Trim());
        }

        var path = Path.Combine(dataDir, "admin.key");
        if (File.Exists(path))
        {
            return new ApiKeyAuthentication(File.ReadAllText(path).Trim());
        }

        var key = "e2b_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        File.WriteAllText(path, "");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(path, key + "\n");
        // Printed once, on the console only (not through the logger, which may ship logs elsewhere).
        Console.WriteLine($"Admin API key (shown once, also saved to {path}): {key}");
        LogGenerated(logger, path);
        return new ApiKeyAuthentication(key);
    }

    public bool IsValid(string? presented) =>
        presented is { Length: > 0 } &&
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _adminKeyHash);

    public static string? Presented(HttpRequest request)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return authorization[7..].Trim();
        }

        var header = request.Headers["X-API-Key"].ToString();
        return header.Length > 0 ? header : null;
    }

    public async Task HandleAsync(HttpContext context, Func<Task> next)
    {
        if (context.Request.Path.StartsWithSegments("/v1") && !IsValid(Presented(context.Request)))
        {
            await Problems.WriteAsync(context, 401, "unauthorized", "a valid API key is required (Authorization: Bearer <key> or X-API-Key)").ConfigureAwait(false);
            return;
        }

        await next().ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "generated a new admin API key in {Path}")]
    private static partial void LogGenerated(ILogger logger, string path);
}
