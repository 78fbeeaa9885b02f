using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Airlock.Core;
using Airlock.Core.Sandboxes;
using Google.Protobuf;
using Microsoft.AspNetCore.Http.Features;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// The Connect protocol (JSON codec) the E2B SDKs speak to envd, hand-written over minimal APIs
/// (spec §3.1): unary <c>POST /&lt;package&gt;.&lt;Service&gt;/&lt;Method&gt;</c> with <c>application/json</c>,
/// and server streams of <c>application/connect+json</c> envelopes ending in an end-stream envelope.
/// Handlers only translate messages to Core calls; errors leave in Connect's shape.
/// </summary>
internal static partial class ConnectRpc
{
    public const string Prefix = "/_sandbox/49983/";

    /// <summary>Large enough for stdin chunks the SDK sends in one message; anything bigger is refused.</summary>
    private const int MaxMessageBytes = 32 << 20;

    public static void MapUnary<TRequest, TResponse>(this IEndpointRouteBuilder app, string method, Func<ConnectCall, TRequest, ValueTask<TResponse>> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        app.MapPost(Prefix + method, (HttpContext context) => HandleUnaryAsync(context, handler));
    }

    public static void MapServerStream<TRequest, TResponse>(
        this IEndpointRouteBuilder app,
        string method,
        Func<ConnectCall, TRequest, ConnectStream<TResponse>, Task> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        app.MapPost(Prefix + method, (HttpContext context) => HandleServerStreamAsync(context, handler));
    }

    private static async Task HandleUnaryAsync<TRequest, TResponse>(HttpContext context, Func<ConnectCall, TRequest, ValueTask<TResponse>> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        if (!IsContentType(context.Request, "application/json"))
        {
            await WriteUnaryErrorAsync(context, 415, new ConnectError("invalid_argument", "this server speaks the Connect protocol with the JSON codec: Content-Type must be application/json"));
            return;
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        try
        {
            var call = Begin(context, deadline);
            if (call is null)
            {
                await WriteUnaryErrorAsync(context, 401, new ConnectError("unauthenticated", "unauthorized access, please provide a valid access token (X-Access-Token)"));
                return;
            }

            var body = await ReadAllAsync(context.Request.Body, call.CancellationToken);
            var request = ConnectCodec.Parse<TRequest>(body);
            var response = await handler(call, request);
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(ConnectCodec.Formatter.Format(response), call.CancellationToken);
        }
        catch (AirlockException ex) when (ex.Status == 502)
        {
            // The sandbox is gone: keep the 502 the SDKs read as "not running", in Connect's shape.
            await WriteUnaryErrorAsync(context, 502, new ConnectError("unavailable", ex.Message));
        }
        catch (AirlockException ex)
        {
            var error = ConnectError.From(ex);
            await WriteUnaryErrorAsync(context, error.HttpStatus, error);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            var error = new ConnectError("deadline_exceeded", "the Connect-Timeout-Ms deadline passed");
            await WriteUnaryErrorAsync(context, error.HttpStatus, error);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogRpcFailed(Logger(context), context.Request.Path, ex);
            await WriteUnaryErrorAsync(context, 500, new ConnectError("internal", "an internal error occurred; see the server log"));
        }
    }

    private static async Task HandleServerStreamAsync<TRequest, TResponse>(HttpContext context, Func<ConnectCall, TRequest, ConnectStream<TResponse>, Task> handler)
        where TRequest : IMessage<TRequest>, new()
        where TResponse : IMessage<TResponse>
    {
        if (!IsContentType(context.Request, "application/connect+json"))
        {
            await WriteUnaryErrorAsync(context, 415, new ConnectError("invalid_argument", "this server speaks the Connect protocol with the JSON codec: Content-Type must be application/connect+json"));
            return;
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        ConnectCall? call;
        try
        {
            call = Begin(context, deadline);
        }
        catch (AirlockException ex) when (ex.Status == 502)
        {
            // Before the stream starts, a gone sandbox is the edge's 502, as upstream.
            await WriteUnaryErrorAsync(context, 502, new ConnectError("unavailable", ex.Message));
            return;
        }
        catch (AirlockException ex)
        {
            var error = ConnectError.From(ex);
            await WriteUnaryErrorAsync(context, error.HttpStatus, error);
            return;
        }

        if (call is null)
        {
            await WriteUnaryErrorAsync(context, 401, new ConnectError("unauthenticated", "unauthorized access, please provide a valid access token (X-Access-Token)"));
            return;
        }

        // From here on the answer is 200 and errors travel in the end-stream message.
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/connect+json";
        var time = context.RequestServices.GetRequiredService<TimeProvider>();
        await using var stream = new ConnectStream<TResponse>(context.Response, time);
        ConnectError? failure = null;
        try
        {
            await context.Response.StartAsync(call.CancellationToken);
            var request = ConnectCodec.Parse<TRequest>(await ReadEnvelopeAsync(context.Request.Body, call.CancellationToken));
            await handler(call, request, stream);
        }
        catch (AirlockException ex)
        {
            failure = ConnectError.From(ex);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            failure = new ConnectError("deadline_exceeded", "the Connect-Timeout-Ms deadline passed");
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            return; // Client gone; whatever it was watching goes on.
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogRpcFailed(Logger(context), context.Request.Path, ex);
            failure = new ConnectError("internal", "an internal error occurred; see the server log");
        }

        try
        {
            await stream.EndAsync(failure, context.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client left just before the end.
        }
    }

    /// <summary>
    /// Resolves the sandbox and checks the token; null when the token is wrong. Applies
    /// <c>Connect-Timeout-Ms</c> to <paramref name="deadline"/>.
    /// </summary>
    private static ConnectCall? Begin(HttpContext context, CancellationTokenSource deadline)
    {
        var sandbox = EnvdRequest.Sandbox(context, context.RequestServices.GetRequiredService<SandboxService>());
        if (!EnvdRequest.HasValidToken(context, sandbox))
        {
            return null;
        }

        TimeSpan? timeout = null;
        var header = context.Request.Headers["Connect-Timeout-Ms"].ToString();
        if (header.Length > 0)
        {
            // The protocol allows at most 10 digits.
            if (header.Length > 10 || !long.TryParse(header, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ms) || ms <= 0)
            {
                throw AirlockException.Invalid($"Connect-Timeout-Ms '{header}' is not a positive integer of at most 10 digits");
            }

            timeout = TimeSpan.FromMilliseconds(ms);
            deadline.CancelAfter(timeout.Value);
        }

        return new ConnectCall(context, sandbox.Record.Id, EnvdRequest.User(context), timeout, deadline.Token);
    }

    private static bool IsContentType(HttpRequest request, string expected)
    {
        var type = request.ContentType;
        if (type is null)
        {
            return false;
        }

        var semicolon = type.IndexOf(';', StringComparison.Ordinal);
        return (semicolon < 0 ? type : type[..semicolon]).Trim().Equals(expected, StringComparison.OrdinalIgnoreCase);
    }

    private static async Task<byte[]> ReadAllAsync(Stream body, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[64 * 1024];
        int n;
        while ((n = await body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + n > MaxMessageBytes)
            {
                throw new AirlockException("resource_exhausted", 429, $"the message is larger than {MaxMessageBytes} bytes");
            }

            buffer.Write(chunk, 0, n);
        }

        return buffer.ToArray();
    }

    /// <summary>The one request envelope of a server stream: <c>[flags][length BE32][json]</c>.</summary>
    private static async Task<byte[]> ReadEnvelopeAsync(Stream body, CancellationToken cancellationToken)
    {
        var header = new byte[5];
        try
        {
            await body.ReadExactlyAsync(header, cancellationToken);
        }
        catch (EndOfStreamException)
        {
            throw AirlockException.Invalid("the request stream ended before its first envelope");
        }

        if ((header[0] & 0x01) != 0)
        {
            throw AirlockException.Invalid("compressed envelopes are not supported");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(1));
        if (length > MaxMessageBytes)
        {
            throw new AirlockException("resource_exhausted", 429, $"the message is larger than {MaxMessageBytes} bytes");
        }

        var payload = new byte[length];
        try
        {
            await body.ReadExactlyAsync(payload, cancellationToken);
        }
        catch (EndOfStreamException)
        {
            throw AirlockException.Invalid("the request envelope is truncated");
        }

        return payload;
    }

    private static async Task WriteUnaryErrorAsync(HttpContext context, int status, ConnectError error)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.Clear();
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("code", error.Code);
            writer.WriteString("message", error.Message);
            writer.WriteEndObject();
        }

        await context.Response.Body.WriteAsync(buffer.ToArray(), context.RequestAborted);
    }

    private static ILogger Logger(HttpContext context) =>
        context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Airlock.E2b.Connect");

    [LoggerMessage(EventId = 600, Level = LogLevel.Error, Message = "Connect RPC {Path} failed")]
    private static partial void LogRpcFailed(ILogger logger, string path, Exception ex);
}
