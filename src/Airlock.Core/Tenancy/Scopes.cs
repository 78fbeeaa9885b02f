namespace Airlock.Core.Tenancy;

/// <summary>What a key (or a user's role) may do. Stored as their names, space-separated.</summary>
[Flags]
internal enum Scopes
{
    None = 0,
    SandboxesRead = 1,
    SandboxesWrite = 2,
    TemplatesRead = 4,
    TemplatesWrite = 8,
    TeamAdmin = 16,
    UsageRead = 32,
    All = SandboxesRead | SandboxesWrite | TemplatesRead | TemplatesWrite | TeamAdmin | UsageRead,
}

internal static class ScopeNames
{
    private static readonly (Scopes Scope, string Name)[] s_names =
    [
        (Scopes.SandboxesRead, "sandboxes:read"),
        (Scopes.SandboxesWrite, "sandboxes:write"),
        (Scopes.TemplatesRead, "templates:read"),
        (Scopes.TemplatesWrite, "templates:write"),
        (Scopes.TeamAdmin, "team:admin"),
        (Scopes.UsageRead, "usage:read"),
    ];

    /// <summary>A new key without <c>scopes</c>: everything but administering the team.</summary>
    public const Scopes DefaultForKeys = Scopes.SandboxesRead | Scopes.SandboxesWrite | Scopes.TemplatesRead | Scopes.UsageRead;

    public static string Name(Scopes scope) => s_names.First(n => n.Scope == scope).Name;

    public static List<string> ToList(Scopes scopes) => s_names.Where(n => scopes.HasFlag(n.Scope)).Select(n => n.Name).ToList();

    public static string Format(Scopes scopes) => string.Join(' ', ToList(scopes));

    /// <summary>Names to flags; an unknown name is a 400.</summary>
    public static Scopes Parse(IEnumerable<string> names)
    {
        var result = Scopes.None;
        foreach (var name in names)
        {
            var match = s_names.FirstOrDefault(n => n.Name == name);
            if (match.Name is null)
            {
                throw AirlockException.Invalid($"unknown scope '{name}' (known: {string.Join(", ", s_names.Select(n => n.Name))})");
            }

            result |= match.Scope;
        }

        return result;
    }

    public static Scopes ParseStored(string stored) =>
        Parse(stored.Split(' ', StringSplitOptions.RemoveEmptyEntries));
}

/// <summary>Team roles of users, and the scopes each grants.</summary>
internal static class Roles
{
    public const string Owner = "owner";
    public const string Admin = "admin";
    public const string Member = "member";
    public const string Viewer = "viewer";

    public static bool IsValid(string? role) => role is Owner or Admin or Member or Viewer;

    public static Scopes ScopesOf(string role) => role switch
    {
        Owner or Admin => Scopes.All,
        Member => Scopes.SandboxesRead | Scopes.SandboxesWrite | Scopes.TemplatesRead | Scopes.UsageRead,
        Viewer => Scopes.SandboxesRead | Scopes.TemplatesRead | Scopes.UsageRead,
        _ => Scopes.None,
    };
}
