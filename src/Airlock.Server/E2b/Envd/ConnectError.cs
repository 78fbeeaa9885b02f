using Airlock.Core;

namespace Airlock.Server.E2b.Envd;

/// <summary>A Connect error: one of the protocol's codes, its HTTP status for unary calls, and a message.</summary>
internal readonly record struct ConnectError(string Code, string Message)
{
    /// <summary>The Connect protocol's code → HTTP status table (unary responses only; streams answer 200).</summary>
    public int HttpStatus => Code switch
    {
        "canceled" => 499,
        "invalid_argument" or "failed_precondition" or "out_of_range" => 400,
        "deadline_exceeded" => 504,
        "not_found" => 404,
        "already_exists" or "aborted" => 409,
        "permission_denied" => 403,
        "resource_exhausted" => 429,
        "unimplemented" => 501,
        "unavailable" => 503,
        "unauthenticated" => 401,
        _ => 500,
    };

    /// <summary>Core's codes map by name where Connect has the same one, else by their HTTP status.</summary>
    public static ConnectError From(AirlockException ex) => new(
        ex.Code switch
        {
            "not_found" or "invalid_argument" or "already_exists" or "permission_denied" or "deadline_exceeded" or "unauthenticated" => ex.Code,
            "stdin_closed" => "failed_precondition",
            "not_enough_space" => "resource_exhausted",
            _ => ex.Status switch
            {
                400 => "invalid_argument",
                401 => "unauthenticated",
                403 => "permission_denied",
                404 => "not_found",
                409 => "already_exists",
                429 or 507 => "resource_exhausted",
                501 => "unimplemented",
                502 or 503 => "unavailable",
                504 => "deadline_exceeded",
                _ => "internal",
            },
        },
        ex.Message);
}
