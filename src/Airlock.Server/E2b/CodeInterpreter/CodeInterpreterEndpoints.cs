using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Airlock.Core;
using Airlock.Core.Sandboxes;
using Airlock.Server.E2b.Envd;
using Airlock.Server.Proxy;
using Microsoft.AspNetCore.Http.Features;

namespace Airlock.Server.E2b.CodeInterpreter;

/// <summary>
/// The code interpreter's HTTP surface (spec §4, §5.4) under the edge's <c>/_sandbox/49999</c>:
/// <c>POST /execute</c> (NDJSON stream), <c>/contexts</c> (create, list, restart, delete) and
/// <c>/health</c>. Sandboxes have no network, so instead of proxying to a server inside, each
/// context is an interpreter process driven through <see cref="Airlock.Core.Processes.ProcessService"/>.
/// Errors leave as plain text, which the SDK puts into its error messages verbatim.
/// <para>
/// Access (<see cref="Authorize"/>): <c>/execute</c> runs code, so it needs the sandbox's
/// <c>X-Access-Token</c>, as envd does. The SDK (@e2b/code-interpreter 2.8.0)
/// sends that token on <c>/execute</c> only; on <c>/contexts</c> it sends just
/// <c>E2B-Traffic-Access-Token</c>, and only when the sandbox has one. So with
/// <c>allowPublicTraffic:false</c> every route here needs the traffic token (or the access token),
/// as every other port does; with public traffic (E2B's default) the <c>/contexts</c> routes are
/// as public as any port of the sandbox, as in E2B. A token that is presented but wrong is always refused.
/// </para>
/// </summary>
internal static class CodeInterpreterEndpoints
{
    private const string AccessTokenHeader = "X-Access-Token";

    // Bodies are a request's code or a context's options; without Kestrel's limit (off for files) a
    // chunked body would be buffered whole by the JSON reader.
    private const long MaxBodyBytes = 16 << 20;

    public static IEndpointRouteBuilder MapCodeInterpreter(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup($"{SandboxRouting.Prefix}/{SandboxRouting.CodeInterpreterPort}");
        group.MapGet("/health", (HttpContext context, SandboxService sandboxes) => RunAsync(context, async () =>
        {
            Authorize(context, sandboxes, execute: false);
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("\"OK\"", context.RequestAborted);
        }));
        group.MapPost("/execute", ExecuteAsync);
        group.MapPost("/contexts", CreateContextAsync);
        group.MapGet("/contexts", ListContextsAsync);
        group.MapPost("/contexts/{id}/restart", RestartContextAsync);
        group.MapDelete("/contexts/{id}", RemoveContextAsync);
        return app;
    }

    private static Task ExecuteAsync(HttpContext context, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = Authorize(context, sandboxes, execute: true);
        var request = await ReadAsync(context, CodeInterpreterJsonContext.Default.ExecuteRequest);
        if (request?.Code is null)
        {
            throw AirlockException.Invalid("code is required");
        }

        if (!string.IsNullOrEmpty(request.ContextId) && !string.IsNullOrEmpty(request.Language))
        {
            throw AirlockException.Invalid("provide context_id or language, not both");
        }

        var target = !string.IsNullOrEmpty(request.ContextId)
            ? contexts.Get(sandbox.Record.Id, request.ContextId)
            : await contexts.DefaultAsync(sandbox, CodeContexts.NormalizeLanguage(request.Language), context.RequestAborted);

        var response = context.Response;
        response.ContentType = "application/x-ndjson";
        response.Headers.CacheControl = "no-cache";
        await response.StartAsync(context.RequestAborted);
        await target.ExecuteAsync(request.Code, request.EnvVars, async line =>
        {
            await response.Body.WriteAsync(line, context.RequestAborted);
            await response.Body.FlushAsync(context.RequestAborted);
        }, context.RequestAborted);
    });

    private static Task CreateContextAsync(HttpContext context, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = Authorize(context, sandboxes, execute: false);
        var request = await ReadAsync(context, CodeInterpreterJsonContext.Default.CreateContextRequest);
        var created = await contexts.CreateAsync(sandbox, CodeContexts.NormalizeLanguage(request?.Language), request?.Cwd, context.RequestAborted);
        await WriteJsonAsync(context, created.ToDto(), CodeInterpreterJsonContext.Default.ContextDto);
    });

    private static Task ListContextsAsync(HttpContext context, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = Authorize(context, sandboxes, execute: false);
        var list = contexts.List(sandbox.Record.Id).Select(c => c.ToDto()).ToList();
        await WriteJsonAsync(context, list, CodeInterpreterJsonContext.Default.ListContextDto);
    });

    private static Task RestartContextAsync(HttpContext context, string id, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = Authorize(context, sandboxes, execute: false);
        await contexts.Get(sandbox.Record.Id, id).RestartAsync(context.RequestAborted);
    });

    private static Task RemoveContextAsync(HttpContext context, string id, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = Authorize(context, sandboxes, execute: false);
        await contexts.RemoveAsync(sandbox.Record.Id, id);
    });

    /// <summary>
    /// The routed sandbox, if this request may use it (see the class summary): 401 without a valid
    /// access token where one is needed or a wrong one was sent; 403 without the traffic token of a
    /// sandbox whose public traffic is off.
    /// </summary>
    private static LiveSandbox Authorize(HttpContext context, SandboxService sandboxes, bool execute)
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        if (EnvdRequest.HasValidToken(context, sandbox))
        {
            // The access token grants exec and files on the whole sandbox: it covers the traffic token too.
            return sandbox;
        }

        if (execute || context.Request.Headers.ContainsKey(AccessTokenHeader))
        {
            throw new AirlockException("unauthorized", 401, "unauthorized access, please provide a valid access token");
        }

        var traffic = context.Request.Headers[PortProxy.TrafficTokenHeader].ToString();
        if (sandbox.Record.TrafficAccessToken is { } expected
            && !(traffic.Length > 0 && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(traffic), Encoding.UTF8.GetBytes(expected))))
        {
            throw new AirlockException("traffic_access_token_invalid", 403, $"sandbox '{sandbox.Record.Id}' has public traffic off: send its {PortProxy.TrafficTokenHeader} (or X-Access-Token)");
        }

        return sandbox;
    }

    private static async Task<T?> ReadAsync<T>(HttpContext context, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxBodyBytes;
        }

        try
        {
            return context.Request.ContentLength == 0 ? default : await JsonSerializer.DeserializeAsync(context.Request.Body, type, context.RequestAborted);
        }
        catch (JsonException ex)
        {
            throw AirlockException.Invalid($"malformed JSON body: {ex.Message}");
        }
    }

    private static async Task WriteJsonAsync<T>(HttpContext context, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, value, type, context.RequestAborted);
    }

    /// <summary>Core errors become the status the SDK maps (502 gone, 404 unknown context) with a plain-text body.</summary>
    private static async Task RunAsync(HttpContext context, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (AirlockException ex) when (!context.Response.HasStarted)
        {
            context.Response.Clear();
            context.Response.StatusCode = ex.Status;
            context.Response.ContentType = "text/plain; charset=utf-8";
            await context.Response.WriteAsync(ex.Message, Encoding.UTF8, context.RequestAborted);
        }
    }
}
