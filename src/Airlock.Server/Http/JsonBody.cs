using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Airlock.Core;
using Microsoft.AspNetCore.Http;

namespace Airlock.Server.Http;

/// <summary>Reads an optional JSON body: empty means "all defaults"; malformed JSON is a 400 with a code.</summary>
internal static class JsonBody
{
    private const int MaxBytes = 1 << 20;

    public static async Task<T?> ReadAsync<T>(HttpRequest request, JsonTypeInfo<T> type, CancellationToken cancellationToken)
        where T : class
    {
        if (request.ContentLength is 0)
        {
            return null;
        }

        if (request.ContentLength > MaxBytes)
        {
            throw new AirlockException("payload_too_large", 413, "the JSON body exceeds 1 MiB");
        }

        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
        if (buffer.Length == 0)
        {
            return null;
        }

        if (buffer.Length > MaxBytes)
        {
            throw new AirlockException("payload_too_large", 413, "the JSON body exceeds 1 MiB");
        }

        try
        {
            return JsonSerializer.Deserialize(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), type);
        }
        catch (JsonException ex)
        {
            throw new AirlockException("invalid_json", 400, $"the request body is not valid JSON for this operation: {ex.Message}");
        }
    }

    public static async Task<T> RequireAsync<T>(HttpRequest request, JsonTypeInfo<T> type, CancellationToken cancellationToken)
        where T : class =>
        await ReadAsync(request, type, cancellationToken).ConfigureAwait(false) ?? throw AirlockException.Invalid("a JSON body is required");
}
