using System.Text.Json;
using Airlock.Core;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Http;

/// <summary>Every error leaves as a ProblemDetails with a stable <c>code</c>; nothing leaves as a bare 500.</summary>
internal static partial class Problems
{
    public static async Task WriteAsync(HttpContext context, int status, string code, string detail, string? limit = null, double? value = null, int? retryAfter = null)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.Clear();
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/problem+json";
        if (retryAfter is { } seconds)
        {
            context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        // Quota refusals name the limit and its value (docs/api.md, "Quotas").
        var problem = new ProblemDto($"https://airlock.dev/errors/{code}", Title(status), status, detail, code, limit, value);
        await JsonSerializer.SerializeAsync(context.Response.Body, problem, ApiJsonContext.Default.ProblemDto, context.RequestAborted).ConfigureAwait(false);
    }

    public static IResult Result(int status, string code, string detail) =>
        TypedResults.Json(new ProblemDto($"https://airlock.dev/errors/{code}", Title(status), status, detail, code), ApiJsonContext.Default.ProblemDto, "application/problem+json", status);

    /// <summary>Maps what escaped a handler; unknown exceptions are logged and hidden.</summary>
    public static async Task HandleAsync(HttpContext context, Func<Task> next, ILogger logger)
    {
        try
        {
            await next().ConfigureAwait(false);
        }
        catch (AirlockException ex)
        {
            await WriteAsync(context, ex.Status, ex.Code, ex.Message, ex.Limit, ex.Value).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex)
        {
            await WriteAsync(context, ex.StatusCode, ex.StatusCode == 413 ? "payload_too_large" : "invalid_request", ex.Message).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            await WriteAsync(context, 400, "invalid_json", $"the request body is not valid JSON for this operation: {ex.Message}").ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception ex)
        {
            LogUnhandled(logger, context.Request.Method, context.Request.Path, ex);
            await WriteAsync(context, 500, "internal", "an internal error occurred; see the server log").ConfigureAwait(false);
        }
    }

    private static string Title(int status) => status switch
    {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        507 => "Insufficient Storage",
        _ => status >= 500 ? "Server Error" : "Error",
    };

    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "unhandled error on {Method} {Path}")]
    private static partial void LogUnhandled(ILogger logger, string method, string path, Exception ex);
}
