using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Airlock.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

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
            throw TooLarge();
        }

        // Kestrel's own limit is off (files stream through at any size): put it back for this request
        // while nothing has been read, so a chunked body stops at the limit in the server too.
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = MaxBytes + 1;
        }

        // Copy at most MaxBytes + 1: one byte more than allowed is enough to refuse, whatever the body's length.
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, MaxBytes + 1 - buffer.Length)), cancellationToken).ConfigureAwait(false)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > MaxBytes)
            {
                throw TooLarge();
            }
        }

        if (buffer.Length == 0)
        {
            return null;
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

    private static AirlockException TooLarge() => new("payload_too_large", 413, "the JSON body exceeds 1 MiB");
}
