using Airlock.Core.Processes;
using Airlock.Core.Runtime;
using BenchmarkDotNet.Attributes;

namespace Airlock.MicroBench;

/// <summary>
/// SandboxProcess.OnOutput (what the epoll reactor calls per pipe read) with 0, 1 and 4 readers
/// attached through ReadEventsAsync, as exec, SSE, Connect and the PTY socket read it. One
/// operation is one chunk delivered to every reader: an invocation writes a batch of chunks, then
/// waits until every reader has seen all of them. Window: <c>Small</c> retains one batch (64 chunks,
/// just enough that no reader skips anything; close to a process with little output); <c>Full</c> is
/// the production 16 MiB window, already full, so every chunk trims it and every reader wake-up
/// scans it, as for any long-running process that has written more than 16 MiB.
/// </summary>
[MemoryDiagnoser]
public class FanOutBenchmarks
{
    private const int Batch = 64;
    private const long WindowBytes = 16L * 1024 * 1024; // ProcessService's default window.

    private SandboxProcess _process = null!;
    private IProcessSink _sink = null!;
    private byte[] _chunk = [];
    private Reader[] _readers = [];
    private CancellationTokenSource _stop = null!;
    private Task[] _readerTasks = [];

    [Params(4096, 65536)]
    public int ChunkBytes { get; set; }

    [Params(0, 1, 4)]
    public int Readers { get; set; }

    [Params("Small", "Full")]
    public string Window { get; set; } = "Small";

    [GlobalSetup]
    public void Setup()
    {
        _chunk = new byte[ChunkBytes];
        Random.Shared.NextBytes(_chunk);
        var window = Window == "Full" ? WindowBytes : (long)Batch * ChunkBytes;
        _process = new SandboxProcess(new ProcessStartOptions { Cmd = "/bin/true" }, DateTimeOffset.UtcNow, window);
        _sink = _process;
        if (Window == "Full")
        {
            for (long written = 0; written < WindowBytes; written += ChunkBytes)
            {
                _sink.OnOutput(OutputKind.Stdout, _chunk);
            }
        }

        _stop = new CancellationTokenSource();
        _readers = [.. Enumerable.Range(0, Readers).Select(_ => new Reader())];
        _readerTasks = [.. _readers.Select(r => Task.Run(() => r.RunAsync(_process, _stop.Token)))];
        // Let every reader attach (it has seen Start) before measuring.
        foreach (var reader in _readers)
        {
            reader.Attached.Task.GetAwaiter().GetResult();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop.Cancel();
        try
        {
            Task.WaitAll(_readerTasks);
        }
        catch (AggregateException)
        {
        }

        _stop.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public async Task OnOutput()
    {
        var done = new Task[_readers.Length];
        for (var i = 0; i < _readers.Length; i++)
        {
            done[i] = _readers[i].Expect((long)Batch * ChunkBytes);
        }

        for (var i = 0; i < Batch; i++)
        {
            _sink.OnOutput(OutputKind.Stdout, _chunk);
        }

        await Task.WhenAll(done);
    }

    private sealed class Reader
    {
        private long _seen;
        private long _target = long.MaxValue;
        private TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Attached { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Expect(long bytes)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _done, done);
            Volatile.Write(ref _target, Volatile.Read(ref _seen) + bytes);
            return done.Task;
        }

        public async Task RunAsync(SandboxProcess process, CancellationToken cancellationToken)
        {
            try
            {
                await foreach (var e in process.ReadEventsAsync(replay: false, cancellationToken))
                {
                    if (e is ProcessEvent.Start)
                    {
                        Attached.TrySetResult();
                    }
                    else if (e is ProcessEvent.Data data)
                    {
                        var seen = Volatile.Read(ref _seen) + data.Bytes.Length;
                        Volatile.Write(ref _seen, seen);
                        if (seen >= Volatile.Read(ref _target))
                        {
                            Volatile.Read(ref _done).TrySetResult();
                        }
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}
