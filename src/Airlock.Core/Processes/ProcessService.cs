using System.Text;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Airlock.Core.Tenancy;
using Microsoft.Extensions.Options;

namespace Airlock.Core.Processes;

/// <summary>Starts, finds, feeds, signals and waits for processes in sandboxes (the E2B process model).</summary>
internal sealed class ProcessService(SandboxService sandboxes, IOptions<SandboxOptions> options, TimeProvider time, AuditLog audit)
{
    private const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>Signals a process may be sent through the API.</summary>
    private static readonly HashSet<int> s_allowedSignals = [1, 2, 3, 9, 10, 12, 15, 18, 19, 20];

    public async Task<SandboxProcess> StartAsync(string sandboxId, ProcessStartOptions start, CancellationToken cancellationToken = default)
    {
        var live = sandboxes.Get(sandboxId);
        if (string.IsNullOrEmpty(start.Cmd))
        {
            throw AirlockException.Invalid("cmd is required");
        }

        if (start.Pty is { } pty && (pty.Cols is < 1 or > 1000 || pty.Rows is < 1 or > 1000))
        {
            throw AirlockException.Invalid("pty size must be between 1 and 1000");
        }

        var user = live.ResolveUser(start.User);
        var cwd = start.Cwd is { Length: > 0 } requested
            ? SandboxPath.Resolve(requested, user)
            : (user.Name == live.Template.User && live.Template.Workdir is { } workdir ? workdir : user.Home);

        // Later entries win: base, template, sandbox-wide (create), then this request.
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PATH"] = DefaultPath,
            ["HOME"] = user.Home,
            ["USER"] = user.Name,
            ["LOGNAME"] = user.Name,
        };
        if (start.Pty is not null)
        {
            env["TERM"] = "xterm-256color";
        }

        foreach (var source in new[] { live.Template.Env, live.Record.Env, start.Env })
        {
            foreach (var (key, value) in source ?? new Dictionary<string, string>())
            {
                if (key.Length == 0 || key.Contains('=') || key.Contains('\0') || value.Contains('\0'))
                {
                    throw AirlockException.Invalid($"env name '{key}' is invalid");
                }

                env[key] = value;
            }
        }

        var process = new SandboxProcess(start, time.GetUtcNow(), options.Value.ProcessOutputWindowBytes);
        var envStrings = env.Select(e => $"{e.Key}={e.Value}").ToArray();
        var request = new SpawnRequest(
            [start.Cmd, .. start.Args],
            envStrings,
            cwd,
            user,
            start.Stdin,
            start.Pty,
            // no_new_privs would stop the setuid sudo that E2B users rely on ("sudo apt-get ..."): user
            // processes may gain root through sudo only, and root keeps only the bounded capability set.
            NoNewPrivileges: user.IsRoot || !options.Value.AllowSudo);
        IProcessHandle? handle = null;
        // `bash -c <plain words>` runs the program directly, as bash itself would exec it (DirectExec).
        if (start.Cmd == "/bin/bash" && start.Args is ["-c", var line]
            && DirectExec.Plan(line, env, cwd, user, live.Runtime.FileSystem) is { } direct)
        {
            var directRequest = request with
            {
                Argv = direct.Argv,
                // The same strings plus the three bash would add, last (bash's own order differs: see DirectExec).
                Env = [.. envStrings, .. direct.Added.Select(e => $"{e.Key}={e.Value}")],
            };
            try
            {
                handle = await live.Runtime.SpawnAsync(directRequest, process, cancellationToken).ConfigureAwait(false);
            }
            catch (AirlockException)
            {
                // It did not exec (a missing ELF interpreter, an ACL): bash reports that its own way.
            }
        }

        handle ??= await live.Runtime.SpawnAsync(request, process, cancellationToken).ConfigureAwait(false);
        process.Attach(handle, time);
        live.Processes.Add(process);
        // Every surface (exec, processes, E2B Connect, code interpreter) starts here: one audit hook, queued, no I/O.
        audit.Record(live.Record.TeamId, "process.start", live.Record.Id, $"pid={process.Pid} user={user.Name} cmd={string.Join(' ', request.Argv)}");
        _ = process.Completion.ContinueWith(_ => live.Processes.OnFinished(process), TaskScheduler.Default);
        return process;
    }

    public SandboxProcess Get(string sandboxId, int? pid, string? tag)
    {
        if (pid is null && tag is null)
        {
            throw AirlockException.Invalid("a pid or a tag is required");
        }

        return sandboxes.Get(sandboxId).Processes.Find(pid, tag)
            ?? throw AirlockException.NotFound(pid is not null ? $"process {pid}" : $"process with tag '{tag}'");
    }

    public IReadOnlyList<SandboxProcess> List(string sandboxId) =>
        sandboxes.Get(sandboxId).Processes.Running.OrderBy(p => p.StartedAt).ToList();

    public async Task SendInputAsync(string sandboxId, int? pid, string? tag, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        var process = Running(sandboxId, pid, tag);
        if (!process.Options.Stdin && process.Options.Pty is null)
        {
            throw new AirlockException("stdin_closed", 400, "the process was started without stdin");
        }

        await process.Handle!.WriteStdinAsync(data, cancellationToken).ConfigureAwait(false);
    }

    public void CloseStdin(string sandboxId, int? pid, string? tag) => Running(sandboxId, pid, tag).Handle!.CloseStdin();

    public async Task SignalAsync(string sandboxId, int? pid, string? tag, int signal, CancellationToken cancellationToken = default)
    {
        if (!s_allowedSignals.Contains(signal))
        {
            throw AirlockException.Invalid($"signal {signal} is not supported");
        }

        var process = Running(sandboxId, pid, tag);
        if (signal == 9)
        {
            await process.KillAsync(null, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await process.Handle!.SignalAsync(signal, cancellationToken).ConfigureAwait(false);
        }
    }

    public void Resize(string sandboxId, int? pid, string? tag, PtySize size)
    {
        var process = Running(sandboxId, pid, tag);
        if (process.Options.Pty is null)
        {
            throw AirlockException.Invalid("the process has no pty");
        }

        if (size.Cols is < 1 or > 1000 || size.Rows is < 1 or > 1000)
        {
            throw AirlockException.Invalid("pty size must be between 1 and 1000");
        }

        process.Handle!.Resize(size);
    }

    /// <summary>Runs to completion and collects the output (the retained window of it).</summary>
    public async Task<ProcessResult> RunAsync(string sandboxId, ProcessStartOptions start, ReadOnlyMemory<byte>? stdin, CancellationToken cancellationToken = default)
    {
        var began = time.GetTimestamp();
        var process = await StartAsync(sandboxId, start with { Stdin = stdin is not null }, cancellationToken).ConfigureAwait(false);
        if (stdin is { } input)
        {
            if (input.Length > 0)
            {
                await process.Handle!.WriteStdinAsync(input, cancellationToken).ConfigureAwait(false);
            }

            process.Handle!.CloseStdin();
        }

        // Only the last window of each stream is kept, like the process's own replay window: a
        // command printing gigabytes must not make the server buffer (and then fail to serialize)
        // all of it. Security invariant "1 GB of output is contained".
        var window = options.Value.ProcessOutputWindowBytes;
        var stdout = new MemoryStream();
        var stderr = new MemoryStream();
        ProcessEvent.End? end = null;
        await foreach (var e in process.ReadEventsAsync(replay: true, cancellationToken).ConfigureAwait(false))
        {
            switch (e)
            {
                case ProcessEvent.Data { Kind: OutputKind.Stderr } d:
                    AppendBounded(stderr, d.Bytes.Span, window);
                    break;
                case ProcessEvent.Data d:
                    AppendBounded(stdout, d.Bytes.Span, window);
                    break;
                case ProcessEvent.End ended:
                    end = ended;
                    break;
            }
        }

        return new ProcessResult(
            end!.Status,
            end.Error,
            Tail(stdout, window),
            Tail(stderr, window),
            time.GetElapsedTime(began));
    }

    /// <summary>Appends, compacting to the last <paramref name="window"/> bytes once twice that is held.</summary>
    private static void AppendBounded(MemoryStream buffer, ReadOnlySpan<byte> data, long window)
    {
        if (data.Length >= window)
        {
            buffer.SetLength(0);
            buffer.Write(data[^(int)window..]);
            return;
        }

        if (buffer.Length + data.Length > 2 * window)
        {
            var keep = (int)Math.Min(buffer.Length, window - data.Length);
            var bytes = buffer.GetBuffer();
            Buffer.BlockCopy(bytes, (int)buffer.Length - keep, bytes, 0, keep);
            buffer.SetLength(keep);
            buffer.Position = keep;
        }

        buffer.Write(data);
    }

    private static string Tail(MemoryStream buffer, long window)
    {
        var length = (int)Math.Min(buffer.Length, window);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), (int)buffer.Length - length, length);
    }

    private SandboxProcess Running(string sandboxId, int? pid, string? tag)
    {
        var process = Get(sandboxId, pid, tag);
        if (process.HasExited)
        {
            throw AirlockException.NotFound(pid is not null ? $"process {pid}" : $"process with tag '{tag}'");
        }

        return process;
    }
}

internal sealed record ProcessResult(ExitStatus Status, string? Error, string Stdout, string Stderr, TimeSpan Duration);
