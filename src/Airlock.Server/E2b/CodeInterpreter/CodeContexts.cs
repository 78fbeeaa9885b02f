using System.Collections.Concurrent;
using Airlock.Core;
using Airlock.Core.Processes;
using Airlock.Core.Sandboxes;

namespace Airlock.Server.E2b.CodeInterpreter;

/// <summary>
/// The code contexts of every sandbox, in memory: a context is only its interpreter process,
/// which dies with the sandbox (or the server), so there is nothing to persist. Each sandbox has
/// at most one default context per language, made on first use by an execution that names none.
/// </summary>
internal sealed class CodeContexts(SandboxService sandboxes, ProcessService processes)
{
    public const string Python = "python";

    private readonly ConcurrentDictionary<string, SandboxContexts> _bySandbox = new(StringComparer.Ordinal);

    private sealed class SandboxContexts
    {
        public readonly Lock Lock = new();
        public readonly Dictionary<string, CodeContext> Contexts = new(StringComparer.Ordinal);
        public readonly Dictionary<string, Task<CodeContext>> Defaults = new(StringComparer.Ordinal);
    }

    /// <summary>The languages an interpreter exists for, by the names the SDKs send.</summary>
    public static string NormalizeLanguage(string? language) => language?.Trim().ToLowerInvariant() switch
    {
        null or "" or "python" or "python3" => Python,
        var other => throw new AirlockException("unsupported_language", 400, $"language '{other}' is not supported; supported: python"),
    };

    public async Task<CodeContext> CreateAsync(LiveSandbox sandbox, string language, string? cwd, CancellationToken cancellationToken)
    {
        Sweep();
        var context = new CodeContext(processes, sandbox.Record.Id, NewId(), language, DefaultCwd(sandbox, cwd));
        await context.StartAsync(cancellationToken).ConfigureAwait(false);
        var contexts = For(sandbox.Record.Id);
        lock (contexts.Lock)
        {
            contexts.Contexts[context.Id] = context;
        }

        return context;
    }

    /// <summary>The sandbox's default context for the language; concurrent first uses share one.</summary>
    public async Task<CodeContext> DefaultAsync(LiveSandbox sandbox, string language, CancellationToken cancellationToken)
    {
        var contexts = For(sandbox.Record.Id);
        Task<CodeContext> task;
        lock (contexts.Lock)
        {
            if (!contexts.Defaults.TryGetValue(language, out task!) || task.IsFaulted || task.IsCanceled)
            {
                // Not tied to one request: a client that gives up must not fail the others waiting.
                task = CreateAsync(sandbox, language, null, CancellationToken.None);
                contexts.Defaults[language] = task;
            }
        }

        return await task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public CodeContext Get(string sandboxId, string id)
    {
        var contexts = For(sandboxId);
        lock (contexts.Lock)
        {
            return contexts.Contexts.TryGetValue(id, out var context)
                ? context
                : throw new AirlockException("not_found", 404, $"context '{id}' not found");
        }
    }

    public IReadOnlyList<CodeContext> List(string sandboxId)
    {
        var contexts = For(sandboxId);
        lock (contexts.Lock)
        {
            return [.. contexts.Contexts.Values];
        }
    }

    public async Task RemoveAsync(string sandboxId, string id)
    {
        var contexts = For(sandboxId);
        CodeContext? removed;
        lock (contexts.Lock)
        {
            if (contexts.Contexts.Remove(id, out removed))
            {
                foreach (var (language, task) in contexts.Defaults.ToArray())
                {
                    if (task.IsCompletedSuccessfully && task.Result == removed)
                    {
                        contexts.Defaults.Remove(language);
                    }
                }
            }
        }

        if (removed is null)
        {
            throw new AirlockException("not_found", 404, $"context '{id}' not found");
        }

        await removed.StopAsync().ConfigureAwait(false);
    }

    private SandboxContexts For(string sandboxId) => _bySandbox.GetOrAdd(sandboxId, _ => new SandboxContexts());

    /// <summary>Forgets the contexts of sandboxes that are gone (their processes died with them).</summary>
    private void Sweep()
    {
        foreach (var sandboxId in _bySandbox.Keys)
        {
            // Unscoped: this request's caller is one sandbox, and must not sweep the others' contexts.
            if (!sandboxes.IsRunningUnscoped(sandboxId))
            {
                _bySandbox.TryRemove(sandboxId, out _);
            }
        }
    }

    private static string DefaultCwd(LiveSandbox sandbox, string? cwd) =>
        cwd is { Length: > 0 } ? cwd : sandbox.Template.Workdir ?? "/home/user";

    private static string NewId() => Guid.NewGuid().ToString();
}
