namespace Airlock.Runtime.Linux.Network;

/// <summary>
/// What a sandbox's DNS forwarder has put into its nft sets and until when. An answer whose elements
/// all have more than <see cref="RefreshMargin"/> left needs no nft run: a resolver asking the same
/// name again and again costs a dictionary lookup, not a process under the server-wide nft lock.
/// </summary>
internal sealed class FollowedAddresses(TimeProvider time)
{
    /// <summary>An element with less than this left is written again (with its new timeout).</summary>
    public static readonly TimeSpan RefreshMargin = TimeSpan.FromSeconds(30);

    /// <summary>Beyond this many entries the expired ones are dropped (names are the sandbox's to choose).</summary>
    private const int Prune = 4096;

    private readonly Dictionary<(string Set, string Value), DateTimeOffset> _expiry = [];

    /// <summary>One element of a set: <c>Value</c> as nft writes it (<c>1.2.3.4</c>, <c>1.2.3.4 . 443</c>).</summary>
    internal readonly record struct Element(string Set, string Value, TimeSpan Timeout);

    /// <summary>The elements that must be written: not in the set as far as we know, or about to leave it.</summary>
    public List<Element> Due(IEnumerable<Element> elements)
    {
        var now = time.GetUtcNow();
        lock (_expiry)
        {
            return elements.Distinct()
                .Where(e => !_expiry.TryGetValue((e.Set, e.Value), out var expires) || expires - now <= RefreshMargin)
                .ToList();
        }
    }

    /// <summary>Records elements as written now (after their transaction succeeded).</summary>
    public void Written(IEnumerable<Element> elements)
    {
        var now = time.GetUtcNow();
        lock (_expiry)
        {
            if (_expiry.Count >= Prune)
            {
                foreach (var key in _expiry.Where(kv => kv.Value <= now).Select(kv => kv.Key).ToList())
                {
                    _expiry.Remove(key);
                }

                if (_expiry.Count >= Prune)
                {
                    _expiry.Clear(); // Forgetting costs only nft runs, never a wrong verdict.
                }
            }

            foreach (var e in elements)
            {
                var expires = now + e.Timeout;
                if (!_expiry.TryGetValue((e.Set, e.Value), out var known) || known < expires)
                {
                    _expiry[(e.Set, e.Value)] = expires;
                }
            }
        }
    }

    /// <summary>The sets were flushed (the rules changed): nothing is known to be in them.</summary>
    public void Clear()
    {
        lock (_expiry)
        {
            _expiry.Clear();
        }
    }
}
