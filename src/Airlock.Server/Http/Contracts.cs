using System.Text.Json.Serialization;
using Airlock.Core.Files;

namespace Airlock.Server.Http;

internal sealed record SandboxDto(
    string Id,
    string Template,
    string State,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt,
    Dictionary<string, string> Metadata,
    int Cpus,
    int MemoryMb,
    int DiskMb,
    string? EnvdAccessToken)
{
    /// <summary>Mode and rules (docs/networking.md).</summary>
    public NetworkDto? Network { get; init; }

    /// <summary>Required as <c>e2b-traffic-access-token</c> on port-exposure requests when public traffic is off.</summary>
    public string? TrafficAccessToken { get; init; }
}

internal sealed record NetworkDto(string Mode, List<string> Allow, List<string> Deny, bool AllowPublicTraffic);

/// <summary>The network mode and rules as sent on create and <c>PUT /v1/sandboxes/{id}/network</c>; absent fields take the defaults.</summary>
internal sealed record NetworkBody(string? Mode, List<string>? Allow, List<string>? Deny, bool? AllowPublicTraffic);

internal sealed record SandboxMetricsDto(long MemoryUsedBytes, long MemoryLimitBytes, long DiskUsedBytes, long DiskTotalBytes)
{
    /// <summary>Bytes the sandbox sent: egress over its veth plus port-exposure responses.</summary>
    public long NetworkSentBytes { get; init; }

    /// <summary>Bytes the sandbox received: egress replies plus port-exposure requests.</summary>
    public long NetworkReceivedBytes { get; init; }

    public long EgressSentBytes { get; init; }

    public long EgressReceivedBytes { get; init; }

    public long ProxySentBytes { get; init; }

    public long ProxyReceivedBytes { get; init; }
}

internal sealed record CreateSandboxBody(
    string? Template,
    int? TimeoutSeconds,
    Dictionary<string, string>? Metadata,
    Dictionary<string, string>? Env,
    int? Cpus,
    int? MemoryMb,
    int? DiskMb)
{
    public NetworkBody? Network { get; init; }
}

internal sealed record TimeoutBody(int? TimeoutSeconds);

internal sealed record ExecBody(
    string? Cmd,
    string? Cwd,
    Dictionary<string, string>? Env,
    string? User,
    int? TimeoutSeconds,
    string? Stdin);

internal sealed record ExecResultDto(int ExitCode, string Stdout, string Stderr, long DurationMs, string? Error, int? Signal);

internal sealed record PtySizeDto(int Cols, int Rows);

internal sealed record StartProcessBody(
    string? Cmd,
    List<string>? Args,
    string? Cwd,
    Dictionary<string, string>? Env,
    string? User,
    string? Tag,
    bool? Stdin,
    PtySizeDto? Pty,
    int? TimeoutSeconds);

internal sealed record ProcessDto(
    int Pid,
    string? Tag,
    string Cmd,
    List<string> Args,
    string? Cwd,
    bool Pty,
    DateTimeOffset StartedAt,
    bool Running,
    int? ExitCode,
    int? Signal,
    string? Status);

internal sealed record SignalBody(JsonElementOrString? Signal);

internal sealed record ResizeBody(int Cols, int Rows);

internal sealed record PathBody(string? Path);

internal sealed record MoveBody(string? Source, string? Destination);

internal sealed record FileEntryDto(
    string Name,
    string Type,
    string Path,
    long Size,
    int Mode,
    string Permissions,
    string Owner,
    string Group,
    DateTimeOffset ModifiedTime,
    string? SymlinkTarget)
{
    public static FileEntryDto From(FileEntry e) => new(
        e.Name,
        e.Type switch { FileType.File => "file", FileType.Directory => "dir", FileType.Symlink => "symlink", _ => "other" },
        e.Path,
        e.Size,
        e.Mode,
        e.Permissions,
        e.Owner,
        e.Group,
        e.ModifiedTime,
        e.SymlinkTarget);
}

internal sealed record TemplateDto(string Name, string? Hash, string Status, string? Error);

internal sealed record HealthDto(string Status, string Cgroups, string Database, List<TemplateDto> Templates);

internal sealed record ProblemDto(
    string Type,
    string Title,
    int Status,
    string Detail,
    string Code,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Limit = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? Value = null);

internal sealed record SseData(string Data);

internal sealed record SsePid(int Pid);

internal sealed record SseEnd(int ExitCode, string Status, string? Error, int? Signal, long? DurationMs);

internal sealed record SseFileEvent(string Name, string Type);

/// <summary>A signal given as a number (15) or a name ("SIGTERM").</summary>
[JsonConverter(typeof(SignalConverter))]
internal sealed record JsonElementOrString(int Number);

internal sealed class SignalConverter : JsonConverter<JsonElementOrString>
{
    private static readonly Dictionary<string, int> s_names = new(StringComparer.OrdinalIgnoreCase)
    {
        ["SIGHUP"] = 1, ["SIGINT"] = 2, ["SIGQUIT"] = 3, ["SIGKILL"] = 9, ["SIGUSR1"] = 10, ["SIGUSR2"] = 12,
        ["SIGTERM"] = 15, ["SIGCONT"] = 18, ["SIGSTOP"] = 19, ["SIGTSTP"] = 20,
    };

    public override JsonElementOrString? Read(ref System.Text.Json.Utf8JsonReader reader, Type typeToConvert, System.Text.Json.JsonSerializerOptions options)
    {
        if (reader.TokenType == System.Text.Json.JsonTokenType.Number && reader.TryGetInt32(out var n))
        {
            return new JsonElementOrString(n);
        }

        if (reader.TokenType == System.Text.Json.JsonTokenType.String)
        {
            var name = reader.GetString()!;
            if (!name.StartsWith("SIG", StringComparison.OrdinalIgnoreCase))
            {
                name = "SIG" + name;
            }

            if (s_names.TryGetValue(name, out var v))
            {
                return new JsonElementOrString(v);
            }
        }

        throw new System.Text.Json.JsonException("signal must be a number or a name like \"SIGTERM\"");
    }

    public override void Write(System.Text.Json.Utf8JsonWriter writer, JsonElementOrString value, System.Text.Json.JsonSerializerOptions options) =>
        writer.WriteNumberValue(value.Number);
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(SandboxDto))]
[JsonSerializable(typeof(List<SandboxDto>))]
[JsonSerializable(typeof(SandboxMetricsDto))]
[JsonSerializable(typeof(CreateSandboxBody))]
[JsonSerializable(typeof(TimeoutBody))]
[JsonSerializable(typeof(NetworkBody))]
[JsonSerializable(typeof(NetworkDto))]
[JsonSerializable(typeof(ExecBody))]
[JsonSerializable(typeof(ExecResultDto))]
[JsonSerializable(typeof(StartProcessBody))]
[JsonSerializable(typeof(ProcessDto))]
[JsonSerializable(typeof(List<ProcessDto>))]
[JsonSerializable(typeof(SignalBody))]
[JsonSerializable(typeof(ResizeBody))]
[JsonSerializable(typeof(PathBody))]
[JsonSerializable(typeof(MoveBody))]
[JsonSerializable(typeof(FileEntryDto))]
[JsonSerializable(typeof(List<FileEntryDto>))]
[JsonSerializable(typeof(TemplateDto))]
[JsonSerializable(typeof(List<TemplateDto>))]
[JsonSerializable(typeof(HealthDto))]
[JsonSerializable(typeof(ProblemDto))]
[JsonSerializable(typeof(SseData))]
[JsonSerializable(typeof(SsePid))]
[JsonSerializable(typeof(SseEnd))]
[JsonSerializable(typeof(SseFileEvent))]
internal sealed partial class ApiJsonContext : JsonSerializerContext;
