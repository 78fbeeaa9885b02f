using Google.Protobuf;

namespace Airlock.Server.E2b.Envd;

/// <summary>
/// The proto3 JSON mapping the Connect JSON codec uses (Go protojson upstream): lowerCamelCase names
/// out, either name accepted in (Python may send snake_case), int64 as strings, enums by name,
/// default values omitted, unknown fields ignored so newer clients keep working.
/// </summary>
internal static class ConnectCodec
{
    public static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);

    private static readonly JsonParser s_parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    public static T Parse<T>(ReadOnlySpan<byte> json)
        where T : IMessage<T>, new()
    {
        // connect-web sends "{}" for an empty message; tolerate an empty body as the same.
        if (json.IsEmpty)
        {
            return new T();
        }

        try
        {
            return s_parser.Parse<T>(System.Text.Encoding.UTF8.GetString(json));
        }
        catch (Exception ex) when (ex is InvalidProtocolBufferException or InvalidJsonException or FormatException or ArgumentException)
        {
            throw Core.AirlockException.Invalid($"the request is not a valid {typeof(T).Name}: {ex.Message}");
        }
    }
}
