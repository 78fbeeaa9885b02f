using System.Text.Json.Serialization;

namespace Airlock.Server.E2b.ControlPlane;

/// <summary>
/// <c>NewSandbox</c> (v1) and <c>NewSandboxV2</c> (spec §1.2). The API's own names are camelCase plus
/// <c>allow_internet_access</c>; the snake_case twins are accepted too because hand-written Python
/// clients send them, and the first non-null wins.
/// </summary>
internal sealed record NewSandboxBody
{
    [JsonPropertyName("templateID")]
    public string? TemplateId { get; init; }

    [JsonPropertyName("template_id")]
    public string? TemplateIdSnake { get; init; }

    public int? Timeout { get; init; }

    public Dictionary<string, string>? Metadata { get; init; }

    public Dictionary<string, string>? EnvVars { get; init; }

    [JsonPropertyName("env_vars")]
    public Dictionary<string, string>? EnvVarsSnake { get; init; }

    public bool? AutoPause { get; init; }

    [JsonPropertyName("auto_pause")]
    public bool? AutoPauseSnake { get; init; }

    public bool? Secure { get; init; }

    [JsonPropertyName("allow_internet_access")]
    public bool? AllowInternetAccess { get; init; }

    [JsonPropertyName("allowInternetAccess")]
    public bool? AllowInternetAccessCamel { get; init; }

    public E2bNetworkBody? Network { get; init; }
}

/// <summary>
/// E2B's <c>network</c> on create and the body of <c>PUT /sandboxes/{id}/network</c>: egress
/// rules (CIDRs, addresses, domain names; <c>0.0.0.0/0</c> is "all traffic") and, on create,
/// whether port exposure is public. Other fields (egressProxy, rules, maskRequestHost) are ignored.
/// </summary>
internal sealed record E2bNetworkBody
{
    public List<string>? AllowOut { get; init; }

    public List<string>? DenyOut { get; init; }

    public bool? AllowPublicTraffic { get; init; }

    [JsonPropertyName("allow_internet_access")]
    public bool? AllowInternetAccess { get; init; }
}

/// <summary><c>ConnectSandbox</c> / <c>ConnectSandboxV2</c> and the deprecated resume body.</summary>
internal sealed record ConnectBody(int? Timeout, bool? Memory);

/// <summary><c>POST /sandboxes/{id}/timeout</c>.</summary>
internal sealed record E2bTimeoutBody(int? Timeout);

/// <summary><c>Sandbox</c>: what create and connect answer (spec §1.3).</summary>
internal sealed record E2bSandboxDto(
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("clientID")] string ClientId,
    [property: JsonPropertyName("templateID")] string TemplateId,
    string? Alias,
    string EnvdVersion,
    string? EnvdAccessToken,
    string? TrafficAccessToken,
    string? Domain);

/// <summary><c>SandboxDetail</c>: <c>GET /sandboxes/{id}</c>.</summary>
internal sealed record E2bSandboxDetailDto(
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("clientID")] string ClientId,
    [property: JsonPropertyName("templateID")] string TemplateId,
    string? Alias,
    string EnvdVersion,
    string? EnvdAccessToken,
    string? Domain,
    DateTimeOffset StartedAt,
    DateTimeOffset EndAt,
    int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMb,
    [property: JsonPropertyName("diskSizeMB")] int DiskSizeMb,
    string State,
    Dictionary<string, string> Metadata,
    E2bLifecycleDto Lifecycle,
    List<E2bVolumeMountDto> VolumeMounts);

internal sealed record E2bLifecycleDto(string OnTimeout, bool AutoResume);

internal sealed record E2bVolumeMountDto(string Name, string Path);

/// <summary><c>ListedSandbox</c>: one item of <c>GET /v2/sandboxes</c>.</summary>
internal sealed record E2bListedSandboxDto(
    [property: JsonPropertyName("sandboxID")] string SandboxId,
    [property: JsonPropertyName("clientID")] string ClientId,
    [property: JsonPropertyName("templateID")] string TemplateId,
    string? Alias,
    DateTimeOffset StartedAt,
    DateTimeOffset EndAt,
    int CpuCount,
    [property: JsonPropertyName("memoryMB")] int MemoryMb,
    [property: JsonPropertyName("diskSizeMB")] int DiskSizeMb,
    string State,
    string EnvdVersion,
    Dictionary<string, string> Metadata,
    List<E2bVolumeMountDto> VolumeMounts);

/// <summary><c>SandboxMetric</c>; every field is required by the Python SDK.</summary>
internal sealed record E2bMetricDto(
    DateTimeOffset Timestamp,
    long TimestampUnix,
    int CpuCount,
    double CpuUsedPct,
    long MemUsed,
    long MemTotal,
    long MemCache,
    long DiskUsed,
    long DiskTotal);

/// <summary>E2B's error body on every control-plane endpoint: the SDKs key on the integer <c>code</c>.</summary>
internal sealed record E2bErrorDto(int Code, string Message);

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(NewSandboxBody))]
[JsonSerializable(typeof(ConnectBody))]
[JsonSerializable(typeof(E2bTimeoutBody))]
[JsonSerializable(typeof(E2bNetworkBody))]
[JsonSerializable(typeof(E2bSandboxDto))]
[JsonSerializable(typeof(E2bSandboxDetailDto))]
[JsonSerializable(typeof(List<E2bListedSandboxDto>))]
[JsonSerializable(typeof(List<E2bMetricDto>))]
[JsonSerializable(typeof(E2bErrorDto))]
internal sealed partial class E2bControlPlaneJsonContext : JsonSerializerContext;
