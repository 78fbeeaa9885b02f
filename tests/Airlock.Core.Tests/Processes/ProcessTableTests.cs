using Airlock.Core.Processes;
using Airlock.Core.Runtime;

namespace Airlock.Core.Tests.Processes;

public sealed class ProcessTableTests
{
    private sealed class FakeHandle(int pid) : IProcessHandle
    {
        public int Pid { get; } = pid;

        public ValueTask WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public void CloseStdin()
        {
        }

        public ValueTask SignalAsync(int signal, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public void Resize(PtySize size)
        {
        }
    }

    private static SandboxProcess Started(int pid, string? tag, DateTimeOffset at)
    {
        var process = new SandboxProcess(new ProcessStartOptions { Cmd = "x", Tag = tag }, at, 1024);
        process.Attach(new FakeHandle(pid), TimeProvider.System);
        return process;
    }

    [Fact]
    public void Find_ByTag_PrefersNewest()
    {
        var table = new ProcessTable(10);
        table.Add(Started(5, "web", DateTimeOffset.UnixEpoch));
        table.Add(Started(9, "web", DateTimeOffset.UnixEpoch.AddSeconds(1)));
        Assert.Equal(9, table.Find(null, "web")!.Pid);
        Assert.Equal(5, table.Find(5, null)!.Pid);
        Assert.Null(table.Find(null, "nope"));
    }

    [Fact]
    public void OnFinished_BeyondLimit_ForgetsOldest()
    {
        var table = new ProcessTable(2);
        var processes = Enumerable.Range(1, 4).Select(i => Started(i, null, DateTimeOffset.UnixEpoch.AddSeconds(i))).ToList();
        foreach (var p in processes)
        {
            table.Add(p);
            ((IProcessSink)p).OnExit(new ExitStatus(0, 0));
            table.OnFinished(p);
        }

        Assert.Null(table.Find(1, null));
        Assert.Null(table.Find(2, null));
        Assert.NotNull(table.Find(3, null));
        Assert.NotNull(table.Find(4, null));
    }

    [Fact]
    public void OnFinished_PidReused_KeepsTheNewProcess()
    {
        var table = new ProcessTable(0);
        var old = Started(7, null, DateTimeOffset.UnixEpoch);
        table.Add(old);
        var reused = Started(7, null, DateTimeOffset.UnixEpoch.AddSeconds(1));
        table.Add(reused);
        table.OnFinished(old);
        Assert.Same(reused, table.Find(7, null));
    }
}
