using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Airlock.Core;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;
using Airlock.Server.Http;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Processes;

/// <summary>
/// Exec (run and wait, or stream as SSE) and long-lived processes: start, list, get, re-attach
/// (SSE, output since start replayed), stdin, signal, pty resize, and a WebSocket for a pty.
/// A process is selected by pid, or by tag when the segment is not a number.
/// </summary>
internal static class ProcessEndpoints
{
    private static readonly TimeSpan s_keepalive = TimeSpan.FromSeconds(15);

    public static IEndpointRouteBuilder MapProcesses(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/sandboxes/{id}/exec", ExecAsync);
        var group = app.MapGroup("/v1/sandboxes/{id}/processes");
        group.MapPost("", StartAsync);
        group.MapGet("", List);
        group.MapGet("/{selector}", Get);
        group.MapGet("/{selector}/events", EventsAsync);
        group.MapPost("/{selector}/stdin", SendStdinAsync);
        group.MapDelete("/{selector}/stdin", CloseStdin);
        group.MapPost("/{selector}/signal", SignalAsync);
        group.MapPost("/{selector}/resize", ResizeAsync);
        group.MapGet("/{selector}/pty", PtyAsync);
        return app;
    }

    private static async Task ExecAsync(string id, HttpContext context, ProcessService processes)
    {
        var cancellationToken = context.RequestAborted;
        var body = await JsonBody.RequireAsync(context.Request, ApiJsonContext.Default.ExecBody, cancellationToken);
        if (string.IsNullOrEmpty(body.Cmd))
        {
            throw AirlockException.Invalid("cmd is required");
        }

        var timeout = body.TimeoutSeconds ?? 60;
        if (timeout < 0 || timeout > 86_400)
        {
            throw AirlockException.Invalid("timeoutSeconds must be between 0 (none) and 86400");
        }

        var options = new ProcessStartOptions
        {
            Cmd = "/bin/bash",
            Args = ["-c", body.Cmd],
            Cwd = body.Cwd,
            Env = body.Env,
            User = body.User,
            Timeout = TimeSpan.FromSeconds(timeout),
        };
        var stdin = body.Stdin is null ? (ReadOnlyMemory<byte>?)null : Encoding.UTF8.GetBytes(body.Stdin);

        if (!ServerSentEvents.Wanted(context.Request))
        {
            var result = await processes.RunAsync(id, options, stdin, cancellationToken);
            var dto = new ExecResultDto(
                result.Status.ExitCode,
                result.Stdout,
                result.Stderr,
                (long)result.Duration.TotalMilliseconds,
                result.Error,
                result.Status.Exited ? null : result.Status.Signal);
            await TypedResults.Json(dto, ApiJsonContext.Default.ExecResultDto).ExecuteAsync(context);
            return;
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var process = await processes.StartAsync(id, options with { Stdin = stdin is not null }, cancellationToken);
        if (stdin is { } input)
        {
            await process.Handle!.WriteStdinAsync(input, cancellationToken);
            process.Handle.CloseStdin();
        }

        await StreamAsync(context, process, replay: true, started);
    }

    /// <summary>Streams start, output and end as SSE; the process goes on if the client leaves.</summary>
    private static async Task StreamAsync(HttpContext context, SandboxProcess process, bool replay, long? started = null)
    {
        var cancellationToken = context.RequestAborted;
        var sse = await ServerSentEvents.StartAsync(context.Response, cancellationToken);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var keepalives = sse.RunKeepalivesAsync(s_keepalive, stop.Token);
        // One decoder per stream so a multi-byte character split across chunks comes out whole.
        var decoders = new Dictionary<OutputKind, Decoder>();
        try
        {
            await foreach (var e in process.ReadEventsAsync(replay, cancellationToken))
            {
                switch (e)
                {
                    case ProcessEvent.Start s:
                        await sse.SendAsync("start", new SsePid(s.Pid), ApiJsonContext.Default.SsePid, cancellationToken);
                        break;
                    case ProcessEvent.Data d:
                        if (!decoders.TryGetValue(d.Kind, out var decoder))
                        {
                            decoders[d.Kind] = decoder = Encoding.UTF8.GetDecoder();
                        }

                        var chars = new char[decoder.GetCharCount(d.Bytes.Span, flush: false)];
                        decoder.GetChars(d.Bytes.Span, chars, flush: false);
                        var name = d.Kind switch { OutputKind.Stderr => "stderr", OutputKind.Pty => "pty", _ => "stdout" };
                        await sse.SendAsync(name, new SseData(new string(chars)), ApiJsonContext.Default.SseData, cancellationToken);
                        break;
                    case ProcessEvent.End end:
                        // Bytes of an unfinished character at the very end come out as U+FFFD, not lost.
                        foreach (var (kind, pending) in decoders)
                        {
                            var tail = new char[pending.GetCharCount([], flush: true)];
                            pending.GetChars([], tail, flush: true);
                            if (tail.Length > 0)
                            {
                                var tailName = kind switch { OutputKind.Stderr => "stderr", OutputKind.Pty => "pty", _ => "stdout" };
                                await sse.SendAsync(tailName, new SseData(new string(tail)), ApiJsonContext.Default.SseData, cancellationToken);
                            }
                        }

                        long? duration = started is { } t ? (long)System.Diagnostics.Stopwatch.GetElapsedTime(t).TotalMilliseconds : null;
                        await sse.SendAsync(
                            "end",
                            new SseEnd(end.Status.ExitCode, end.Status.Describe(), end.Error, end.Status.Exited ? null : end.Status.Signal, duration),
                            ApiJsonContext.Default.SseEnd,
                            cancellationToken);
                        break;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // Client gone; the process keeps running.
        }
        finally
        {
            await stop.CancelAsync();
            await keepalives;
        }
    }

    private static async Task<IResult> StartAsync(string id, HttpRequest request, ProcessService processes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, ApiJsonContext.Default.StartProcessBody, cancellationToken);
        if (string.IsNullOrEmpty(body.Cmd))
        {
            throw AirlockException.Invalid("cmd is required");
        }

        if (body.TimeoutSeconds is < 0 or > 86_400)
        {
            throw AirlockException.Invalid("timeoutSeconds must be between 0 (none) and 86400");
        }

        // With args, cmd is the program itself; without, cmd is a bash command line (as in exec).
        var process = await processes.StartAsync(
            id,
            new ProcessStartOptions
            {
                Cmd = body.Args is null ? "/bin/bash" : body.Cmd,
                Args = body.Args is null ? ["-c", body.Cmd] : body.Args,
                Cwd = body.Cwd,
                Env = body.Env,
                User = body.User,
                Tag = body.Tag,
                Stdin = body.Stdin ?? false,
                Pty = body.Pty is { } p ? new PtySize(p.Cols, p.Rows) : null,
                Timeout = TimeSpan.FromSeconds(body.TimeoutSeconds ?? 0),
            },
            cancellationToken);
        return TypedResults.Json(ToDto(process), ApiJsonContext.Default.ProcessDto, statusCode: 201);
    }

    private static IResult List(string id, ProcessService processes) =>
        TypedResults.Json(processes.List(id).Select(ToDto).ToList(), ApiJsonContext.Default.ListProcessDto);

    private static IResult Get(string id, string selector, ProcessService processes) =>
        TypedResults.Json(ToDto(Find(processes, id, selector)), ApiJsonContext.Default.ProcessDto);

    private static async Task EventsAsync(string id, string selector, HttpContext context, ProcessService processes)
    {
        var process = Find(processes, id, selector);
        var replay = context.Request.Query["replay"] != "false";
        await StreamAsync(context, process, replay);
    }

    private static async Task<IResult> SendStdinAsync(string id, string selector, HttpRequest request, ProcessService processes, CancellationToken cancellationToken)
    {
        var (pid, tag) = Parse(selector);
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, cancellationToken);
        await processes.SendInputAsync(id, pid, tag, buffer.ToArray(), cancellationToken);
        return TypedResults.NoContent();
    }

    private static IResult CloseStdin(string id, string selector, ProcessService processes)
    {
        var (pid, tag) = Parse(selector);
        processes.CloseStdin(id, pid, tag);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> SignalAsync(string id, string selector, HttpRequest request, ProcessService processes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.ReadAsync(request, ApiJsonContext.Default.SignalBody, cancellationToken);
        var (pid, tag) = Parse(selector);
        await processes.SignalAsync(id, pid, tag, body?.Signal?.Number ?? 9, cancellationToken);
        return TypedResults.NoContent();
    }

    private static async Task<IResult> ResizeAsync(string id, string selector, HttpRequest request, ProcessService processes, CancellationToken cancellationToken)
    {
        var body = await JsonBody.RequireAsync(request, ApiJsonContext.Default.ResizeBody, cancellationToken);
        var (pid, tag) = Parse(selector);
        processes.Resize(id, pid, tag, new PtySize(body.Cols, body.Rows));
        return TypedResults.NoContent();
    }

    /// <summary>
    /// WebSocket on a pty process: binary (or text) frames in are keystrokes; binary frames out are
    /// the terminal's output, replayed from the start; a text frame
    /// <c>{"type":"resize","cols":..,"rows":..}</c> resizes. Closes with the exit code in the reason.
    /// </summary>
    private static async Task PtyAsync(string id, string selector, HttpContext context, ProcessService processes)
    {
        var process = Find(processes, id, selector);
        if (process.Options.Pty is null)
        {
            throw AirlockException.Invalid("the process has no pty");
        }

        if (!context.WebSockets.IsWebSocketRequest)
        {
            throw AirlockException.Invalid("this endpoint needs a WebSocket upgrade");
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        var (pid, tag) = (process.Pid, (string?)null);
        var input = Task.Run(async () =>
        {
            var buffer = new byte[16 * 1024];
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    var received = await socket.ReceiveAsync(buffer, stop.Token);
                    if (received.MessageType == WebSocketMessageType.Close)
                    {
                        break;
                    }

                    if (received.MessageType == WebSocketMessageType.Text && buffer[0] == (byte)'{')
                    {
                        using var doc = JsonDocument.Parse(buffer.AsMemory(0, received.Count));
                        if (doc.RootElement.TryGetProperty("type", out var type) && type.GetString() == "resize")
                        {
                            processes.Resize(id, pid, tag, new PtySize(doc.RootElement.GetProperty("cols").GetInt32(), doc.RootElement.GetProperty("rows").GetInt32()));
                            continue;
                        }
                    }

                    await processes.SendInputAsync(id, pid, tag, buffer.AsMemory(0, received.Count).ToArray(), stop.Token);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or AirlockException or JsonException or KeyNotFoundException or InvalidOperationException)
            {
            }
        });

        var reason = "closed";
        try
        {
            await foreach (var e in process.ReadEventsAsync(replay: true, stop.Token))
            {
                if (e is ProcessEvent.Data d)
                {
                    await socket.SendAsync(d.Bytes, WebSocketMessageType.Binary, true, stop.Token);
                }
                else if (e is ProcessEvent.End end)
                {
                    reason = end.Status.Describe();
                }
            }

            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, reason, CancellationToken.None);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
        {
        }

        await stop.CancelAsync();
        await input;
    }

    private static SandboxProcess Find(ProcessService processes, string id, string selector)
    {
        var (pid, tag) = Parse(selector);
        return processes.Get(id, pid, tag);
    }

    private static (int? Pid, string? Tag) Parse(string selector) =>
        int.TryParse(selector, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid) ? (pid, null) : (null, selector);

    private static ProcessDto ToDto(SandboxProcess p)
    {
        var end = p.End;
        var isBash = p.Options.Cmd == "/bin/bash" && p.Options.Args is ["-c", _];
        return new ProcessDto(
            p.Pid,
            p.Tag,
            isBash ? p.Options.Args[1] : p.Options.Cmd,
            isBash ? [] : p.Options.Args.ToList(),
            p.Options.Cwd,
            p.Options.Pty is not null,
            p.StartedAt,
            end is null,
            end?.Status.ExitCode,
            end is { Status.Exited: false } ? end.Status.Signal : null,
            end?.Status.Describe());
    }
}
