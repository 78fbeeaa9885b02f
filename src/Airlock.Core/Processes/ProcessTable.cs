using System.Collections.Concurrent;

namespace Airlock.Core.Processes;

/// <summary>A sandbox's processes by pid; keeps the newest finished ones for re-attach.</summary>
internal sealed class ProcessTable(int finishedKept)
{
    private readonly ConcurrentDictionary<int, SandboxProcess> _byPid = new();
    private readonly ConcurrentQueue<SandboxProcess> _finished = new();

    public void Add(SandboxProcess process) => _byPid[process.Pid] = process;

    public SandboxProcess? Find(int? pid, string? tag)
    {
        if (pid is { } p)
        {
            return _byPid.TryGetValue(p, out var byPid) ? byPid : null;
        }

        if (tag is not null)
        {
            // The newest process with the tag wins: a tag is reusable once its process is gone.
            return _byPid.Values.Where(x => x.Tag == tag).OrderByDescending(x => x.StartedAt).ThenBy(x => x.HasExited).FirstOrDefault();
        }

        return null;
    }

    public IEnumerable<SandboxProcess> Running => _byPid.Values.Where(p => !p.HasExited);

    public IEnumerable<SandboxProcess> All => _byPid.Values;

    /// <summary>Called when a process ends; forgets the oldest finished ones beyond the limit.</summary>
    public void OnFinished(SandboxProcess process)
    {
        _finished.Enqueue(process);
        while (_finished.Count > finishedKept && _finished.TryDequeue(out var old))
        {
            _byPid.TryRemove(new KeyValuePair<int, SandboxProcess>(old.Pid, old));
        }
    }
}
