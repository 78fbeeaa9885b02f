using System.Text.Json.Serialization;

namespace Airlock.Server.E2b.CodeInterpreter;

/// <summary><c>POST /execute</c>: <c>{"code","context_id"?,"language"?,"env_vars"?}</c>.</summary>
internal sealed record ExecuteRequest(
    [property: JsonPropertyName("code")] string? Code,
    [property: JsonPropertyName("context_id")] string? ContextId,
    [property: JsonPropertyName("language")] string? Language,
    [property: JsonPropertyName("env_vars")] Dictionary<string, string>? EnvVars);

/// <summary><c>POST /contexts</c>: <c>{"language"?,"cwd"?}</c>.</summary>
internal sealed record CreateContextRequest(
    [property: JsonPropertyName("language")] string? Language,
    [property: JsonPropertyName("cwd")] string? Cwd);

internal sealed record ContextDto(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("language")] string Language,
    [property: JsonPropertyName("cwd")] string Cwd);

/// <summary>An NDJSON <c>stdout</c>/<c>stderr</c> line; the Python SDK requires the timestamp.</summary>
internal sealed record StreamLine(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("timestamp")] string Timestamp);

internal sealed record ErrorLine(
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("value")] string Value,
    [property: JsonPropertyName("traceback")] string Traceback);

internal sealed record TypeLine([property: JsonPropertyName("type")] string Type);

/// <summary>One execution, as the driver reads it from its stdin.</summary>
internal sealed record DriverRequest(
    [property: JsonPropertyName("id")] long Id,
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("env")] Dictionary<string, string>? Env);

[JsonSerializable(typeof(ExecuteRequest))]
[JsonSerializable(typeof(CreateContextRequest))]
[JsonSerializable(typeof(ContextDto))]
[JsonSerializable(typeof(List<ContextDto>))]
[JsonSerializable(typeof(StreamLine))]
[JsonSerializable(typeof(ErrorLine))]
[JsonSerializable(typeof(TypeLine))]
[JsonSerializable(typeof(DriverRequest))]
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class CodeInterpreterJsonContext : JsonSerializerContext;
