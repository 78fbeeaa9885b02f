namespace Airlock.Server.E2b.Envd;

/// <summary>What a Connect RPC handler gets besides its request message.</summary>
/// <param name="Context">The HTTP exchange.</param>
/// <param name="SandboxId">The sandbox the edge routed the call to (checked to be running, token verified).</param>
/// <param name="User">The user from <c>Authorization: Basic</c>, or null for the template's default user.</param>
/// <param name="Timeout">From <c>Connect-Timeout-Ms</c>, or null without a deadline.</param>
/// <param name="CancellationToken">Cancelled when the client goes away or the deadline passes.</param>
internal sealed record ConnectCall(HttpContext Context, string SandboxId, string? User, TimeSpan? Timeout, CancellationToken CancellationToken)
{
    /// <summary>Seconds of silence after which a stream sends a keepalive message (envd's default is 90).</summary>
    public TimeSpan KeepaliveInterval =>
        int.TryParse(Context.Request.Headers["Keepalive-Ping-Interval"], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? TimeSpan.FromSeconds(Math.Min(seconds, 3600))
            : TimeSpan.FromSeconds(90);
}
