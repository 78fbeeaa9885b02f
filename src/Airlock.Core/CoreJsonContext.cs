using System.Text.Json.Serialization;

namespace Airlock.Core;

[JsonSourceGenerationOptions(UseStringEnumConverter = true)]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(Sandboxes.NetworkConfig))]
internal sealed partial class CoreJsonContext : JsonSerializerContext;
