using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;

namespace Airlock.Bench;

/// <summary>The few /v1 calls the benchmarks make, over one keep-alive connection pool.</summary>
internal sealed class Api : IDisposable
{
    private readonly HttpClient _http;
    private readonly HashSet<string> _created = [];

    public Api(Uri baseAddress, string key)
    {
        var handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = 256,
            UseProxy = false,
            AutomaticDecompression = DecompressionMethods.None,
        };
        _http = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(5) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    public HttpClient Http => _http;

    public IReadOnlyCollection<string> Created
    {
        get
        {
            lock (_created)
            {
                return [.. _created];
            }
        }
    }

    public async Task<HealthDto> HealthAsync(CancellationToken ct)
        => (await _http.GetFromJsonAsync("/health", BenchJson.Default.HealthDto, ct))!;

    public Task<string> CreateAsync(CancellationToken ct) => CreateAsync(new CreateBody(), ct);

    public async Task<string> CreateAsync(CreateBody body, CancellationToken ct)
    {
        using var response = await _http.PostAsJsonAsync("/v1/sandboxes", body, BenchJson.Default.CreateBody, ct);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            throw new InvalidOperationException($"create: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
        }

        var sandbox = (await response.Content.ReadFromJsonAsync(BenchJson.Default.SandboxDto, ct))!;
        lock (_created)
        {
            _created.Add(sandbox.Id);
        }

        return sandbox.Id;
    }

    /// <summary>Runs <paramref name="cmd"/> and checks that it exited 0.</summary>
    public async Task ExecAsync(string id, string cmd, CancellationToken ct)
    {
        using var response = await _http.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new ExecBody { Cmd = cmd }, BenchJson.Default.ExecBody, ct);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new InvalidOperationException($"exec: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
        }

        var result = (await response.Content.ReadFromJsonAsync(BenchJson.Default.ExecResultDto, ct))!;
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"exec '{cmd}' exited {result.ExitCode} ({result.Error})");
        }
    }

    public async Task DeleteAsync(string id, CancellationToken ct)
    {
        using var response = await _http.DeleteAsync($"/v1/sandboxes/{id}", ct);
        if (response.StatusCode is not (HttpStatusCode.NoContent or HttpStatusCode.NotFound))
        {
            throw new InvalidOperationException($"delete: {(int)response.StatusCode}");
        }

        lock (_created)
        {
            _created.Remove(id);
        }
    }

    /// <summary>Deletes every sandbox this run created and has not deleted yet.</summary>
    public async Task DeleteAllAsync(CancellationToken ct)
    {
        await Parallel.ForEachAsync(Created, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (id, c) =>
        {
            try
            {
                await DeleteAsync(id, c);
            }
            catch (Exception e) when (e is HttpRequestException or InvalidOperationException or TaskCanceledException)
            {
                Console.Error.WriteLine($"warning: could not delete {id}: {e.Message}");
            }
        });
    }

    public void Dispose() => _http.Dispose();
}
