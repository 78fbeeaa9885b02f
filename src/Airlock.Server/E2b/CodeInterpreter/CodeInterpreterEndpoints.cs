using System.Text;
using System.Text.Json;
using Airlock.Core;
using Airlock.Core.Sandboxes;
using Airlock.Server.E2b.Envd;

namespace Airlock.Server.E2b.CodeInterpreter;

/// <summary>
/// The code interpreter's HTTP surface (spec §4, §5.4) under the edge's <c>/_sandbox/49999</c>:
/// <c>POST /execute</c> (NDJSON stream), <c>/contexts</c> (create, list, restart, delete) and
/// <c>/health</c>. Sandboxes have no network, so instead of proxying to a server inside, each
/// context is an interpreter process driven through <see cref="Airlock.Core.Processes.ProcessService"/>.
/// Errors leave as plain text, which the SDK puts into its error messages verbatim.
/// </summary>
internal static class CodeInterpreterEndpoints
{
    public static IEndpointRouteBuilder MapCodeInterpreter(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup($"{SandboxRouting.Prefix}/{SandboxRouting.CodeInterpreterPort}");
        group.MapGet("/health", (HttpContext context, SandboxService sandboxes) => RunAsync(context, async () =>
        {
            EnvdRequest.Sandbox(context, sandboxes);
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
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        if (!EnvdRequest.HasValidToken(context, sandbox))
        {
            throw new AirlockException("unauthorized", 401, "unauthorized access, please provide a valid access token");
        }

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
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        var request = await ReadAsync(context, CodeInterpreterJsonContext.Default.CreateContextRequest);
        var created = await contexts.CreateAsync(sandbox, CodeContexts.NormalizeLanguage(request?.Language), request?.Cwd, context.RequestAborted);
        await WriteJsonAsync(context, created.ToDto(), CodeInterpreterJsonContext.Default.ContextDto);
    });

    private static Task ListContextsAsync(HttpContext context, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        var list = contexts.List(sandbox.Record.Id).Select(c => c.ToDto()).ToList();
        await WriteJsonAsync(context, list, CodeInterpreterJsonContext.Default.ListContextDto);
    });

    private static Task RestartContextAsync(HttpContext context, string id, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        await contexts.Get(sandbox.Record.Id, id).RestartAsync(context.RequestAborted);
    });

    private static Task RemoveContextAsync(HttpContext context, string id, SandboxService sandboxes, CodeContexts contexts) => RunAsync(context, async () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        await contexts.RemoveAsync(sandbox.Record.Id, id);
    });

    private static async Task<T?> ReadAsync<T>(HttpContext context, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
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
