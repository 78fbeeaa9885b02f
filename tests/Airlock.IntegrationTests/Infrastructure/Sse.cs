using System.Text.Json;

namespace Airlock.IntegrationTests.Infrastructure;

public sealed record SseEvent(string Name, JsonElement Data);

/// <summary>A minimal text/event-stream reader: named events with JSON data, comments skipped.</summary>
public static class Sse
{
    public static async Task<List<SseEvent>> ReadAllAsync(HttpResponseMessage response, CancellationToken cancellationToken, int max = int.MaxValue)
    {
        var events = new List<SseEvent>();
        await foreach (var e in ReadAsync(response, cancellationToken))
        {
            events.Add(e);
            if (events.Count >= max)
            {
                break;
            }
        }

        return events;
    }

    public static async IAsyncEnumerable<SseEvent> ReadAsync(HttpResponseMessage response, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(Api.Timeout);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        string? name = null;
        string? data = null;
        while (await reader.ReadLineAsync(cts.Token) is { } line)
        {
            if (line.Length == 0)
            {
                if (name is not null && data is not null)
                {
                    yield return new SseEvent(name, JsonDocument.Parse(data).RootElement.Clone());
                }

                name = data = null;
            }
            else if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                name = line[7..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                data = line[6..];
            }
        }
    }
}
