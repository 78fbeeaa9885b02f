using System.Collections.Concurrent;

namespace Airlock.Core.Tenancy;

/// <summary>
/// Requests per minute per key (or per console user), as a token bucket holding up to a minute's
/// worth. Per process: with several servers behind a balancer each allows the full rate
/// (docs/architecture.md, "Tenancy").
/// </summary>
internal sealed class RateLimiter(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);

    /// <summary>Null when allowed (or <paramref name="requestsPerMinute"/> is 0: no limit), else the whole seconds to wait (at least 1).</summary>
    public int? TryAcquire(string key, int requestsPerMinute)
    {
        if (requestsPerMinute <= 0)
        {
            // 0 (or no limit in the plan) means unlimited.
            return null;
        }

        var bucket = _buckets.GetOrAdd(key, _ => new Bucket(requestsPerMinute, time.GetTimestamp()));
        lock (bucket)
        {
            var now = time.GetTimestamp();
            var perSecond = requestsPerMinute / 60.0;
            bucket.Tokens = Math.Min(requestsPerMinute, bucket.Tokens + (time.GetElapsedTime(bucket.Updated, now).TotalSeconds * perSecond));
            bucket.Updated = now;
            if (bucket.Tokens >= 1)
            {
                bucket.Tokens -= 1;
                return null;
            }

            return Math.Max(1, (int)Math.Ceiling((1 - bucket.Tokens) / perSecond));
        }
    }

    private sealed class Bucket(double tokens, long updated)
    {
        public double Tokens { get; set; } = tokens;

        public long Updated { get; set; } = updated;
    }
}
