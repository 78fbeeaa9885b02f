namespace Airlock.Server.E2b;

/// <summary>The E2B-compatible surface (configuration section <c>Airlock:E2b</c>).</summary>
internal sealed class E2bOptions
{
    public const string Section = "Airlock:E2b";

    /// <summary>
    /// Returned as <c>domain</c> on create/connect; the SDK builds <c>&lt;port&gt;-&lt;id&gt;.&lt;domain&gt;</c>
    /// host names from it (<c>getHost</c>), which reach this server when wildcard DNS points here.
    /// Default: the host (and port) of the request.
    /// </summary>
    public string? Domain { get; set; }

    /// <summary>The envd version advertised; the SDKs turn features on by it (≥ 0.5.7 for octet-stream uploads).</summary>
    public string EnvdVersion { get; set; } = "0.6.13";
}
