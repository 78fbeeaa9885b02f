using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Airlock.IntegrationTests.Infrastructure;

/// <summary>
/// The real server binary as a child process on 127.0.0.1:0 with its own data directory, sharing
/// the machine's built templates (AIRLOCK_TEMPLATES). Killing it with SIGKILL is how crash tests crash it.
/// </summary>
public sealed partial class AirlockServer : IAsyncDisposable
{
    public const string ApiKey = "e2b_0123456789abcdef0123456789abcdef01234567";
    private static readonly TimeSpan s_startTimeout = TimeSpan.FromSeconds(60);
    private readonly Process _process;
    private readonly List<string> _log = [];

    private AirlockServer(Process process, string dataDir, bool ownsData)
    {
        _process = process;
        DataDir = dataDir;
        OwnsData = ownsData;
    }

    public string DataDir { get; }

    private bool OwnsData { get; }

    public Uri BaseAddress { get; private set; } = null!;

    public HttpClient Client { get; private set; } = null!;

    public int Pid => _process.Id;

    public string Log
    {
        get
        {
            lock (_log)
            {
                return string.Join('\n', _log);
            }
        }
    }

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string TemplatesDir => Environment.GetEnvironmentVariable("AIRLOCK_TEMPLATES") ?? Path.Combine(RepoRoot, "data", "templates");

    /// <summary>Starts a server; pass the data dir of a killed one to restart "the same" server.</summary>
    public static async Task<AirlockServer> StartAsync(string? dataDir = null, CancellationToken cancellationToken = default, IReadOnlyDictionary<string, string>? environment = null)
    {
        var owns = dataDir is null;
        // Short: the sandboxes' unix sockets live under it (108-byte sun_path).
        dataDir ??= Directory.CreateTempSubdirectory("al-").FullName;
        var dll = new[] { "Debug", "Release" }
            .Select(c => Path.Combine(RepoRoot, "src", "Airlock.Server", "bin", c, "net10.0", "airlock-server.dll"))
            .Where(File.Exists)
            .OrderByDescending(File.GetLastWriteTimeUtc)
            .First();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(dll);
        start.Environment["AIRLOCK_URLS"] = "http://127.0.0.1:0";
        start.Environment["AIRLOCK_DATA"] = dataDir;
        start.Environment["AIRLOCK_TEMPLATES"] = TemplatesDir;
        start.Environment["AIRLOCK_BOOTSTRAP_API_KEY"] = ApiKey;
        start.Environment["Logging__LogLevel__Default"] = "Information";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        if (await TestPostgres.DatabaseUrlAsync(dataDir, cancellationToken) is { } database)
        {
            start.Environment["AIRLOCK_DATABASE"] = database;
        }

        var process = Process.Start(start)!;
        var server = new AirlockServer(process, dataDir, owns);
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (server._log)
            {
                server._log.Add(line);
            }

            if (ListeningRegex().Match(line) is { Success: true } m)
            {
                listening.TrySetResult(new Uri(m.Groups[1].Value));
            }
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            server.BaseAddress = await listening.Task.WaitAsync(s_startTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            process.Kill(true);
            throw new InvalidOperationException($"server did not start:\n{server.Log}");
        }

        server.Client = server.CreateClient();
        await server.WaitForTemplateAsync("base", cancellationToken);
        return server;
    }

    public HttpClient CreateClient(string? key = ApiKey)
    {
        var client = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    private async Task WaitForTemplateAsync(string name, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow.AddMinutes(10);
        while (DateTime.UtcNow < deadline)
        {
            var health = await Client.GetFromJsonAsync<JsonElement>("/health", cancellationToken);
            foreach (var t in health.GetProperty("templates").EnumerateArray())
            {
                if (t.GetProperty("name").GetString() == name)
                {
                    switch (t.GetProperty("status").GetString())
                    {
                        case "ready":
                            return;
                        case "failed":
                            throw new InvalidOperationException($"template {name} failed: {t.GetProperty("error")}");
                    }
                }
            }

            await Task.Delay(500, cancellationToken);
        }

        throw new TimeoutException($"template {name} not ready");
    }

    /// <summary>SIGKILL, no chance to clean up: what a crash looks like.</summary>
    public async Task CrashAsync()
    {
        _process.Kill(entireProcessTree: false);
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>Kills every sandbox it knows (sandboxes outlive a server by design), then stops it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                var list = await Client.GetFromJsonAsync<JsonElement>("/v1/sandboxes", cts.Token);
                foreach (var sandbox in list.EnumerateArray())
                {
                    await Client.DeleteAsync($"/v1/sandboxes/{sandbox.GetProperty("id").GetString()}", cts.Token);
                }
            }
            catch (Exception)
            {
                // Best effort; the leak test checks the real thing.
            }

            // SIGTERM: a graceful stop (the warm pool destroys its unclaimed sandboxes); SIGKILL if it hangs.
            _ = Kill(_process.Id, 15);
            try
            {
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
            }
            catch (TimeoutException)
            {
                _process.Kill();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }

        Client?.Dispose();
        _process.Dispose();
        // Also for a restarted "same" server: rmdir leaves a parent that still holds a sandbox, and
        // a later server on this data dir makes it again.
        RemoveParentCgroups(DataDir);
        if (OwnsData)
        {
            await TestPostgres.DropAsync(DataDir);
            try
            {
                Directory.Delete(DataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// Each data dir has its own parent cgroup <c>airlock-&lt;hash&gt;</c> in every hierarchy (RuntimeOptions);
    /// a throwaway data dir's parent is removed with it, so test runs don't pile up empty cgroups.
    /// rmdir fails on a parent that still holds a sandbox, which leaves the evidence for the leak tests.
    /// </summary>
    private static void RemoveParentCgroups(string dataDir)
    {
        var sandboxes = Path.Combine(Path.GetFullPath(dataDir), "sandboxes");
        var name = "airlock-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(sandboxes)))[..8];
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup").Prepend("/sys/fs/cgroup"))
        {
            var parent = Path.Combine(hierarchy, name);
            try
            {
                if (Directory.Exists(parent))
                {
                    Directory.Delete(parent);
                }
            }
            catch (IOException)
            {
            }
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Airlock.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningRegex();
}
