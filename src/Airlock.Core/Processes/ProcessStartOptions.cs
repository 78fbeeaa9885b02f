using Airlock.Core.Runtime;

namespace Airlock.Core.Processes;

/// <summary>What to run. <see cref="Cmd"/> with <see cref="Args"/> is exec'd directly.</summary>
internal sealed record ProcessStartOptions
{
    public required string Cmd { get; init; }

    public IReadOnlyList<string> Args { get; init; } = [];

    public IReadOnlyDictionary<string, string>? Env { get; init; }

    public string? Cwd { get; init; }

    public string? User { get; init; }

    public string? Tag { get; init; }

    /// <summary>Open a stdin pipe (else /dev/null).</summary>
    public bool Stdin { get; init; }

    public PtySize? Pty { get; init; }

    /// <summary>Kill the process after this long; 0 = no limit.</summary>
    public TimeSpan Timeout { get; init; }
}
