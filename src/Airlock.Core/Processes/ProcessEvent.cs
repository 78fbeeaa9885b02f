using Airlock.Core.Runtime;

namespace Airlock.Core.Processes;

/// <summary>
/// One event of a process stream, in the E2B model: <c>Start</c>, then <c>Data</c>*, then one <c>End</c>.
/// Keepalives are the adapters' business.
/// </summary>
internal abstract record ProcessEvent
{
    private ProcessEvent()
    {
    }

    internal sealed record Start(int Pid) : ProcessEvent;

    internal sealed record Data(OutputKind Kind, ReadOnlyMemory<byte> Bytes) : ProcessEvent;

    /// <param name="Status">How it ended.</param>
    /// <param name="Error">Why it ended other than by itself (timeout), else null.</param>
    internal sealed record End(ExitStatus Status, string? Error) : ProcessEvent;
}
