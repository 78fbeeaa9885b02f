using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Security;

/// <summary>
/// Helpers for the attack tests: run a script inside a sandbox as <c>user</c>, as <c>root</c> (the
/// API's root, with the sandbox capability set) or as <c>sudo</c> (user escalating inside), and
/// plant secrets on the host that nothing inside may reach.
/// </summary>
internal static class Attack
{
    /// <summary>The identities every in-sandbox attack is tried as.</summary>
    public static TheoryData<string> Identities => new() { "user", "root", "sudo" };

    /// <summary>Python preamble: <c>sc(name, nr, *args)</c> prints <c>name=OK</c> or <c>name=EPERM</c>.</summary>
    public const string PySyscall = """
        import ctypes, errno, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        L = ctypes.c_long
        def sc(name, nr, *args):
            a = [L(x) if isinstance(x, int) else x for x in args]
            ctypes.set_errno(0)
            r = libc.syscall(L(nr), *a)
            e = ctypes.get_errno()
            print(f"{name}={'OK' if r >= 0 else errno.errorcode.get(e, str(e))}", flush=True)
            return r

        """;

    /// <summary>Runs a shell script (bash, from stdin) as <paramref name="who"/>.</summary>
    public static Task<ExecResult> ShAsync(this HttpClient client, string id, string who, string script, int timeoutSeconds = 30) =>
        who switch
        {
            "sudo" => client.ExecAsync(id, "sudo -n bash -s", timeoutSeconds: timeoutSeconds, stdin: script),
            "root" => client.ExecAsync(id, "bash -s", user: "root", timeoutSeconds: timeoutSeconds, stdin: script),
            _ => client.ExecAsync(id, "bash -s", user: who, timeoutSeconds: timeoutSeconds, stdin: script),
        };

    /// <summary>Runs a Python script (from stdin) as <paramref name="who"/>.</summary>
    public static Task<ExecResult> PyAsync(this HttpClient client, string id, string who, string script, int timeoutSeconds = 30) =>
        who switch
        {
            "sudo" => client.ExecAsync(id, "sudo -n python3 -", timeoutSeconds: timeoutSeconds, stdin: script),
            "root" => client.ExecAsync(id, "python3 -", user: "root", timeoutSeconds: timeoutSeconds, stdin: script),
            _ => client.ExecAsync(id, "python3 -", user: who, timeoutSeconds: timeoutSeconds, stdin: script),
        };

    /// <summary>Lines <c>name=RESULT</c> of a probe script (the last one wins).</summary>
    public static Probe Results(ExecResult result) => new(result);

    /// <summary>Exec returning the whole JSON answer (signal, durationMs), for the resource tests.</summary>
    public static async Task<JsonElement> ExecJsonAsync(this HttpClient client, string id, string cmd, int timeoutSeconds, string? user = null)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds + 30));
        var response = await client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd, user, timeoutSeconds }, cts.Token);
        var text = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(response.IsSuccessStatusCode, $"exec: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>A neighbour must answer <c>echo ok</c> quickly whatever the attacker does.</summary>
    public static async Task AssertNeighbourHealthyAsync(this HttpClient client, string neighbour, double maxSeconds = 5)
    {
        var sw = Stopwatch.StartNew();
        var result = await client.ExecAsync(neighbour, "echo ok", timeoutSeconds: 30);
        sw.Stop();
        Assert.Equal("ok\n", result.Stdout);
        Assert.True(sw.Elapsed.TotalSeconds < maxSeconds, $"neighbour took {sw.Elapsed.TotalSeconds:F1}s to echo");
    }
}

/// <summary>A secret file on the host, in the host's /tmp; deleted on dispose.</summary>
internal sealed class HostMarker : IDisposable
{
    public HostMarker(string prefix = "airlock-secret")
    {
        var tag = Guid.NewGuid().ToString("N");
        Path = $"/tmp/{prefix}-{tag}";
        Content = $"host-secret-{tag}";
        File.WriteAllText(Path, Content);
    }

    public string Path { get; }

    public string Content { get; }

    public string Name => System.IO.Path.GetFileName(Path);

    public void Dispose() => File.Delete(Path);
}

/// <summary>The <c>name=RESULT</c> lines of a probe; a missing name fails with the whole output.</summary>
internal sealed class Probe
{
    private readonly Dictionary<string, string> _values = [];

    public Probe(ExecResult result)
    {
        Result = result;
        foreach (var line in result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Split('=', 2) is [var key, var value])
            {
                _values[key] = value;
            }
        }
    }

    public ExecResult Result { get; }

    public int Count => _values.Count;

    public IEnumerable<KeyValuePair<string, string>> All => _values;

    public string this[string key] =>
        _values.TryGetValue(key, out var value) ? value : throw new Xunit.Sdk.XunitException($"no '{key}' in probe output (exit {Result.ExitCode}):\n{Result.Stdout}\n--stderr--\n{Result.Stderr}");

    public bool TryGetValue(string key, out string value) => _values.TryGetValue(key, out value!);

    public string? GetValueOrDefault(string key) => _values.GetValueOrDefault(key);

    public override string ToString() => $"exit {Result.ExitCode}:\n{Result.Stdout}\n--stderr--\n{Result.Stderr}";
}
