using System.Collections.Concurrent;
using System.Security.Cryptography;
using Airlock.Core;
using Airlock.Core.Files;
using Airlock.Protocol.Envd.Filesystem;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// The polling form of WatchDir (CreateWatcher / GetWatcherEvents / RemoveWatcher, used by the
/// Python sync SDK): each watcher pumps its <see cref="IFileWatch"/> into a bounded queue that a
/// poll drains. A watcher nobody polls for <see cref="IdleExpiry"/> is dropped, so a client that
/// forgets RemoveWatcher does not hold an inotify instance forever.
/// </summary>
internal sealed class FilesystemRpcWatchers : IDisposable
{
    public static readonly TimeSpan IdleExpiry = TimeSpan.FromMinutes(10);

    /// <summary>Beyond this many unpolled events the oldest are dropped, bounding memory per watcher.</summary>
    private const int MaxQueued = 10_000;

    private readonly ConcurrentDictionary<string, Watcher> _watchers = new(StringComparer.Ordinal);
    private readonly FileService _files;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;

    public FilesystemRpcWatchers(FileService files, TimeProvider time)
    {
        _files = files;
        _time = time;
        _sweeper = time.CreateTimer(_ => Sweep(), null, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));
    }

    public string Create(string sandboxId, string path, bool recursive, bool includeEntry, string? user)
    {
        var (_, root, _) = _files.Resolve(sandboxId, path, user);
        var watch = _files.Watch(sandboxId, root, recursive, user);
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var watcher = new Watcher(sandboxId, watch, _time.GetTimestamp());
        _watchers[id] = watcher;
        watcher.Pump = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in watch.ReadAllAsync(watcher.Stop.Token))
                {
                    var wire = FilesystemRpc.ToWire(_files, sandboxId, user, root, e, includeEntry);
                    lock (watcher.Queue)
                    {
                        watcher.Queue.Enqueue(wire);
                        while (watcher.Queue.Count > MaxQueued)
                        {
                            watcher.Queue.Dequeue();
                        }
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or IOException or AirlockException)
            {
                // Removed, expired, or the sandbox went away; a later poll answers not_found or drains what is left.
            }
        });
        return id;
    }

    /// <summary>The events since the last poll.</summary>
    public IReadOnlyList<FilesystemEvent> Drain(string sandboxId, string watcherId)
    {
        var watcher = Find(sandboxId, watcherId);
        Interlocked.Exchange(ref watcher.LastPoll, _time.GetTimestamp());
        lock (watcher.Queue)
        {
            var events = watcher.Queue.ToList();
            watcher.Queue.Clear();
            return events;
        }
    }

    public void Remove(string sandboxId, string watcherId)
    {
        Find(sandboxId, watcherId);
        if (_watchers.TryRemove(watcherId, out var watcher))
        {
            watcher.Dispose();
        }
    }

    public void Dispose()
    {
        _sweeper.Dispose();
        foreach (var id in _watchers.Keys)
        {
            if (_watchers.TryRemove(id, out var watcher))
            {
                watcher.Dispose();
            }
        }
    }

    /// <summary>A watcher id of another sandbox is as unknown as a made-up one.</summary>
    private Watcher Find(string sandboxId, string watcherId) =>
        _watchers.TryGetValue(watcherId, out var watcher) && watcher.SandboxId == sandboxId
            ? watcher
            : throw AirlockException.NotFound($"watcher '{watcherId}'");

    private void Sweep()
    {
        foreach (var (id, watcher) in _watchers)
        {
            if (_time.GetElapsedTime(Interlocked.Read(ref watcher.LastPoll)) >= IdleExpiry && _watchers.TryRemove(id, out _))
            {
                watcher.Dispose();
            }
        }
    }

    private sealed class Watcher(string sandboxId, IFileWatch watch, long createdAt) : IDisposable
    {
        public string SandboxId { get; } = sandboxId;

        public Queue<FilesystemEvent> Queue { get; } = new();

        public CancellationTokenSource Stop { get; } = new();

        public Task Pump { get; set; } = Task.CompletedTask;

        public long LastPoll = createdAt;

        public void Dispose()
        {
            Stop.Cancel();
            watch.Dispose();
        }
    }
}
