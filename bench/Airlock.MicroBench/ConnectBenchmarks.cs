using System.Text;
using Airlock.Protocol.Envd.Process;
using Airlock.Server.E2b.Envd;
using Airlock.Server.Http;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;

namespace Airlock.MicroBench;

/// <summary>
/// One output chunk going out to a client: the E2B Connect stream (protobuf JSON in a Connect
/// envelope, bytes as base64) against the /v1 SSE stream (UTF-8 decode, System.Text.Json source
/// generated). Both write through the real writer classes into a null body, so the figures are the
/// server's CPU and allocations per event, without the socket.
/// </summary>
[MemoryDiagnoser]
public class ConnectEncodeBenchmarks
{
    private ConnectStream<StartResponse> _connect = null!;
    private ServerSentEvents _sse = null!;
    private byte[] _chunk = [];
    private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();

    /// <summary>Bytes of process output in the event: one line, and one full pipe read.</summary>
    [Params(64, 4096)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        // Printable ASCII, as a shell's output mostly is.
        _chunk = new byte[Bytes];
        for (var i = 0; i < _chunk.Length; i++)
        {
            _chunk[i] = (byte)(i % 64 == 63 ? '\n' : 'a' + (i % 26));
        }

        var connectContext = new DefaultHttpContext();
        connectContext.Response.Body = Stream.Null;
        _connect = new ConnectStream<StartResponse>(connectContext.Response, TimeProvider.System);

        var sseContext = new DefaultHttpContext();
        sseContext.Response.Body = Stream.Null;
        _sse = ServerSentEvents.StartAsync(sseContext.Response, CancellationToken.None).GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup() => _connect.DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>ProcessRpc.ToWire for a Data event (copied: it is private) + ConnectStream.WriteAsync.</summary>
    [Benchmark(Baseline = true)]
    public ValueTask ConnectDataEvent()
    {
        var data = new ProcessEvent.Types.DataEvent { Stdout = ByteString.CopyFrom(_chunk) };
        var message = new StartResponse { Event = new ProcessEvent { Data = data } };
        return _connect.WriteAsync(message, CancellationToken.None);
    }

    /// <summary>ProcessEndpoints.StreamAsync for a Data event (decode copied: it is inline) + ServerSentEvents.SendAsync.</summary>
    [Benchmark]
    public Task SseDataEvent()
    {
        var chars = new char[_decoder.GetCharCount(_chunk, flush: false)];
        _decoder.GetChars(_chunk, chars, flush: false);
        return _sse.SendAsync("stdout", new SseData(new string(chars)), ApiJsonContext.Default.SseData, CancellationToken.None);
    }
}

/// <summary>
/// Decoding a start request: the E2B SDK's Connect StartRequest (protobuf JSON parser, as
/// ConnectCodec.Parse does it) against the /v1 exec body (System.Text.Json source generated).
/// </summary>
[MemoryDiagnoser]
public class ConnectDecodeBenchmarks
{
    // What the Python/JS SDK sends for `sandbox.commands.run("echo hello")`.
    private static readonly byte[] s_startRequest = Encoding.UTF8.GetBytes(
        """{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hello"],"envs":{"FOO":"bar"},"cwd":"/home/user"},"stdin":false}""");

    private static readonly byte[] s_execBody = Encoding.UTF8.GetBytes(
        """{"cmd":"echo hello","cwd":"/home/user","env":{"FOO":"bar"},"timeoutSeconds":60}""");

    [Benchmark(Baseline = true)]
    public StartRequest ConnectStartRequest() => ConnectCodec.Parse<StartRequest>(s_startRequest);

    [Benchmark]
    public object? StjExecBody() => System.Text.Json.JsonSerializer.Deserialize(s_execBody, ApiJsonContext.Default.ExecBody);
}
