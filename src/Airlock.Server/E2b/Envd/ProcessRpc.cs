using Airlock.Core;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;
using Airlock.Protocol.Envd.Process;
using Google.Protobuf;
using CoreEvent = Airlock.Core.Processes.ProcessEvent;
using WireEvent = Airlock.Protocol.Envd.Process.ProcessEvent;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// envd's <c>process.Process</c> service (spec §3.2) over <see cref="ProcessService"/>: a process
/// outlives its stream, so Start and Connect are both readers of the same <see cref="SandboxProcess"/>.
/// </summary>
internal static class ProcessRpc
{
    private const string Service = "process.Process/";

    public static IEndpointRouteBuilder MapEnvdProcessRpc(this IEndpointRouteBuilder app)
    {
        var processes = app.ServiceProvider.GetRequiredService<ProcessService>();
        app.MapServerStream<StartRequest, StartResponse>(Service + "Start", (call, request, stream) => StartAsync(processes, call, request, stream));
        app.MapServerStream<ConnectRequest, ConnectResponse>(Service + "Connect", (call, request, stream) => ConnectAsync(processes, call, request, stream));
        app.MapUnary<ListRequest, ListResponse>(Service + "List", (call, _) => ValueTask.FromResult(List(processes, call)));
        app.MapUnary<SendInputRequest, SendInputResponse>(Service + "SendInput", (call, request) => SendInputAsync(processes, call, request));
        app.MapUnary<SendSignalRequest, SendSignalResponse>(Service + "SendSignal", (call, request) => SendSignalAsync(processes, call, request));
        app.MapUnary<CloseStdinRequest, CloseStdinResponse>(Service + "CloseStdin", (call, request) =>
        {
            var (pid, tag) = Select(request.Process);
            processes.CloseStdin(call.SandboxId, pid, tag);
            return ValueTask.FromResult(new CloseStdinResponse());
        });
        app.MapUnary<UpdateRequest, UpdateResponse>(Service + "Update", (call, request) =>
        {
            var (pid, tag) = Select(request.Process);
            if (request.Pty?.Size is { } size)
            {
                processes.Resize(call.SandboxId, pid, tag, new PtySize((int)size.Cols, (int)size.Rows));
            }
            else
            {
                // Nothing to change, but the process must still exist, as upstream.
                processes.Get(call.SandboxId, pid, tag);
            }

            return ValueTask.FromResult(new UpdateResponse());
        });
        app.MapUnary<StreamInputRequest, StreamInputResponse>(Service + "StreamInput", (_, _) =>
            throw new AirlockException("unimplemented", 501, "StreamInput is a client stream, which the Connect JSON transport here does not serve; use SendInput"));
        return app;
    }

    private static async Task StartAsync(ProcessService processes, ConnectCall call, StartRequest request, ConnectStream<StartResponse> stream)
    {
        var config = request.Process ?? throw AirlockException.Invalid("process is required");
        PtySize? pty = request.Pty is null ? null : new PtySize((int)(request.Pty.Size?.Cols ?? 80), (int)(request.Pty.Size?.Rows ?? 24));
        var process = await processes.StartAsync(
            call.SandboxId,
            new ProcessStartOptions
            {
                // envd execs cmd with args as given (the SDK sends /bin/bash -l -c <cmd>).
                Cmd = config.Cmd,
                Args = [.. config.Args],
                Env = config.Envs.Count > 0 ? new Dictionary<string, string>(config.Envs) : null,
                Cwd = config.HasCwd ? config.Cwd : null,
                User = call.User,
                Tag = request.HasTag ? request.Tag : null,
                // Absent means a stdin pipe, as envd; the SDK sends stdin:false for plain commands.
                Stdin = !request.HasStdin || request.Stdin,
                Pty = pty,
                // Connect-Timeout-Ms bounds the process's lifetime (envd kills it: "signal: killed").
                Timeout = call.Timeout ?? TimeSpan.Zero,
            },
            call.CancellationToken);

        await PumpAsync(process, call, stream, e => new StartResponse { Event = e }, replay: true);
    }

    private static async Task ConnectAsync(ProcessService processes, ConnectCall call, ConnectRequest request, ConnectStream<ConnectResponse> stream)
    {
        var (pid, tag) = Select(request.Process);
        var process = processes.Get(call.SandboxId, pid, tag);
        // Re-attaching replays the retained output, so a reconnecting client misses nothing (an
        // exited process comes out as start, its output, end).
        await PumpAsync(process, call, stream, e => new ConnectResponse { Event = e }, replay: true);
    }

    private static async Task PumpAsync<TResponse>(SandboxProcess process, ConnectCall call, ConnectStream<TResponse> stream, Func<WireEvent, TResponse> wrap, bool replay)
        where TResponse : IMessage<TResponse>
    {
        stream.StartKeepalives(call.KeepaliveInterval, () => wrap(new WireEvent { Keepalive = new WireEvent.Types.KeepAlive() }), call.CancellationToken);
        await foreach (var e in process.ReadEventsAsync(replay, call.CancellationToken))
        {
            await stream.WriteAsync(wrap(ToWire(e)), call.CancellationToken);
        }
    }

    private static WireEvent ToWire(CoreEvent e)
    {
        switch (e)
        {
            case CoreEvent.Start start:
                return new WireEvent { Start = new WireEvent.Types.StartEvent { Pid = (uint)start.Pid } };
            case CoreEvent.Data data:
                var bytes = ByteString.CopyFrom(data.Bytes.Span);
                var wire = new WireEvent.Types.DataEvent();
                switch (data.Kind)
                {
                    case OutputKind.Stderr:
                        wire.Stderr = bytes;
                        break;
                    case OutputKind.Pty:
                        wire.Pty = bytes;
                        break;
                    default:
                        wire.Stdout = bytes;
                        break;
                }

                return new WireEvent { Data = wire };
            case CoreEvent.End end:
                var ended = new WireEvent.Types.EndEvent
                {
                    ExitCode = end.Status.ExitCode,
                    Exited = end.Status.Exited,
                    Status = end.Status.Describe(),
                };
                if (end.Error is not null)
                {
                    ended.Error = end.Error;
                }

                return new WireEvent { End = ended };
            default:
                throw new InvalidOperationException($"unknown process event {e.GetType().Name}");
        }
    }

    private static ListResponse List(ProcessService processes, ConnectCall call)
    {
        var response = new ListResponse();
        foreach (var process in processes.List(call.SandboxId))
        {
            var config = new ProcessConfig { Cmd = process.Options.Cmd };
            config.Args.AddRange(process.Options.Args);
            if (process.Options.Env is { } env)
            {
                config.Envs.Add(env.ToDictionary());
            }

            if (process.Options.Cwd is { } cwd)
            {
                config.Cwd = cwd;
            }

            var info = new ProcessInfo { Config = config, Pid = (uint)process.Pid };
            if (process.Tag is { } tag)
            {
                info.Tag = tag;
            }

            response.Processes.Add(info);
        }

        return response;
    }

    private static async ValueTask<SendInputResponse> SendInputAsync(ProcessService processes, ConnectCall call, SendInputRequest request)
    {
        var (pid, tag) = Select(request.Process);
        var data = request.Input?.InputCase switch
        {
            ProcessInput.InputOneofCase.Stdin => request.Input.Stdin,
            ProcessInput.InputOneofCase.Pty => request.Input.Pty,
            _ => throw AirlockException.Invalid("input.stdin or input.pty is required"),
        };
        await processes.SendInputAsync(call.SandboxId, pid, tag, data.Memory, call.CancellationToken);
        return new SendInputResponse();
    }

    private static async ValueTask<SendSignalResponse> SendSignalAsync(ProcessService processes, ConnectCall call, SendSignalRequest request)
    {
        var (pid, tag) = Select(request.Process);
        var signal = request.Signal switch
        {
            Signal.Sigkill => 9,
            Signal.Sigterm => 15,
            _ => throw AirlockException.Invalid("signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM"),
        };
        await processes.SignalAsync(call.SandboxId, pid, tag, signal, call.CancellationToken);
        return new SendSignalResponse();
    }

    private static (int? Pid, string? Tag) Select(ProcessSelector? selector) => selector?.SelectorCase switch
    {
        ProcessSelector.SelectorOneofCase.Pid => ((int)selector.Pid, null),
        ProcessSelector.SelectorOneofCase.Tag => (null, selector.Tag),
        _ => throw AirlockException.Invalid("process.pid or process.tag is required"),
    };
}
