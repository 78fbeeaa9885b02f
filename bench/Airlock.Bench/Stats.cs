namespace Airlock.Bench;

/// <summary>A sample of measurements (milliseconds unless named) and its order statistics.</summary>
internal sealed class Sample
{
    private readonly double[] _sorted;

    public Sample(IEnumerable<double> values)
    {
        _sorted = [.. values.Order()];
    }

    public int Count => _sorted.Length;

    public double Median => Percentile(50);

    public double P95 => Percentile(95);

    public double P99 => Percentile(99);

    /// <summary>Nearest-rank percentile.</summary>
    public double Percentile(double p)
    {
        if (_sorted.Length == 0)
        {
            return double.NaN;
        }

        var rank = (int)Math.Ceiling(p / 100 * _sorted.Length);
        return _sorted[Math.Clamp(rank - 1, 0, _sorted.Length - 1)];
    }
}
