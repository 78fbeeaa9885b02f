using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Init;

/// <summary>
/// The server's end of a sandbox init's control socket (docs/init-protocol.md): SEQPACKET, one
/// message per request, reply or event. Receiving goes through .NET's socket engine; sending is a
/// raw <c>sendmsg</c> because .NET cannot attach fds (SCM_RIGHTS).
/// </summary>
internal sealed class InitClient : IAsyncDisposable
{
    public const uint OpSpawn = 1, OpSignal = 2, OpPing = 3, OpList = 4;
    public const uint RespAck = 100, RespSpawned = 101, RespList = 104, EvtExit = 200;
    public const uint FlagPty = 1, FlagRootCaps = 2, FlagNoNewPrivs = 4;

    private readonly Socket _socket;
    private readonly ConcurrentDictionary<uint, Pending> _pending = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<int, int> _onExit;
    private int _seq;
    private volatile bool _disposing;

    private sealed record Pending(TaskCompletionSource<byte[]> Reply, Action<byte[]>? Inline);

    private InitClient(Socket socket, Action<int, int> onExit)
    {
        _socket = socket;
        _onExit = onExit;
        _ = ReceiveLoopAsync();
    }

    /// <summary>Completes when the init is gone (its end of the socket closed).</summary>
    public Task Closed => _closed.Task;

    /// <param name="onExit">Called with (pid, wait status) on the receive loop, in order with replies.</param>
    public static InitClient Connect(string socketPath, Action<int, int> onExit)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        try
        {
            // A unix socket connect completes at once (or fails): no need for the async engine.
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new InitClient(socket, onExit);
    }

    public async Task PingAsync(CancellationToken cancellationToken = default)
    {
        var reply = await RequestAsync(OpPing, [], [], null, cancellationToken).ConfigureAwait(false);
        ThrowIfError(BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(8)), "ping");
    }

    /// <summary>
    /// Starts a process. <paramref name="onSpawned"/> runs on the receive loop with (err, pid, step)
    /// before any later message, so the caller can register the pid before its EXIT can arrive.
    /// </summary>
    public async Task<(int Err, int Pid, string Step)> SpawnAsync(
        int uid, int gid, uint flags, string cwd, IReadOnlyList<string> argv, IReadOnlyList<string> env,
        int[] fds, Action<int, int, string> onSpawned, CancellationToken cancellationToken = default)
    {
        var body = new MemoryStream();
        Span<byte> header = stackalloc byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)uid);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)gid);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], (uint)argv.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], (uint)env.Count);
        body.Write(header);
        WriteString(body, cwd);
        foreach (var arg in argv)
        {
            WriteString(body, arg);
        }

        foreach (var e in env)
        {
            WriteString(body, e);
        }

        if (body.Length > 200 * 1024)
        {
            throw new Core.AirlockException("invalid_argument", 400, "command, arguments and environment exceed 200 KiB");
        }

        var reply = await RequestAsync(OpSpawn, body.ToArray(), fds, r =>
        {
            var (err, pid, step) = ParseSpawned(r);
            onSpawned(err, pid, step);
        }, cancellationToken).ConfigureAwait(false);
        return ParseSpawned(reply);
    }

    private static (int Err, int Pid, string Step) ParseSpawned(byte[] r)
    {
        var err = BinaryPrimitives.ReadInt32LittleEndian(r.AsSpan(8));
        var pid = (int)BinaryPrimitives.ReadUInt32LittleEndian(r.AsSpan(12));
        var step = r.Length > 16 ? Encoding.UTF8.GetString(r.AsSpan(16)).TrimEnd('\0') : "";
        return (err, pid, step);
    }

    public async Task<int> SignalAsync(int pid, int signal, bool group, CancellationToken cancellationToken = default)
    {
        var body = new byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(body, (uint)pid);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(4), signal);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(8), group ? 1u : 0u);
        var reply = await RequestAsync(OpSignal, body, [], null, cancellationToken).ConfigureAwait(false);
        return BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(8));
    }

    public async Task<IReadOnlyList<int>> ListAsync(CancellationToken cancellationToken = default)
    {
        var reply = await RequestAsync(OpList, [], [], null, cancellationToken).ConfigureAwait(false);
        var count = (int)BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(8));
        var pids = new int[count];
        for (var i = 0; i < count; i++)
        {
            pids[i] = (int)BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(12 + (4 * i)));
        }

        return pids;
    }

    private async Task<byte[]> RequestAsync(uint op, byte[] body, int[] fds, Action<byte[]>? inline, CancellationToken cancellationToken)
    {
        var seq = (uint)Interlocked.Increment(ref _seq);
        var pending = new Pending(new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously), inline);
        _pending[seq] = pending;
        try
        {
            if (_closed.Task.IsCompleted)
            {
                throw new IOException("the sandbox's init is gone");
            }

            var message = new byte[8 + body.Length];
            BinaryPrimitives.WriteUInt32LittleEndian(message, op);
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), seq);
            body.CopyTo(message, 8);
            Send(message, fds);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            return await pending.Reply.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            _pending.TryRemove(seq, out _);
        }
    }

    private unsafe void Send(byte[] message, ReadOnlySpan<int> fds)
    {
        var control = stackalloc byte[64];
        fixed (byte* data = message)
        {
            var iov = new IoVec { Base = data, Len = message.Length };
            var msg = new MsgHdr { Iov = &iov, IovLen = 1 };
            if (fds.Length > 0)
            {
                // struct cmsghdr { size_t len; int level; int type; } followed by the fds, aligned to 8.
                var dataLen = fds.Length * sizeof(int);
                var cmsgLen = 16 + dataLen;
                new Span<byte>(control, 64).Clear();
                *(ulong*)control = (ulong)cmsgLen;
                *(int*)(control + 8) = SOL_SOCKET;
                *(int*)(control + 12) = SCM_RIGHTS;
                for (var i = 0; i < fds.Length; i++)
                {
                    *(int*)(control + 16 + (4 * i)) = fds[i];
                }

                msg.Control = control;
                msg.ControlLen = (cmsgLen + 7) & ~7;
            }

            var fd = (int)_socket.SafeHandle.DangerousGetHandle();
            for (var attempt = 0; ; attempt++)
            {
                var n = sendmsg(fd, &msg, MSG_NOSIGNAL);
                if (n >= 0)
                {
                    return;
                }

                var errno = Errno;
                // The socket is non-blocking (the receive side is async): wait out a full buffer briefly.
                if ((errno == EAGAIN || errno == EINTR) && attempt < 1000)
                {
                    Thread.Sleep(1);
                    continue;
                }

                throw new IOException($"sending to the sandbox's init failed: {StrError(errno)}");
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var n = await _socket.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                if (n <= 0)
                {
                    break;
                }

                var type = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
                var seq = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(4));
                if (type == EvtExit)
                {
                    _onExit((int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(8)), BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(12)));
                }
                else if (_pending.TryGetValue(seq, out var pending))
                {
                    var message = buffer.AsSpan(0, n).ToArray();
                    pending.Inline?.Invoke(message);
                    pending.Reply.TrySetResult(message);
                }
            }
        }
        catch (Exception) when (_disposing)
        {
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _closed.TrySetResult();
        foreach (var pending in _pending.Values)
        {
            pending.Reply.TrySetException(new IOException("the sandbox's init is gone"));
        }
    }

    private static void WriteString(MemoryStream stream, string value)
    {
        if (value.Contains('\0'))
        {
            throw new Core.AirlockException("invalid_argument", 400, "strings may not contain NUL bytes");
        }

        stream.Write(Encoding.UTF8.GetBytes(value));
        stream.WriteByte(0);
    }

    private static void ThrowIfError(int err, string what)
    {
        if (err != 0)
        {
            throw new IOException($"{what}: {StrError(err)}");
        }
    }

    public bool IsDisposing => _disposing;

    public ValueTask DisposeAsync()
    {
        _disposing = true;
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
