using System.Text.Json.Serialization;

namespace Airlock.Core;

[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class CoreJsonContext : JsonSerializerContext;
