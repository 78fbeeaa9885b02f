using System.Text.RegularExpressions;
using Airlock.Server.Http;
using Microsoft.Extensions.Options;

namespace Airlock.Server.E2b;

/// <summary>
/// The edge (spec §2.3). A request for a sandbox — header <c>E2b-Sandbox-Id</c> (+ <c>E2b-Sandbox-Port</c>),
/// or Host <c>&lt;port&gt;-&lt;id&gt;.&lt;domain&gt;</c> — is rewritten to the internal path
/// <c>/_sandbox/&lt;port&gt;/&lt;original path&gt;</c> so that plain endpoint routing serves it: port
/// 49983 is envd (files, process and filesystem RPCs), 49999 the code interpreter; any other
/// port goes to the port proxy; a port outside 1-65535 is a 400 <c>invalid_argument</c>. Everything
/// else is the control plane. The internal prefix is refused from outside.
/// </summary>
internal sealed partial class SandboxRouting(IOptions<E2bOptions> options, Envd.EnvdFileSignatures signatures)
{
    public const string Prefix = "/_sandbox";
    public const int EnvdPort = 49983;
    public const int CodeInterpreterPort = 49999;
    private const string SandboxKey = "airlock.sandbox";
    private const string ProxyPortKey = "airlock.proxy.port";

    public async Task HandleAsync(HttpContext context, Func<Task> next)
    {
        var request = context.Request;
        if (request.Path.StartsWithSegments(Prefix))
        {
            await Problems.WriteAsync(context, 404, "route_not_found", "no such route").ConfigureAwait(false);
            return;
        }

        string? id = request.Headers["E2b-Sandbox-Id"];
        int port;
        if (!string.IsNullOrEmpty(id))
        {
            port = int.TryParse(request.Headers["E2b-Sandbox-Port"], out var p) ? p : EnvdPort;
        }
        else if (HostRegex().Match(request.Host.Host) is { Success: true } m && (options.Value.Domain is null || request.Host.Host.EndsWith("." + options.Value.Domain.Split(':')[0], StringComparison.OrdinalIgnoreCase)))
        {
            port = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            id = m.Groups[2].Value;
        }
        else if (request.Path == "/files" && signatures.FindSandbox(request) is { } signed)
        {
            // The known gap (spec §2.3): uploadUrl()/downloadUrl() carry no sandbox id, only a
            // signature, which names the one live sandbox whose token made it.
            id = signed;
            port = EnvdPort;
        }
        else
        {
            await next().ConfigureAwait(false);
            return;
        }

        if (port is < 1 or > 65535)
        {
            // Before anything else: no port outside TCP's range reaches the proxy (or a URI).
            await Problems.WriteAsync(context, 400, "invalid_argument", $"sandbox port {port} is not between 1 and 65535").ConfigureAwait(false);
            return;
        }

        if (!IdRegex().IsMatch(id))
        {
            // An id that can't exist: the sandbox is gone as far as the SDK is concerned.
            await Problems.WriteAsync(context, 502, "sandbox_not_found", $"sandbox '{id}' not found").ConfigureAwait(false);
            return;
        }

        if (port is not (EnvdPort or CodeInterpreterPort))
        {
            // Any other port is a server inside the sandbox: the port proxy takes the request after
            // authentication (docs/networking.md).
            context.Items[ProxyPortKey] = port;
        }

        context.Items[SandboxKey] = id;
        request.Path = $"{Prefix}/{port}{request.Path}";
        await next().ConfigureAwait(false);
    }

    /// <summary>The sandbox port this request goes to through the port proxy, if any.</summary>
    public static int? ProxyPort(HttpContext context) => context.Items.TryGetValue(ProxyPortKey, out var port) ? (int?)port : null;

    /// <summary>The sandbox id the edge routed this request to.</summary>
    public static string SandboxId(HttpContext context) => (string)context.Items[SandboxKey]!;

    [GeneratedRegex(@"^(\d{1,5})-([a-z0-9]+)\.")]
    private static partial Regex HostRegex();

    [GeneratedRegex("^[a-z0-9]{1,64}$")]
    private static partial Regex IdRegex();
}
