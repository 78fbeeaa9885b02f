using Airlock.Core.Files;
using Airlock.Core.Processes;
using Airlock.Core.Runtime;
using Airlock.Core.Sandboxes;
using Airlock.Core.Store;
using Airlock.Core.Templates;
using Airlock.Core.Tenancy;
using Airlock.Runtime.Linux;
using Airlock.Runtime.Linux.Templates;
using Airlock.Server;
using Airlock.Server.Auth;
using Airlock.Server.E2b.ControlPlane;
using Airlock.Server.Files;
using Airlock.Server.Http;
using Airlock.Server.Processes;
using Airlock.Server.Sandboxes;
using Airlock.Server.Templates;
using Airlock.Server.Tenancy;
using Microsoft.Extensions.Options;

// `airlock-server build-template [name]`: build a template into the templates dir and exit
// (test.sh and CI use it so every test server shares one build).
if (args is ["build-template", ..])
{
    return await TemplateCommand.RunAsync(args.Length > 1 ? args[1] : "base");
}

var builder = WebApplication.CreateSlimBuilder(args);

// The documented environment: AIRLOCK_URLS, AIRLOCK_DATA, AIRLOCK_DATABASE, AIRLOCK_BOOTSTRAP_API_KEY, AIRLOCK_TEMPLATES.
var urls = Environment.GetEnvironmentVariable("AIRLOCK_URLS");
if (!string.IsNullOrEmpty(urls))
{
    builder.WebHost.UseUrls(urls);
}
else if (string.IsNullOrEmpty(builder.Configuration["urls"]))
{
    builder.WebHost.UseUrls("http://127.0.0.1:3000");
}

var dataDir = Path.GetFullPath(Environment.GetEnvironmentVariable("AIRLOCK_DATA") ?? builder.Configuration["Airlock:DataDir"] ?? "data");
Directory.CreateDirectory(dataDir);
builder.Services.AddOptions<RuntimeOptions>().BindConfiguration(RuntimeOptions.Section).Configure(o =>
{
    o.DataDir = dataDir;
    o.TemplatesDir = Environment.GetEnvironmentVariable("AIRLOCK_TEMPLATES") ?? o.TemplatesDir;
});
builder.Services.AddOptions<SandboxOptions>().BindConfiguration(SandboxOptions.Section).ValidateOnStart()
    .Validate(o => o.DefaultTimeoutSeconds >= 1 && o.DefaultTimeoutSeconds <= o.MaxTimeoutSeconds, "Airlock:Sandboxes:DefaultTimeoutSeconds must be between 1 and MaxTimeoutSeconds")
    .Validate(o => o.DefaultMemoryMb >= 64, "Airlock:Sandboxes:DefaultMemoryMb must be at least 64")
    .Validate(o => o.WarmPoolSize >= 0, "Airlock:Sandboxes:WarmPoolSize must be 0 (no pool) or more")
    .Validate(o => o.WarmPoolRefillDelayMs is >= 0 and <= 1000, "Airlock:Sandboxes:WarmPoolRefillDelayMs must be between 0 and 1000");

builder.Services.AddSingleton(TimeProvider.System);
// AIRLOCK_DATABASE: empty for SQLite in the data dir, or postgres://user:pass@host:5432/db.
builder.Services.AddSingleton(_ => Database.FromSetting(Environment.GetEnvironmentVariable("AIRLOCK_DATABASE") ?? builder.Configuration["Airlock:Database"], dataDir));
// Servers sharing one PostgreSQL each own the sandboxes they run (Airlock:NodeId, default host:datadir).
var nodeId = builder.Configuration["Airlock:NodeId"] is { Length: > 0 } configuredNode ? configuredNode : $"{Environment.MachineName}:{dataDir}";
builder.Services.AddSingleton<ISandboxStore>(sp => new SqlSandboxStore(sp.GetRequiredService<Database>(), nodeId));
builder.Services.AddSingleton<LinuxSandboxRuntime>();
builder.Services.AddSingleton<ISandboxRuntime>(sp => sp.GetRequiredService<LinuxSandboxRuntime>());
builder.Services.AddSingleton<ITemplateBuilder, DebootstrapTemplateBuilder>();
builder.Services.AddSingleton<TemplateService>();
builder.Services.AddSingleton<SandboxService>();
builder.Services.AddSingleton<ProcessService>();
builder.Services.AddSingleton<FileService>();
// Tenancy (docs/architecture.md, "Tenancy"). The audit writer is registered before everything
// else so that it stops last and flushes what the others recorded while stopping.
builder.Services.AddOptions<TenancyOptions>().BindConfiguration(TenancyOptions.Section);
builder.Services.AddOptions<QuotaOptions>().BindConfiguration(QuotaOptions.Section);
builder.Services.AddOptions<PlanOptions>().Configure<IConfiguration>((o, c) => c.GetSection(PlanOptions.Section).Bind(o.Plans));
builder.Services.AddSingleton<SqlTenancyStore>();
builder.Services.AddSingleton<AuditLog>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<AuditLog>());
builder.Services.AddSingleton<TenancyService>();
builder.Services.AddSingleton<UserService>();
builder.Services.AddSingleton<QuotaLedger>();
builder.Services.AddSingleton<RateLimiter>();
builder.Services.AddSingleton<BootstrapKey>();
builder.Services.AddSingleton<ApiKeyAuthentication>();
builder.Services.AddHostedService<StartupService>();
builder.Services.AddHostedService<TenancyStartup>();
builder.Services.AddHostedService<QuotaEnforcer>();
// After StartupService: the warm pool fills only once recovery has swept (docs/performance.md).
builder.Services.AddSingleton<WarmPool>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<WarmPool>());
builder.Services.AddOptions<Airlock.Server.E2b.E2bOptions>().BindConfiguration(Airlock.Server.E2b.E2bOptions.Section);
builder.Services.AddSingleton<Airlock.Server.E2b.SandboxRouting>();
builder.Services.AddOptions<Airlock.Runtime.Linux.Network.NetworkOptions>().BindConfiguration(Airlock.Runtime.Linux.Network.NetworkOptions.Section);
builder.Services.AddSingleton<Airlock.Runtime.Linux.Network.LinuxSandboxNetwork>();
builder.Services.AddSingleton<ISandboxNetwork>(sp => sp.GetRequiredService<Airlock.Runtime.Linux.Network.LinuxSandboxNetwork>());
builder.Services.AddSingleton<Airlock.Server.Proxy.PortProxy>();
builder.Services.AddSingleton<Airlock.Server.E2b.CodeInterpreter.CodeContexts>();
builder.Services.AddSingleton<Airlock.Server.E2b.Envd.FilesystemRpcWatchers>();
builder.Services.AddSingleton<Airlock.Server.E2b.Envd.EnvdFileSignatures>();
builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ApiJsonContext.Default));
builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = null); // files of any size stream through

var app = builder.Build();
var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Airlock");
app.Services.GetRequiredService<BootstrapKey>().Value = ApiKeyAuthentication.LoadBootstrapKey(Environment.GetEnvironmentVariable("AIRLOCK_BOOTSTRAP_API_KEY"), dataDir, logger);
var auth = app.Services.GetRequiredService<ApiKeyAuthentication>();

app.Use((context, next) => Problems.HandleAsync(context, () => next(context), logger));
var routing = app.Services.GetRequiredService<Airlock.Server.E2b.SandboxRouting>();
app.Use((context, next) => routing.HandleAsync(context, () => next(context)));
app.Use((context, next) => auth.HandleAsync(context, () => next(context)));
var portProxy = app.Services.GetRequiredService<Airlock.Server.Proxy.PortProxy>();
app.Use((context, next) => portProxy.HandleAsync(context, () => next(context)));
app.UseWebSockets();
// Explicit, so endpoints are matched after the edge has rewritten sandbox requests.
app.UseRouting();

app.MapGet("/health", (TemplateService templates, LinuxSandboxRuntime runtime, Database database) =>
    TypedResults.Json(new HealthDto("ok", runtime.Cgroups.Layout, database.Dialect.ToString().ToLowerInvariant(), TemplateEndpoints.Describe(templates)), ApiJsonContext.Default.HealthDto));
app.MapSandboxes();
app.MapProcesses();
app.MapFiles();
app.MapTemplates();
app.MapTenancy();
app.MapAudit();
app.MapAuth();
Airlock.Server.E2b.Envd.ProcessRpc.MapEnvdProcessRpc(app);
Airlock.Server.E2b.Envd.FilesystemRpc.MapEnvdFilesystemRpc(app);
Airlock.Server.E2b.Envd.EnvdHttpEndpoints.MapEnvdHttp(app);
app.MapE2bControlPlane();
Airlock.Server.E2b.CodeInterpreter.CodeInterpreterEndpoints.MapCodeInterpreter(app);
app.MapFallback((HttpContext context) => Problems.Result(404, "route_not_found", $"no route for {context.Request.Method} {context.Request.Path}"));

await app.RunAsync();
return 0;
