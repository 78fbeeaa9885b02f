using System.Globalization;
using System.Net;
using System.Text;
using Airlock.Core;

namespace Airlock.Server.E2b.ControlPlane;

/// <summary>
/// The query of <c>GET /v2/sandboxes</c> (spec §1.3): the triple-encoded metadata filter, states,
/// order, <c>startedAfter</c>, template, <c>limit</c> and the opaque <c>nextToken</c> cursor.
/// </summary>
internal static class ListQuery
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 100;
    private const string Separator = "__";

    /// <summary>
    /// Decodes the <c>metadata</c> filter as upstream's <c>parseFilters</c> does: unescape the whole
    /// (already framework-decoded) value, split on <c>&amp;</c> and <c>=</c>, unescape each part.
    /// Query-unescaping (<c>+</c> is a space), not <c>Uri.UnescapeDataString</c>: Python's
    /// <c>urlencode</c> writes spaces as <c>+</c> and upstream's Go <c>QueryUnescape</c> reads them so.
    /// </summary>
    public static Dictionary<string, string> ParseMetadata(string? value)
    {
        var filter = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(value))
        {
            return filter;
        }

        foreach (var pair in WebUtility.UrlDecode(value).Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=', 2);
            if (parts.Length != 2)
            {
                throw AirlockException.Invalid($"invalid metadata filter '{pair}': expected key=value");
            }

            filter[WebUtility.UrlDecode(parts[0])] = WebUtility.UrlDecode(parts[1]);
        }

        return filter;
    }

    /// <summary>States asked for: comma-joined and/or repeated; both when absent.</summary>
    public static (bool Running, bool Paused) ParseStates(IEnumerable<string?> values)
    {
        var states = values.SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
        if (states.Count == 0)
        {
            return (true, true);
        }

        foreach (var state in states)
        {
            if (state is not ("running" or "paused"))
            {
                throw AirlockException.Invalid($"invalid state '{state}': expected running or paused");
            }
        }

        return (states.Contains("running"), states.Contains("paused"));
    }

    public static int ParseLimit(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return DefaultLimit;
        }

        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var limit) || limit < 1 || limit > MaxLimit)
        {
            throw AirlockException.Invalid($"limit must be an integer between 1 and {MaxLimit}");
        }

        return limit;
    }

    /// <summary>true for ascending; E2B's default is newest first.</summary>
    public static bool ParseAscending(string? value) => value switch
    {
        null or "" or "desc" => false,
        "asc" => true,
        _ => throw AirlockException.Invalid("order must be asc or desc"),
    };

    public static DateTimeOffset? ParseTime(string? value, string name)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        return DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t
            : throw AirlockException.Invalid($"{name} must be an RFC3339 time");
    }

    /// <summary>The cursor upstream uses: base64url of <c>&lt;RFC3339Nano&gt;__&lt;sandboxID&gt;</c>, naming the last item returned.</summary>
    public static string EncodeCursor(DateTimeOffset startedAt, string id) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(startedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture) + Separator + id))
            .TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static (DateTimeOffset StartedAt, string Id) DecodeCursor(string token)
    {
        try
        {
            var b64 = token.Replace('-', '+').Replace('_', '/');
            b64 = b64.PadRight(b64.Length + ((4 - (b64.Length % 4)) % 4), '=');
            var parts = Encoding.UTF8.GetString(Convert.FromBase64String(b64)).Split(Separator);
            if (parts.Length >= 2 && DateTimeOffset.TryParse(parts[0], CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal, out var t) && parts[1].Length > 0)
            {
                return (t, parts[1]);
            }
        }
        catch (FormatException)
        {
            // Falls through to the error below.
        }

        throw AirlockException.Invalid("invalid nextToken");
    }
}
