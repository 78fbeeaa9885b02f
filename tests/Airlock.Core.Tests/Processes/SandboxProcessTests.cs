using System.Text;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;

namespace Airlock.Core.Tests.Processes;

public sealed class SandboxProcessTests
{
    private static SandboxProcess NewProcess(long window = 1 << 20) =>
        new(new ProcessStartOptions { Cmd = "x" }, DateTimeOffset.UnixEpoch, window);

    private static async Task<List<ProcessEvent>> ReadAllAsync(SandboxProcess process, bool replay = true)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var events = new List<ProcessEvent>();
        await foreach (var e in process.ReadEventsAsync(replay, cts.Token))
        {
            events.Add(e);
        }

        return events;
    }

    private static string Text(IEnumerable<ProcessEvent> events, OutputKind kind) =>
        string.Concat(events.OfType<ProcessEvent.Data>().Where(d => d.Kind == kind).Select(d => Encoding.UTF8.GetString(d.Bytes.Span)));

    [Fact]
    public async Task ReadEvents_AfterExit_ReplaysStartOutputEnd()
    {
        var process = NewProcess();
        IProcessSink sink = process;
        sink.OnOutput(OutputKind.Stdout, "a"u8);
        sink.OnOutput(OutputKind.Stderr, "b"u8);
        sink.OnExit(new ExitStatus(3, 0));

        var events = await ReadAllAsync(process);

        Assert.IsType<ProcessEvent.Start>(events[0]);
        Assert.Equal("a", Text(events, OutputKind.Stdout));
        Assert.Equal("b", Text(events, OutputKind.Stderr));
        var end = Assert.IsType<ProcessEvent.End>(events[^1]);
        Assert.Equal(3, end.Status.ExitCode);
        Assert.Equal("exit status 3", end.Error);
    }

    [Fact]
    public async Task ReadEvents_LiveReaders_EachGetEverythingInOrder()
    {
        var process = NewProcess();
        IProcessSink sink = process;
        var first = ReadAllAsync(process);
        var second = ReadAllAsync(process);
        for (var i = 0; i < 100; i++)
        {
            sink.OnOutput(OutputKind.Stdout, Encoding.UTF8.GetBytes($"{i},"));
            await Task.Yield();
        }

        sink.OnExit(new ExitStatus(0, 0));
        var expected = string.Concat(Enumerable.Range(0, 100).Select(i => $"{i},"));
        Assert.Equal(expected, Text(await first, OutputKind.Stdout));
        Assert.Equal(expected, Text(await second, OutputKind.Stdout));
        Assert.Null(((ProcessEvent.End)(await first)[^1]).Error);
    }

    [Fact]
    public async Task OnOutput_BeyondWindow_DropsOldestKeepsNewest()
    {
        var process = NewProcess(window: 10);
        IProcessSink sink = process;
        sink.OnOutput(OutputKind.Stdout, "0123456789"u8);
        sink.OnOutput(OutputKind.Stdout, "abcdef"u8);
        sink.OnExit(new ExitStatus(0, 0));

        Assert.Equal("abcdef", Text(await ReadAllAsync(process), OutputKind.Stdout));
    }

    [Fact]
    public async Task ReadEvents_WithoutReplay_StartsAtNow()
    {
        var process = NewProcess();
        IProcessSink sink = process;
        sink.OnOutput(OutputKind.Stdout, "old"u8);
        var reader = ReadAllAsync(process, replay: false);
        await Task.Delay(50, TestContext.Current.CancellationToken);
        sink.OnOutput(OutputKind.Stdout, "new"u8);
        sink.OnExit(new ExitStatus(0, 0));
        Assert.Equal("new", Text(await reader, OutputKind.Stdout));
    }

    [Fact]
    public async Task ReadEvents_Cancelled_StopsWithoutEnd()
    {
        var process = NewProcess();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        var events = new List<ProcessEvent>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var e in process.ReadEventsAsync(true, cts.Token))
            {
                events.Add(e);
            }
        });
        Assert.Single(events);
        Assert.False(process.HasExited);
    }

    [Theory]
    [InlineData(0, 0, 0, true, "exit status 0")]
    [InlineData(3 << 8, 3, 0, true, "exit status 3")]
    [InlineData(9, -1, 9, false, "signal: killed")]
    [InlineData(15, -1, 15, false, "signal: terminated")]
    public void ExitStatus_FromWaitStatus_DecodesLikeGo(int raw, int code, int signal, bool exited, string text)
    {
        var status = ExitStatus.FromWaitStatus(raw);
        Assert.Equal(code, status.ExitCode);
        Assert.Equal(signal, status.Signal);
        Assert.Equal(exited, status.Exited);
        Assert.Equal(text, status.Describe());
    }
}
