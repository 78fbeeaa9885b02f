using System.Collections.Concurrent;

namespace Airlock.Core.Tenancy;

/// <summary>
/// Requests per minute per key (or per console user, or per remote address for the anonymous
/// login routes), as a token bucket holding up to a minute's worth. Per process: with several servers behind a balancer each allows the full rate
/// (docs/architecture.md, "Tenancy").
/// </summary>
internal sealed class RateLimiter(TimeProvider time)
{
    // Buckets keyed by remote address can be made by anyone; past this many, full ones are dropped.
    private const int PruneAbove = 100_000;

    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private long _lastPrune;

    /// <summary>Null when allowed (or <paramref name="requestsPerMinute"/> is 0: no limit), else the whole seconds to wait (at least 1).</summary>
    public int? TryAcquire(string key, int requestsPerMinute)
    {
        if (requestsPerMinute <= 0)
        {
            // 0 (or no limit in the plan) means unlimited.
            return null;
        }

        if (_buckets.Count >= PruneAbove && !_buckets.ContainsKey(key))
        {
            Prune();
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

    /// <summary>Drops buckets idle for a minute: they have refilled, so a new one is the same.</summary>
    private void Prune()
    {
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref _lastPrune);
        // At most one scan per 10 s, however many new keys arrive while the table is full.
        if ((last != 0 && time.GetElapsedTime(last, now) < TimeSpan.FromSeconds(10)) || Interlocked.CompareExchange(ref _lastPrune, now, last) != last)
        {
            return;
        }

        foreach (var (key, bucket) in _buckets)
        {
            long updated;
            lock (bucket)
            {
                updated = bucket.Updated;
            }

            if (time.GetElapsedTime(updated, now) >= TimeSpan.FromMinutes(1))
            {
                // A request racing this one may still use the removed bucket once; it is full anyway.
                _buckets.TryRemove(key, out _);
            }
        }
    }

    private sealed class Bucket(double tokens, long updated)
    {
        public double Tokens { get; set; } = tokens;

        public long Updated { get; set; } = updated;
    }
}
