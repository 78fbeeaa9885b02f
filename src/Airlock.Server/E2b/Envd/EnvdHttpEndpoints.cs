using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;
using Airlock.Core;
using Airlock.Core.Files;
using Airlock.Core.Sandboxes;
using Airlock.Runtime.Linux;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// envd's plain HTTP endpoints (spec §3.4, §5.2) under the edge's <c>/_sandbox/49983</c>:
/// <c>/health</c>, <c>/files</c> (read, multipart and octet-stream writes), <c>/envs</c>, <c>/metrics</c>.
/// A thin adapter over <see cref="FileService"/>: bodies stream straight between the socket and the
/// sandbox's file, errors leave in envd's <c>{"code","message"}</c> shape.
/// </summary>
internal static class EnvdHttpEndpoints
{
    private const string UnauthorizedMessage = "unauthorized access, please provide a valid access token or method signing if supported";

    public static IEndpointRouteBuilder MapEnvdHttp(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup($"{SandboxRouting.Prefix}/{SandboxRouting.EnvdPort}");
        group.MapGet("/health", HealthAsync);
        group.MapGet("/files", ReadAsync);
        group.MapPost("/files", WriteAsync);
        group.MapGet("/envs", EnvsAsync);
        group.MapGet("/metrics", MetricsAsync);

        // A signed URL the edge could not tie to a live sandbox (SandboxRouting tries every token)
        // lands here: envd answers a bad signature with 401.
        app.MapMethods("/files", [HttpMethods.Get, HttpMethods.Post], (HttpContext context) =>
            WriteErrorAsync(context, 401, context.Request.Query.ContainsKey("signature") ? "invalid or expired signature" : UnauthorizedMessage));
        return app;
    }

    private static Task HealthAsync(HttpContext context, SandboxService sandboxes) => RunAsync(context, () =>
    {
        EnvdRequest.Sandbox(context, sandboxes);
        context.Response.StatusCode = StatusCodes.Status204NoContent;
        return Task.CompletedTask;
    });

    private static Task ReadAsync(HttpContext context, SandboxService sandboxes, FileService files, EnvdFileSignatures signatures) => RunAsync(context, async () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        Authorize(context, sandbox, signatures);
        var user = UserOf(context, sandbox);
        var path = context.Request.Query["path"].ToString();
        if (path.Length == 0)
        {
            throw AirlockException.Invalid("the path query parameter is required");
        }

        var gzip = AcceptsGzip(context.Request);
        await using var stream = files.OpenRead(sandbox.Record.Id, path, user);
        var response = context.Response;
        response.ContentType = "application/octet-stream";
        response.Headers.Vary = HeaderNames.AcceptEncoding;
        // An empty file goes out as identity with Content-Length: 0: that is how the SDK recognises it.
        if (gzip && stream.Length > 0)
        {
            response.Headers.ContentEncoding = "gzip";
            // GZipStream emits its output in small pieces; batched into large HTTP chunks, a Node client
            // inflates 20 MB in 0.6 s instead of 2.8 s (measured). Not disposed: that would dispose the
            // response body under it.
            var batched = new BufferedStream(response.Body, 1 << 18);
            await using (var compressed = new GZipStream(batched, CompressionLevel.Fastest, leaveOpen: true))
            {
                await stream.CopyToAsync(compressed, 1 << 20, context.RequestAborted);
            }

            await batched.FlushAsync(context.RequestAborted);
        }
        else
        {
            response.ContentLength = stream.Length;
            await stream.CopyToAsync(response.Body, 1 << 20, context.RequestAborted);
        }
    });

    private static Task WriteAsync(HttpContext context, SandboxService sandboxes, FileService files, EnvdFileSignatures signatures) => RunAsync(context, async () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        Authorize(context, sandbox, signatures);
        var user = UserOf(context, sandbox);
        var request = context.Request;
        var cancellationToken = context.RequestAborted;
        var queryPath = request.Query["path"].ToString() is { Length: > 0 } p ? p : null;
        var written = new List<EnvdWrittenFile>();

        if (MediaTypeHeaderValue.TryParse(request.ContentType, out var mediaType) &&
            mediaType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            var boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).Value;
            if (string.IsNullOrEmpty(boundary))
            {
                throw AirlockException.Invalid("multipart/form-data without a boundary");
            }

            // Sections are read one at a time off the socket; BodyLengthLimit is lifted because a
            // part can be any size (the default stops at 128 MB).
            var reader = new MultipartReader(boundary, request.Body) { BodyLengthLimit = null };
            while (await reader.ReadNextSectionAsync(cancellationToken) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) ||
                    HeaderUtilities.RemoveQuotes(disposition.Name).Value != "file")
                {
                    continue; // Other fields are skipped, as envd does; the reader drains them.
                }

                // The SDK puts the target path in the part's filename (multi-file writes) and also in
                // ?path= for a single file; the query wins.
                var fileName = HeaderUtilities.RemoveQuotes(disposition.FileNameStar.HasValue ? disposition.FileNameStar : disposition.FileName).Value;
                var target = queryPath ?? (string.IsNullOrEmpty(fileName) ? throw AirlockException.Invalid("a file part has no filename and there is no path query parameter") : fileName);
                var entry = await files.WriteAsync(sandbox.Record.Id, target, user, section.Body, cancellationToken);
                written.Add(new EnvdWrittenFile(entry.Path, entry.Name, "file"));
            }

            if (written.Count == 0)
            {
                throw AirlockException.Invalid("the multipart body has no part named 'file'");
            }
        }
        else if (request.ContentType is null || (mediaType?.MediaType.Equals("application/octet-stream", StringComparison.OrdinalIgnoreCase) ?? false))
        {
            var target = queryPath ?? throw AirlockException.Invalid("the path query parameter is required for an application/octet-stream upload");
            var encoding = request.Headers.ContentEncoding.ToString().Trim();
            Stream body = encoding.Length == 0 || encoding.Equals("identity", StringComparison.OrdinalIgnoreCase)
                ? request.Body
                : encoding.Equals("gzip", StringComparison.OrdinalIgnoreCase)
                    ? new GZipStream(request.Body, CompressionMode.Decompress, leaveOpen: true)
                    : throw AirlockException.Invalid($"unsupported Content-Encoding '{encoding}' (gzip or identity)");
            await using (body)
            {
                var entry = await files.WriteAsync(sandbox.Record.Id, target, user, body, cancellationToken);
                written.Add(new EnvdWrittenFile(entry.Path, entry.Name, "file"));
            }
        }
        else
        {
            throw AirlockException.Invalid($"unsupported Content-Type '{request.ContentType}' (multipart/form-data or application/octet-stream)");
        }

        await WriteJsonAsync(context, 200, written, EnvdHttpJsonContext.Default.ListEnvdWrittenFile);
    });

    private static Task EnvsAsync(HttpContext context, SandboxService sandboxes) => RunAsync(context, () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        RequireToken(context, sandbox);
        // What every process starts with: the template's env, then the sandbox's envVars (later wins),
        // the same order ProcessService applies.
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var source in new[] { sandbox.Template.Env, sandbox.Record.Env })
        {
            foreach (var (key, value) in source)
            {
                env[key] = value;
            }
        }

        return WriteJsonAsync(context, 200, env, EnvdHttpJsonContext.Default.DictionaryStringString);
    });

    private static Task MetricsAsync(HttpContext context, SandboxService sandboxes, TimeProvider time) => RunAsync(context, () =>
    {
        var sandbox = EnvdRequest.Sandbox(context, sandboxes);
        RequireToken(context, sandbox);
        var record = sandbox.Record;
        const long MiB = 1 << 20;
        var usage = sandboxes.GetUsage(record.Id);
        var (memTotal, memUsed, diskUsed, diskTotal) = (usage.MemoryLimit, usage.MemoryUsed, usage.DiskUsed, usage.DiskTotal);
        // CPU usage needs two samples of the cgroup's counters over an interval, which the runtime
        // does not expose yet; 0 is reported rather than a made-up number.
        var metrics = new EnvdMetrics(
            time.GetUtcNow().ToUnixTimeSeconds(),
            record.Cpus,
            0,
            memTotal,
            memUsed,
            0,
            memTotal / MiB,
            memUsed / MiB,
            diskUsed,
            diskTotal);
        return WriteJsonAsync(context, 200, metrics, EnvdHttpJsonContext.Default.EnvdMetrics);
    });


    /// <summary>/files: a valid X-Access-Token, else a valid signature for this path, user and method (§3.5).</summary>
    private static void Authorize(HttpContext context, LiveSandbox sandbox, EnvdFileSignatures signatures)
    {
        if (!EnvdRequest.HasValidToken(context, sandbox) && !signatures.IsValid(context.Request, sandbox.Record.AccessToken))
        {
            throw new AirlockException("unauthorized", 401, context.Request.Query.ContainsKey("signature") ? "invalid or expired signature" : UnauthorizedMessage);
        }
    }

    private static void RequireToken(HttpContext context, LiveSandbox sandbox)
    {
        if (!EnvdRequest.HasValidToken(context, sandbox))
        {
            throw new AirlockException("unauthorized", 401, UnauthorizedMessage);
        }
    }

    /// <summary>?username= (what the SDK sends), else Basic auth, else the template's user; an unknown user is 401 as in envd.</summary>
    private static string? UserOf(HttpContext context, LiveSandbox sandbox)
    {
        var name = context.Request.Query["username"].ToString() is { Length: > 0 } u ? u : EnvdRequest.User(context);
        try
        {
            sandbox.ResolveUser(name);
        }
        catch (AirlockException ex) when (ex.Status == 400)
        {
            throw new AirlockException("unauthorized", 401, ex.Message);
        }

        return name;
    }

    /// <summary>gzip when the client lists it with a non-zero quality; identity otherwise.</summary>
    private static bool AcceptsGzip(HttpRequest request)
    {
        if (!StringWithQualityHeaderValue.TryParseList(request.Headers.AcceptEncoding, out var accepted))
        {
            return false;
        }

        var gzip = false;
        var identityRefused = false;
        foreach (var value in accepted)
        {
            var refused = value.Quality is 0;
            if (value.Value.Equals("gzip", StringComparison.OrdinalIgnoreCase) && !refused)
            {
                gzip = true;
            }
            else if ((value.Value.Equals("identity", StringComparison.OrdinalIgnoreCase) || value.Value == "*") && refused)
            {
                identityRefused = true;
            }
        }

        return gzip || (identityRefused ? throw new AirlockException("not_acceptable", 406, "only gzip and identity encodings are supported") : false);
    }

    /// <summary>Runs a handler and turns expected failures into envd's error shapes.</summary>
    private static async Task RunAsync(HttpContext context, Func<Task> handler)
    {
        try
        {
            await handler();
        }
        catch (AirlockException ex) when (ex.Code == "sandbox_not_found")
        {
            // The upstream edge's answer for a sandbox that is gone; the SDK reads 502 as "not running".
            if (!context.Response.HasStarted)
            {
                context.Response.Clear();
                await WriteJsonAsync(context, 502, new EnvdSandboxGone("The sandbox was not found", SandboxRouting.SandboxId(context), 502), EnvdHttpJsonContext.Default.EnvdSandboxGone);
            }
        }
        catch (AirlockException ex)
        {
            await WriteErrorAsync(context, ex.Status, ex.Message);
        }
        catch (InvalidDataException ex)
        {
            // A corrupt gzip body or a malformed multipart body.
            await WriteErrorAsync(context, 400, $"invalid request body: {ex.Message}");
        }
        catch (BadHttpRequestException ex)
        {
            await WriteErrorAsync(context, ex.StatusCode, ex.Message);
        }
    }

    private static async Task WriteErrorAsync(HttpContext context, int status, string message)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.Clear();
        await WriteJsonAsync(context, status, new EnvdError(status, message), EnvdHttpJsonContext.Default.EnvdError);
    }

    private static async Task WriteJsonAsync<T>(HttpContext context, int status, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, value, type, context.RequestAborted);
    }
}

/// <summary>envd's error body.</summary>
internal sealed record EnvdError(int Code, string Message);

/// <summary>The edge's body for a sandbox that is gone (spec §1.4).</summary>
internal sealed record EnvdSandboxGone(string Message, [property: JsonPropertyName("sandboxId")] string SandboxId, int Code);

/// <summary>One written file, as <c>POST /files</c> lists it.</summary>
internal sealed record EnvdWrittenFile(string Path, string Name, string Type);

/// <summary><c>GET /metrics</c> (envd's snake_case names).</summary>
internal sealed record EnvdMetrics(
    long Ts,
    int CpuCount,
    double CpuUsedPct,
    long MemTotal,
    long MemUsed,
    long MemCache,
    long MemTotalMib,
    long MemUsedMib,
    long DiskUsed,
    long DiskTotal);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(EnvdError))]
[JsonSerializable(typeof(EnvdSandboxGone))]
[JsonSerializable(typeof(List<EnvdWrittenFile>))]
[JsonSerializable(typeof(EnvdMetrics))]
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class EnvdHttpJsonContext : JsonSerializerContext;
