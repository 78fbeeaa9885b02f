using Airlock.Core.Templates;

namespace Airlock.Core.Sandboxes;

/// <summary>Persistent state. SQLite by default; PostgreSQL implements the same interface.</summary>
internal interface ISandboxStore
{
    Task InitializeAsync(CancellationToken cancellationToken = default);

    Task InsertAsync(SandboxRecord record, CancellationToken cancellationToken = default);

    Task UpdateAsync(SandboxRecord record, CancellationToken cancellationToken = default);

    Task DeleteAsync(string id, CancellationToken cancellationToken = default);

    Task<SandboxRecord?> GetAsync(string id, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<SandboxRecord>> ListAsync(CancellationToken cancellationToken = default);

    Task UpsertTemplateAsync(TemplateRecord template, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<TemplateRecord>> ListTemplatesAsync(CancellationToken cancellationToken = default);
}
