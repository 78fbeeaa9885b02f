using System.Collections.Concurrent;
using Airlock.Core.Sandboxes;
using Microsoft.Extensions.Logging;

namespace Airlock.Core.Templates;

/// <summary>Knows the templates, builds them on demand (once per content hash) and reports their status.</summary>
internal sealed partial class TemplateService(ITemplateBuilder builder, ISandboxStore store, TimeProvider time, ILogger<TemplateService> logger)
{
    private readonly ConcurrentDictionary<string, TemplateSpec> _specs = new(StringComparer.Ordinal)
    {
        [TemplateSpec.Base.Name] = TemplateSpec.Base,
        [TemplateSpec.CodeInterpreter.Name] = TemplateSpec.CodeInterpreter,
    };

    private readonly ConcurrentDictionary<string, Lazy<Task<TemplateInfo>>> _builds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TemplateRecord> _status = new(StringComparer.Ordinal);

    public IReadOnlyCollection<TemplateSpec> Specs => _specs.Values.ToArray();

    public void Register(TemplateSpec spec) => _specs[spec.Name] = spec;

    public TemplateRecord? GetStatus(string name) => _status.TryGetValue(name, out var record) ? record : null;

    /// <summary>The template ready for use, or an error saying why not (unknown, still building, failed).</summary>
    public TemplateInfo GetReady(string name)
    {
        if (!_specs.TryGetValue(name, out var spec))
        {
            throw AirlockException.NotFound($"template '{name}'");
        }

        if (_builds.TryGetValue(name, out var build) && build.Value.IsCompletedSuccessfully)
        {
            return build.Value.Result;
        }

        if (builder.TryGetBuilt(spec) is { } path)
        {
            return new TemplateInfo(spec, spec.Hash(), path);
        }

        if (_status.TryGetValue(name, out var status) && status.Status == TemplateStatus.Failed)
        {
            throw new AirlockException("template_failed", 409, $"template '{name}' failed to build: {status.Error}");
        }

        throw new AirlockException("template_building", 409, $"template '{name}' is being built; try again shortly");
    }

    /// <summary>Builds the template if needed; concurrent callers share one build.</summary>
    public Task<TemplateInfo> EnsureBuiltAsync(string name, CancellationToken cancellationToken = default)
    {
        if (!_specs.TryGetValue(name, out var spec))
        {
            throw AirlockException.NotFound($"template '{name}'");
        }

        var build = _builds.GetOrAdd(name, _ => new Lazy<Task<TemplateInfo>>(() => BuildAsync(spec, cancellationToken)));
        if (build.Value.IsFaulted)
        {
            // Let a later call try again.
            _builds.TryRemove(new KeyValuePair<string, Lazy<Task<TemplateInfo>>>(name, build));
        }

        return build.Value;
    }

    private async Task<TemplateInfo> BuildAsync(TemplateSpec spec, CancellationToken cancellationToken)
    {
        var hash = spec.Hash();
        await SetStatusAsync(new TemplateRecord(spec.Name, hash, TemplateStatus.Building, null, time.GetUtcNow())).ConfigureAwait(false);
        try
        {
            var path = await builder.EnsureBuiltAsync(spec, new SyncProgress(line => LogProgress(spec.Name, line)), cancellationToken).ConfigureAwait(false);
            await SetStatusAsync(new TemplateRecord(spec.Name, hash, TemplateStatus.Ready, null, time.GetUtcNow())).ConfigureAwait(false);
            LogReady(spec.Name, hash, path);
            return new TemplateInfo(spec, hash, path);
        }
        catch (Exception ex)
        {
            LogFailed(spec.Name, ex);
            await SetStatusAsync(new TemplateRecord(spec.Name, hash, TemplateStatus.Failed, ex.Message, time.GetUtcNow())).ConfigureAwait(false);
            throw;
        }
    }

    private async Task SetStatusAsync(TemplateRecord record)
    {
        _status[record.Name] = record;
        await store.UpsertTemplateAsync(record).ConfigureAwait(false);
    }

    /// <summary>Progress that reports on the caller's thread, so lines come out in order.</summary>
    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "template {Name}: {Line}")]
    private partial void LogProgress(string name, string line);

    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "template {Name} ready (hash {Hash}) at {Path}")]
    private partial void LogReady(string name, string hash, string path);

    [LoggerMessage(EventId = 302, Level = LogLevel.Error, Message = "template {Name} failed to build")]
    private partial void LogFailed(string name, Exception ex);
}
