using System.Text.Json.Serialization;

namespace Airlock.Bench;

internal sealed class SandboxDto
{
    public string Id { get; set; } = "";

    public string State { get; set; } = "";
}

internal sealed class ExecBody
{
    public string Cmd { get; set; } = "";
}

internal sealed class ExecResultDto
{
    public int ExitCode { get; set; }

    public string? Error { get; set; }
}

internal sealed class HealthDto
{
    public string Status { get; set; } = "";

    public List<TemplateStatusDto> Templates { get; set; } = [];
}

internal sealed class TemplateStatusDto
{
    public string Name { get; set; } = "";

    public string Status { get; set; } = "";

    public string? Error { get; set; }
}

internal sealed class CreateBody
{
    public string Template { get; set; } = "base";

    public int TimeoutSeconds { get; set; } = 1800;

    /// <summary>Null: the server's default. The cold-create figure asks for a size the warm pool does not hold.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DiskMb { get; set; }

    /// <summary>Null: mode none. The internet figure asks for a veth, NAT and rules (docs/networking.md).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public NetworkBody? Network { get; set; }
}

internal sealed class NetworkBody
{
    public string Mode { get; set; } = "none";
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(SandboxDto))]
[JsonSerializable(typeof(List<SandboxDto>))]
[JsonSerializable(typeof(ExecBody))]
[JsonSerializable(typeof(ExecResultDto))]
[JsonSerializable(typeof(HealthDto))]
[JsonSerializable(typeof(CreateBody))]
internal sealed partial class BenchJson : JsonSerializerContext;
