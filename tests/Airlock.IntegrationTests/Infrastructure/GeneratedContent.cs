using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;

namespace Airlock.IntegrationTests.Infrastructure;

/// <summary>Request content generated on the fly (never held in memory) and hashed as it is sent.</summary>
public sealed class GeneratedContent : HttpContent
{
    private readonly long _size;

    public GeneratedContent(long size)
    {
        _size = size;
        Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
    }

    public byte[]? Sha256 { get; private set; }

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(42);
        var buffer = new byte[1 << 20];
        for (long sent = 0; sent < _size;)
        {
            var n = (int)Math.Min(buffer.Length, _size - sent);
            random.NextBytes(buffer.AsSpan(0, n));
            hash.AppendData(buffer, 0, n);
            await stream.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
            sent += n;
        }

        Sha256 = hash.GetHashAndReset();
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override bool TryComputeLength(out long length)
    {
        length = _size;
        return true;
    }
}
