namespace Airlock.Core;

/// <summary>
/// An expected failure with a stable machine-readable code. Every adapter (native API, E2B
/// surface) maps it to its own error shape; the code and HTTP status come from here.
/// </summary>
internal sealed class AirlockException(string code, int status, string message) : Exception(message)
{
    public string Code { get; } = code;

    public int Status { get; } = status;

    /// <summary>For quota refusals: the limit's name (e.g. <c>maxCpus</c>), sent as the ProblemDetails' <c>limit</c>.</summary>
    public string? Limit { get; init; }

    /// <summary>For quota refusals: the limit's value, sent as <c>value</c>.</summary>
    public double? Value { get; init; }

    public static AirlockException NotFound(string what) => new("not_found", 404, $"{what} not found");

    public static AirlockException Invalid(string message) => new("invalid_argument", 400, message);

    public static AirlockException Conflict(string code, string message) => new(code, 409, message);
}
