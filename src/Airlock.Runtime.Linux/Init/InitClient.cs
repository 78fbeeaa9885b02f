using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Airlock.Runtime.Linux.Reactor;
using static Airlock.Runtime.Linux.Interop.Libc;

namespace Airlock.Runtime.Linux.Init;

/// <summary>
/// The server's end of a sandbox init's control socket (docs/init-protocol.md): SEQPACKET, one
/// message per request, reply or event. Replies and events are read on the output reactor's thread
/// (so an EXIT finishes the process's streams there, without a thread-pool hop); sending is a raw
/// <c>sendmsg</c> on the caller's thread because .NET cannot attach fds (SCM_RIGHTS).
/// </summary>
internal sealed class InitClient : IAsyncDisposable, OutputReactor.IReadable
{
    public const uint OpSpawn = 1, OpSignal = 2, OpPing = 3, OpList = 4;
    public const uint RespAck = 100, RespSpawned = 101, RespList = 104, EvtExit = 200;
    public const uint FlagPty = 1, FlagRootCaps = 2, FlagNoNewPrivs = 4;

    private static readonly TimeSpan s_replyTimeout = TimeSpan.FromSeconds(30);

    private readonly Socket _socket;
    private readonly int _fd;
    private readonly OutputReactor _reactor;
    private readonly ConcurrentDictionary<uint, Pending> _pending = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<int, int> _onExit;
    private int _seq;
    private int _disposing;

    private sealed record Pending(TaskCompletionSource<byte[]> Reply, Action<byte[]>? Inline);

    private InitClient(Socket socket, OutputReactor reactor, Action<int, int> onExit)
    {
        _socket = socket;
        _fd = (int)socket.SafeHandle.DangerousGetHandle();
        _reactor = reactor;
        _onExit = onExit;
        reactor.Watch(_fd, this);
    }

    /// <summary>Completes when the init is gone (its end of the socket closed).</summary>
    public Task Closed => _closed.Task;

    /// <param name="onExit">
    /// Called with (pid, wait status) on the reactor thread, in order with replies: after the
    /// SPAWNED of that pid, before anything the init sent later.
    /// </param>
    public static InitClient Connect(string socketPath, OutputReactor reactor, Action<int, int> onExit)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        try
        {
            // A unix socket connect completes at once (or fails): no need for the async engine.
            // Non-blocking afterwards: the reactor reads until EAGAIN, and a full send buffer must
            // not block the sender for good (Send waits it out in slices).
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            socket.Blocking = false;
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new InitClient(socket, reactor, onExit);
    }

    public async Task PingAsync(CancellationToken cancellationToken = default)
    {
        var reply = await RequestAsync(OpPing, [], [], null, cancellationToken).ConfigureAwait(false);
        ThrowIfError(BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(8)), "ping");
    }

    /// <summary>
    /// Starts a process. <paramref name="onSpawned"/> runs on the reactor thread with (err, pid, step)
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
        if (r.Length < 16)
        {
            throw new IOException("the sandbox's init sent a short SPAWNED reply");
        }

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
            return await pending.Reply.Task.WaitAsync(s_replyTimeout, cancellationToken).ConfigureAwait(false);
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

            // The reference keeps the fd number ours while a concurrent dispose closes the socket.
            var added = false;
            try
            {
                _socket.SafeHandle.DangerousAddRef(ref added);
                for (var attempt = 0; ; attempt++)
                {
                    var n = sendmsg(_fd, &msg, MSG_NOSIGNAL);
                    if (n >= 0)
                    {
                        return;
                    }

                    var errno = Errno;
                    // The socket is non-blocking: wait out a full buffer briefly.
                    if ((errno == EAGAIN || errno == EINTR) && attempt < 1000)
                    {
                        Thread.Sleep(1);
                        continue;
                    }

                    throw new IOException($"sending to the sandbox's init failed: {StrError(errno)}");
                }
            }
            catch (ObjectDisposedException)
            {
                throw new IOException("the sandbox's init is gone");
            }
            finally
            {
                if (added)
                {
                    _socket.SafeHandle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>On the reactor thread: every message queued on the socket, in order. False once the init is gone.</summary>
    unsafe bool OutputReactor.IReadable.OnReadable(byte[] buffer)
    {
        fixed (byte* data = buffer)
        {
            while (true)
            {
                var n = recv(_fd, data, buffer.Length, MSG_DONTWAIT);
                if (n < 0)
                {
                    var errno = Errno;
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    if (errno == EAGAIN)
                    {
                        return true;
                    }
                }

                if (n < 8)
                {
                    // 0 = the init closed its end; an error (ECONNRESET) is the same for us.
                    OnClosed();
                    return false;
                }

                Dispatch(buffer.AsSpan(0, (int)n));
            }
        }
    }

    private void Dispatch(ReadOnlySpan<byte> message)
    {
        var type = BinaryPrimitives.ReadUInt32LittleEndian(message);
        var seq = BinaryPrimitives.ReadUInt32LittleEndian(message[4..]);
        if (type == EvtExit && message.Length >= 16)
        {
            _onExit((int)BinaryPrimitives.ReadUInt32LittleEndian(message[8..]), BinaryPrimitives.ReadInt32LittleEndian(message[12..]));
        }
        else if (_pending.TryGetValue(seq, out var pending))
        {
            var copy = message.ToArray();
            try
            {
                pending.Inline?.Invoke(copy);
                pending.Reply.TrySetResult(copy);
            }
            catch (Exception ex)
            {
                // A malformed reply fails its request, not the reactor.
                pending.Reply.TrySetException(new IOException("the sandbox's init sent a malformed reply", ex));
            }
        }
    }

    private void OnClosed()
    {
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

    /// <summary>Stops reading (on the reactor thread, so no read is in flight) and closes the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposing, 1) == 0)
        {
            _reactor.Unwatch(_fd, this, () =>
            {
                _socket.Dispose();
                OnClosed();
                _disposed.TrySetResult();
            });
        }

        await _disposed.Task.ConfigureAwait(false);
    }
}
