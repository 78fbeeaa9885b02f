using Airlock.Core.Sandboxes;
using Airlock.Core.Templates;

namespace Airlock.Server;

/// <summary>
/// At start: open the store, re-adopt or reap the sandboxes of a previous run, then build the
/// templates that are missing in the background (progress goes to the log).
/// </summary>
internal sealed class StartupService(ISandboxStore store, SandboxService sandboxes, TemplateService templates) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await store.InitializeAsync(cancellationToken);
        await sandboxes.RecoverAsync(cancellationToken);
        foreach (var spec in templates.Specs)
        {
            _ = Task.Run(async () =>
            {
                try
                {
                    await templates.EnsureBuiltAsync(spec.Name);
                }
                catch (Exception)
                {
                    // Logged by the template service; GET /v1/templates shows the error.
                }
            }, CancellationToken.None);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
