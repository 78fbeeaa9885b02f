using System.Buffers.Binary;
using System.Text;
using Google.Protobuf;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// The response side of a Connect server stream (JSON codec): each message is one envelope
/// <c>[0x00][length BE32][json]</c>, flushed at once so the SDK sees output as it happens;
/// a keepalive message goes out after the client's <c>Keepalive-Ping-Interval</c> of silence.
/// </summary>
internal sealed class ConnectStream<TMessage>(HttpResponse response, TimeProvider time) : IAsyncDisposable
    where TMessage : IMessage<TMessage>
{
    private const byte EndStreamFlag = 0x02;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private long _lastWrite = time.GetTimestamp();
    private Task _keepalives = Task.CompletedTask;
    private CancellationTokenSource? _keepaliveToken;

    public async ValueTask WriteAsync(TMessage message, CancellationToken cancellationToken)
    {
        var json = Encoding.UTF8.GetBytes(ConnectCodec.Formatter.Format(message));
        await WriteEnvelopeAsync(0, json, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends <paramref name="keepalive"/> whenever nothing was written for <paramref name="interval"/>.</summary>
    public void StartKeepalives(TimeSpan interval, Func<TMessage> keepalive, CancellationToken cancellationToken)
    {
        _keepaliveToken = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token, cancellationToken);
        var token = _keepaliveToken.Token;
        _keepalives = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var idle = time.GetElapsedTime(Interlocked.Read(ref _lastWrite));
                    if (idle >= interval)
                    {
                        await WriteAsync(keepalive(), token).ConfigureAwait(false);
                        continue;
                    }

                    await Task.Delay(interval - idle, time, token).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
            {
                // The stream ended or the client left; the main loop reports what matters.
            }
        }, CancellationToken.None);
    }

    /// <summary>The end-stream envelope: <c>{}</c>, or <c>{"error":{"code","message"}}</c>. Required, or connect-web throws.</summary>
    public async ValueTask EndAsync(ConnectError? error, CancellationToken cancellationToken)
    {
        await StopKeepalivesAsync().ConfigureAwait(false);
        using var buffer = new MemoryStream();
        using (var writer = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            if (error is { } e)
            {
                writer.WriteStartObject("error");
                writer.WriteString("code", e.Code);
                writer.WriteString("message", e.Message);
                writer.WriteEndObject();
            }

            writer.WriteEndObject();
        }

        await WriteEnvelopeAsync(EndStreamFlag, buffer.ToArray(), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopKeepalivesAsync().ConfigureAwait(false);
        _keepaliveToken?.Dispose();
        _stop.Dispose();
        _writeLock.Dispose();
    }

    private async Task StopKeepalivesAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _keepalives.ConfigureAwait(false);
    }

    private async ValueTask WriteEnvelopeAsync(byte flags, byte[] payload, CancellationToken cancellationToken)
    {
        var header = new byte[5];
        header[0] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(1), (uint)payload.Length);
        // One writer at a time: the keepalive task and the main loop share the body.
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await response.Body.WriteAsync(header, cancellationToken).ConfigureAwait(false);
            await response.Body.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
            await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
            Interlocked.Exchange(ref _lastWrite, time.GetTimestamp());
        }
        finally
        {
            _writeLock.Release();
        }
    }
}
