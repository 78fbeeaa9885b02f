using Airlock.Core.Tenancy;

namespace Airlock.Server.Tenancy;

/// <summary>The bootstrap admin key, read before the host starts (<c>AIRLOCK_BOOTSTRAP_API_KEY</c> or <c>&lt;data&gt;/admin.key</c>).</summary>
internal sealed class BootstrapKey
{
    public string Value { get; set; } = "";
}

/// <summary>After the store's migrations (StartupService): the first team and the bootstrap key exist.</summary>
internal sealed class TenancyStartup(TenancyService tenancy, BootstrapKey key) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => tenancy.InitializeAsync(key.Value, cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
