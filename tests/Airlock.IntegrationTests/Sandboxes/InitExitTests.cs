using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Sandboxes;

/// <summary>
/// A sandbox's init dies while the server runs (OOM killer, an operator's kill -9): the server sees
/// its control socket close, ends every process it was running as killed, and removes the sandbox
/// with its state dir and cgroups. The path is the reactor reading end-of-stream on that socket.
/// </summary>
public sealed class InitExitTests
{
    [Fact]
    public async Task InitKilled_WhileCommandRuns_CommandEndsKilledAndSandboxIsRemoved()
    {
        using var cts = Api.NewTimeout();
        var ct = cts.Token;
        await using var server = await AirlockServer.StartAsync(cancellationToken: ct);
        var id = await server.Client.CreateSandboxAsync(new { timeoutSeconds = 600 });
        var state = Path.Combine(server.DataDir, "sandboxes", id);
        var initPid = int.Parse(File.ReadAllText(Path.Combine(state, "init.pid")).Split(' ')[0]);
        var cgroups = CgroupDirs(id).ToList();
        Assert.NotEmpty(cgroups);

        var exec = server.Client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd = "sleep 60" }, ct);
        await WaitUntilAsync(() => ChildrenOf(initPid).Any(), ct, "the command never started");

        Assert.Equal(0, Signal(initPid, 9));

        // The command ends at once (not after 60 s), as killed.
        var response = await exec.WaitAsync(TimeSpan.FromSeconds(20), ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var result = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct)).RootElement;
        Assert.Equal(9, result.GetProperty("signal").GetInt32());

        // The sandbox is gone from the API and from the host.
        await WaitUntilAsync(
            async () => (await server.Client.GetAsync($"/v1/sandboxes/{id}", ct)).StatusCode == HttpStatusCode.NotFound,
            ct,
            "the sandbox is still listed after its init died");
        await WaitUntilAsync(() => !Directory.Exists(state) && !cgroups.Any(Directory.Exists), ct, $"left behind: {state} or {string.Join(", ", cgroups)}");
    }

    private static IEnumerable<string> CgroupDirs(string id) =>
        new[] { "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified", "/sys/fs/cgroup" }
            .Where(Directory.Exists)
            .SelectMany(h => Directory.EnumerateDirectories(h, "airlock*"))
            .Select(parent => Path.Combine(parent, id))
            .Where(Directory.Exists)
            .Distinct();

    private static IEnumerable<int> ChildrenOf(int pid)
    {
        var path = $"/proc/{pid}/task/{pid}/children";
        return File.Exists(path)
            ? File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)
            : [];
    }

    private static Task WaitUntilAsync(Func<bool> condition, CancellationToken ct, string failure) =>
        WaitUntilAsync(() => Task.FromResult(condition()), ct, failure);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, CancellationToken ct, string failure)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(50, ct);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Signal(int pid, int signal);
}
