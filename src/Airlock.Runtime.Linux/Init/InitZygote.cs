using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Airlock.Runtime.Linux.Init;

/// <summary>
/// The long-lived <c>airlock-init --zygote</c> (docs/init-protocol.md, section 1a): started once,
/// it forks a process A per sandbox on request, so a create costs no fork+exec of this large,
/// multi-threaded process and no exec of the helper. Requests go down its stdin, replies
/// (<c>&lt;seq&gt; ok &lt;pid&gt;</c> or <c>&lt;seq&gt; error …</c>) come up its stdout, read by one
/// dedicated thread. If it dies, pending starts fail and the next start launches a new one.
/// It ends when this process does (EOF on its stdin); sandboxes it started are not its children.
/// </summary>
internal sealed class InitZygote(string helperPath) : IDisposable
{
    private readonly Lock _lock = new();
    private readonly ConcurrentDictionary<long, TaskCompletionSource<string>> _pending = new();
    private Process? _process;
    private long _seq;
    private bool _disposed;

    /// <summary>Starts one sandbox; returns the helper's answer without the sequence number (<c>ok PID</c> or <c>error …</c>).</summary>
    public async Task<string> StartAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var seq = Interlocked.Increment(ref _seq);
        var reply = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[seq] = reply;
        var payload = new MemoryStream();
        payload.Write(stackalloc byte[4]);
        foreach (var arg in args.Prepend(seq.ToString(CultureInfo.InvariantCulture)))
        {
            payload.Write(Encoding.UTF8.GetBytes(arg));
            payload.WriteByte(0);
        }

        var bytes = payload.GetBuffer().AsSpan(0, (int)payload.Length);
        BitConverter.TryWriteBytes(bytes, (uint)(bytes.Length - 4));
        try
        {
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                var process = _process is { HasExited: false } p ? p : Launch();
                var stdin = process.StandardInput.BaseStream;
                stdin.Write(bytes);
                stdin.Flush();
            }
        }
        catch (IOException ex)
        {
            _pending.TryRemove(seq, out _);
            throw new IOException("the native helper (zygote) is gone", ex);
        }

        try
        {
            return await reply.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _pending.TryRemove(seq, out _);
        }
    }

    private Process Launch()
    {
        var start = new ProcessStartInfo(helperPath)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--zygote");
        var process = Process.Start(start) ?? throw new IOException("could not start the native helper");
        _process = process;
        var reader = new Thread(() => ReadReplies(process)) { IsBackground = true, Name = "airlock-init zygote" };
        reader.Start();
        return process;
    }

    private void ReadReplies(Process process)
    {
        try
        {
            while (process.StandardOutput.ReadLine() is { } line)
            {
                var space = line.IndexOf(' ', StringComparison.Ordinal);
                if (space > 0 && long.TryParse(line.AsSpan(0, space), CultureInfo.InvariantCulture, out var seq) && _pending.TryRemove(seq, out var reply))
                {
                    reply.TrySetResult(line[(space + 1)..]);
                }
            }
        }
        catch (IOException)
        {
        }

        // The zygote is gone: whoever still waits on it gets an answer, the next start launches a new one.
        lock (_lock)
        {
            if (_process == process)
            {
                _process = null;
            }
        }

        foreach (var seq in _pending.Keys)
        {
            if (_pending.TryRemove(seq, out var reply))
            {
                reply.TrySetException(new IOException("the native helper (zygote) exited"));
            }
        }

        process.Dispose();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            // Closing its stdin ends it (it only ever exits on EOF).
            try
            {
                _process?.StandardInput.Close();
            }
            catch (IOException)
            {
            }
        }
    }
}
