using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Airlock.Core;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;

namespace Airlock.Server.E2b.CodeInterpreter;

/// <summary>
/// One code context: a long-lived interpreter driver process in the sandbox, started through
/// <see cref="ProcessService"/> with a stdin pipe, whose globals persist between executions.
/// Executions are serialised; each is sent as one JSON line and read back from the process's
/// output until the driver has marked its end on both pipes (so stderr written before the end is
/// never cut off by stdout arriving first).
/// </summary>
internal sealed class CodeContext(ProcessService processes, string sandboxId, string id, string language, string cwd)
{
    // Reads the driver's source, exactly that many bytes, from stdin (unbuffered, so nothing meant
    // for the driver's own protocol is read ahead), then runs it.
    private const string Bootstrap =
        "import os,sys\nn=int(sys.argv[1]);b=b''\nwhile len(b)<n:b+=os.read(0,n-len(b)) or sys.exit(70)\nexec(compile(b,'airlock-driver','exec'))";

    /// <summary>How long an execution whose client went away may take to stop after SIGINT before the interpreter is killed.</summary>
    private static readonly TimeSpan s_interruptGrace = TimeSpan.FromSeconds(10);

    private static readonly byte[] s_driver = LoadDriver();

    private readonly SemaphoreSlim _gate = new(1, 1);
    private SandboxProcess? _process;
    private string _marker = "";
    private long _executions;

    public string Id { get; } = id;

    public string Language { get; } = language;

    public string Cwd { get; } = cwd;

    public ContextDto ToDto() => new(Id, Language, Cwd);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await StartDriverAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Kills the interpreter and starts a fresh one: the context keeps its id, loses its state.</summary>
    public async Task RestartAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await StopDriverAsync().ConfigureAwait(false);
            await StartDriverAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task StopAsync()
    {
        // Not bounded by the gate: a running execution sees its process end and finishes.
        await StopDriverAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Runs one cell and writes its NDJSON lines through <paramref name="write"/>, ending with
    /// <c>end_of_execution</c> (or <c>unexpected_end_of_execution</c> when the interpreter died).
    /// When <paramref name="aborted"/> fires (the client left or timed out), the cell is
    /// interrupted and drained before the next execution may start.
    /// </summary>
    public async Task ExecuteAsync(string code, IReadOnlyDictionary<string, string>? env, Func<byte[], Task> write, CancellationToken aborted)
    {
        await _gate.WaitAsync(aborted).ConfigureAwait(false);
        try
        {
            if (_process is null || _process.HasExited)
            {
                await StartDriverAsync(aborted).ConfigureAwait(false);
            }

            await RunAsync(_process!, code, env, write, aborted).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task RunAsync(SandboxProcess process, string code, IReadOnlyDictionary<string, string>? env, Func<byte[], Task> write, CancellationToken aborted)
    {
        var execution = ++_executions;
        var stdout = new FrameSplitter(_marker);
        var stderr = new FrameSplitter(_marker);
        bool stdoutDone = false, stderrDone = false, clientGone = false;
        var pieces = new List<FrameSplitter.Piece>();

        using var drain = new CancellationTokenSource();
        await using var onAbort = aborted.Register(() =>
        {
            clientGone = true;
            drain.CancelAfter(s_interruptGrace);
            _ = InterruptAsync(process);
        });

        async Task Send(byte[] line)
        {
            if (clientGone)
            {
                return;
            }

            try
            {
                await write(line).ConfigureAwait(false);
            }
            catch (Exception) when (aborted.IsCancellationRequested)
            {
                clientGone = true;
            }
        }

        // Attach before sending the cell: reading starts "from now", so nothing it prints is missed.
        await using var events = process.ReadEventsAsync(replay: false, drain.Token).GetAsyncEnumerator(drain.Token);
        try
        {
            await events.MoveNextAsync().ConfigureAwait(false); // Start
            var request = JsonSerializer.SerializeToUtf8Bytes(new DriverRequest(execution, code, env?.ToDictionary()), CodeInterpreterJsonContext.Default.DriverRequest);
            await processes.SendInputAsync(sandboxId, process.Pid, null, (byte[])[.. request, (byte)'\n'], drain.Token).ConfigureAwait(false);

            while (!(stdoutDone && stderrDone) && await events.MoveNextAsync().ConfigureAwait(false))
            {
                switch (events.Current)
                {
                    case ProcessEvent.Data { Kind: OutputKind.Stdout or OutputKind.Stderr } data:
                        var isStdout = data.Kind == OutputKind.Stdout;
                        pieces.Clear();
                        (isStdout ? stdout : stderr).Push(data.Bytes.Span, pieces);
                        var text = new StringBuilder();
                        foreach (var piece in pieces)
                        {
                            if (piece.Text is not null)
                            {
                                text.Append(piece.Text);
                                continue;
                            }

                            if (piece.Id != execution)
                            {
                                continue; // the tail of an earlier, interrupted execution
                            }

                            if (text.Length > 0)
                            {
                                await Send(StreamLine(isStdout, text.ToString())).ConfigureAwait(false);
                                text.Clear();
                            }

                            if (piece.Payload == "end")
                            {
                                stdoutDone |= isStdout;
                                stderrDone |= !isStdout;
                            }
                            else if (isStdout && IsJsonObject(piece.Payload!))
                            {
                                await Send([.. Encoding.UTF8.GetBytes(piece.Payload!), (byte)'\n']).ConfigureAwait(false);
                            }
                        }

                        if (text.Length > 0)
                        {
                            await Send(StreamLine(isStdout, text.ToString())).ConfigureAwait(false);
                        }

                        break;
                    case ProcessEvent.End end:
                        _process = null;
                        await Send(Line(new ErrorLine("error", "DeadKernelError", $"the interpreter exited ({Describe(end.Status)}); its state is lost", ""), CodeInterpreterJsonContext.Default.ErrorLine)).ConfigureAwait(false);
                        await Send(Line(new TypeLine("unexpected_end_of_execution"), CodeInterpreterJsonContext.Default.TypeLine)).ConfigureAwait(false);
                        return;
                }
            }
        }
        catch (OperationCanceledException) when (drain.IsCancellationRequested)
        {
            // The client left and the cell ignored SIGINT: the interpreter goes, the next execution starts a new one.
            await StopDriverAsync().ConfigureAwait(false);
            return;
        }
        catch (AirlockException) when (process.HasExited)
        {
            // stdin went away with the process; the next execution starts a new one.
            _process = null;
            await Send(Line(new ErrorLine("error", "DeadKernelError", "the interpreter exited; its state is lost", ""), CodeInterpreterJsonContext.Default.ErrorLine)).ConfigureAwait(false);
            await Send(Line(new TypeLine("unexpected_end_of_execution"), CodeInterpreterJsonContext.Default.TypeLine)).ConfigureAwait(false);
            return;
        }

        await Send(Line(new TypeLine("end_of_execution"), CodeInterpreterJsonContext.Default.TypeLine)).ConfigureAwait(false);
    }

    private async Task InterruptAsync(SandboxProcess process)
    {
        try
        {
            await processes.SignalAsync(sandboxId, process.Pid, null, 2).ConfigureAwait(false);
        }
        catch (AirlockException)
        {
            // Already gone.
        }
    }

    private async Task StartDriverAsync(CancellationToken cancellationToken)
    {
        _marker = "\u001e" + RandomNumberGenerator.GetHexString(24, lowercase: true) + ":";
        var process = await processes.StartAsync(sandboxId, new ProcessStartOptions
        {
            Cmd = "/usr/bin/python3",
            Args = ["-c", Bootstrap, s_driver.Length.ToString(CultureInfo.InvariantCulture)],
            Env = new Dictionary<string, string> { ["AIRLOCK_CI_MARKER"] = _marker },
            Cwd = Cwd,
            Stdin = true,
        }, cancellationToken).ConfigureAwait(false);
        _process = process;
        await processes.SendInputAsync(sandboxId, process.Pid, null, s_driver, cancellationToken).ConfigureAwait(false);
    }

    private async Task StopDriverAsync()
    {
        var process = _process;
        _process = null;
        if (process is not null && !process.HasExited)
        {
            await process.KillAsync("code context stopped").ConfigureAwait(false);
        }
    }

    private static byte[] StreamLine(bool stdout, string text) =>
        Line(new StreamLine(stdout ? "stdout" : "stderr", text, DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture)), CodeInterpreterJsonContext.Default.StreamLine);

    private static byte[] Line<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        [.. JsonSerializer.SerializeToUtf8Bytes(value, type), (byte)'\n'];

    /// <summary>Only well-formed JSON objects go out as NDJSON lines, whatever the cell managed to write.</summary>
    private static bool IsJsonObject(string payload)
    {
        try
        {
            using var document = JsonDocument.Parse(payload);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string Describe(ExitStatus status) =>
        status.Signal != 0 ? $"killed by signal {status.Signal}" : $"exit status {status.ExitCode}";

    private static byte[] LoadDriver()
    {
        using var stream = typeof(CodeContext).Assembly.GetManifestResourceStream("Airlock.Server.E2b.CodeInterpreter.driver.py")
            ?? throw new InvalidOperationException("the code interpreter driver is not embedded");
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }
}
