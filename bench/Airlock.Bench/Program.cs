using System.Text.Json;

namespace Airlock.Bench;

/// <summary>
/// The lifecycle and load benchmarks of issue 5 against a running Airlock server (started by
/// bench.sh). Reads the floors and peers that bench.sh timed in the same run, measures Airlock
/// through its HTTP API on loopback, prints a table and writes the JSON.
/// Usage: airlock-bench --url URL --key KEY --floors DIR --out FILE [--quick] [--only cold,warm,exec,...]
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        var options = Options.Parse(args);
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };
        using var api = new Api(options.Url, options.Key);
        var report = new Report(options);
        try
        {
            await report.RunAsync(api, cts.Token);
        }
        finally
        {
            await api.DeleteAllAsync(CancellationToken.None);
        }

        report.PrintTable(Console.Out);
        await File.WriteAllTextAsync(options.Out, report.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Console.WriteLine($"wrote {options.Out}");
        return 0;
    }
}

internal sealed class Options
{
    public Uri Url { get; private set; } = new("http://127.0.0.1:3000");

    public string Key { get; private set; } = "";

    public string FloorsDir { get; private set; } = "";

    public string Out { get; private set; } = "bench/results/latest.json";

    public bool Quick { get; private set; }

    /// <summary>--only cold,warm,internet,exec,idle,throughput,api,files: run just these (for quick A/B work); default all.</summary>
    public HashSet<string>? Only { get; private set; }

    public bool Runs(string step) => Only is null || Only.Contains(step);

    public int ColdRuns => Quick ? 20 : 100;

    public int ExecRuns => Quick ? 300 : 1000;

    public int ThroughputCommands => Quick ? 2000 : 10000;

    public int ThroughputSandboxes => 100;

    public int ThroughputConcurrency => 16;

    public int ThroughputWrkSeconds => Quick ? 5 : 10;

    public int IdleSandboxes => Quick ? 100 : 500;

    public int FileRuns => Quick ? 3 : 5;

    public int FileBytes => 100 * 1024 * 1024;

    public int ApiRate => 1000;

    public TimeSpan ApiDuration => TimeSpan.FromSeconds(Quick ? 5 : 20);

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--url":
                    o.Url = new Uri(args[++i]);
                    break;
                case "--key":
                    o.Key = args[++i];
                    break;
                case "--floors":
                    o.FloorsDir = args[++i];
                    break;
                case "--out":
                    o.Out = args[++i];
                    break;
                case "--quick":
                    o.Quick = true;
                    break;
                case "--only":
                    o.Only = [.. args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries)];
                    break;
                default:
                    throw new ArgumentException($"unknown argument {args[i]}");
            }
        }

        return o;
    }
}
