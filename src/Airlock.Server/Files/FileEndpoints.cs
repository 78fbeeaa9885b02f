using Airlock.Core;
using Airlock.Core.Files;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Files;

/// <summary>
/// Files of a sandbox. Every operation takes <c>?user=</c> (default: the template's user), which
/// owns what is written and whose home relative paths start from.
/// </summary>
internal static class FileEndpoints
{
    public static IEndpointRouteBuilder MapFiles(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/sandboxes/{id}/files");
        group.MapGet("", ReadAsync);
        group.MapPut("", WriteAsync);
        group.MapDelete("", Remove);
        group.MapGet("/stat", Stat);
        group.MapGet("/list", List);
        group.MapPost("/mkdir", MakeDirectoryAsync);
        group.MapPost("/move", MoveAsync);
        group.MapGet("/watch", WatchAsync);
        return app;
    }

    private static string PathOf(HttpRequest request) =>
        request.Query["path"].ToString() is { Length: > 0 } path ? path : throw AirlockException.Invalid("the path query parameter is required");

    private static string? UserOf(HttpRequest request) => request.Query["user"].ToString() is { Length: > 0 } user ? user : null;

    private static async Task ReadAsync(string id, HttpContext context, FileService files)
    {
        await using var stream = files.OpenRead(id, PathOf(context.Request), UserOf(context.Request));
        context.Response.ContentType = "application/octet-stream";
        context.Response.ContentLength = stream.Length;
        await stream.CopyToAsync(context.Response.Body, 1 << 20, context.RequestAborted);
    }

    private static async Task<IResult> WriteAsync(string id, HttpRequest request, FileService files, CancellationToken cancellationToken)
    {
        var entry = await files.WriteAsync(id, PathOf(request), UserOf(request), request.Body, cancellationToken);
        return TypedResults.Json(FileEntryDto.From(entry), ApiJsonContext.Default.FileEntryDto);
    }

    private static IResult Remove(string id, HttpRequest request, FileService files)
    {
        files.Remove(id, PathOf(request), UserOf(request));
        return TypedResults.NoContent();
    }

    private static IResult Stat(string id, HttpRequest request, FileService files) =>
        TypedResults.Json(FileEntryDto.From(files.Stat(id, PathOf(request), UserOf(request))), ApiJsonContext.Default.FileEntryDto);

    private static IResult List(string id, HttpRequest request, FileService files)
    {
        var depth = request.Query["depth"].ToString() is { Length: > 0 } d
            ? int.TryParse(d, out var n) ? n : throw AirlockException.Invalid("depth must be a number")
            : 1;
        var entries = files.List(id, PathOf(request), depth, UserOf(request)).Select(FileEntryDto.From).ToList();
        return TypedResults.Json(entries, ApiJsonContext.Default.ListFileEntryDto);
    }

    private static async Task<IResult> MakeDirectoryAsync(string id, HttpRequest request, FileService files, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, ApiJsonContext.Default.PathBody, cancellationToken);
        var (created, entry) = files.MakeDirectory(id, body.Path ?? throw AirlockException.Invalid("path is required"), UserOf(request));
        return TypedResults.Json(FileEntryDto.From(entry), ApiJsonContext.Default.FileEntryDto, statusCode: created ? 201 : 200);
    }

    private static async Task<IResult> MoveAsync(string id, HttpRequest request, FileService files, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, ApiJsonContext.Default.MoveBody, cancellationToken);
        var entry = files.Move(
            id,
            body.Source ?? throw AirlockException.Invalid("source is required"),
            body.Destination ?? throw AirlockException.Invalid("destination is required"),
            UserOf(request));
        return TypedResults.Json(FileEntryDto.From(entry), ApiJsonContext.Default.FileEntryDto);
    }

    /// <summary>SSE: <c>start</c>, then one <c>event</c> per change (<c>{"name","type"}</c>), keepalives.</summary>
    private static async Task WatchAsync(string id, HttpContext context, FileService files)
    {
        var recursive = context.Request.Query["recursive"] == "true";
        using var watch = files.Watch(id, PathOf(context.Request), recursive, UserOf(context.Request));
        var cancellationToken = context.RequestAborted;
        var sse = await ServerSentEvents.StartAsync(context.Response, cancellationToken);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var keepalives = sse.RunKeepalivesAsync(TimeSpan.FromSeconds(15), stop.Token);
        try
        {
            await sse.SendAsync("start", new SseData(""), ApiJsonContext.Default.SseData, cancellationToken);
            await foreach (var e in watch.ReadAllAsync(cancellationToken))
            {
                await sse.SendAsync("event", new SseFileEvent(e.Name, e.Type.ToString().ToLowerInvariant()), ApiJsonContext.Default.SseFileEvent, cancellationToken);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
        }
        finally
        {
            await stop.CancelAsync();
            await keepalives;
        }
    }
}
