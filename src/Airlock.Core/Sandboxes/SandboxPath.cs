namespace Airlock.Core.Sandboxes;

/// <summary>Path rules shared by every API: relative paths are under the user's home; the result is normalized lexically.</summary>
internal static class SandboxPath
{
    public static string Resolve(string path, SandboxUser user)
    {
        if (string.IsNullOrEmpty(path))
        {
            throw AirlockException.Invalid("path is required");
        }

        if (path.Contains('\0'))
        {
            throw AirlockException.Invalid("path contains a NUL byte");
        }

        if (path == "~" || path.StartsWith("~/", StringComparison.Ordinal))
        {
            path = user.Home + path[1..];
        }

        if (!path.StartsWith('/'))
        {
            path = user.Home.TrimEnd('/') + "/" + path;
        }

        // '..' is clamped at the root here; symlinks are resolved later, in the sandbox's root, by the kernel.
        var parts = new List<string>();
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == ".")
            {
                continue;
            }

            if (part == "..")
            {
                if (parts.Count > 0)
                {
                    parts.RemoveAt(parts.Count - 1);
                }

                continue;
            }

            parts.Add(part);
        }

        return "/" + string.Join('/', parts);
    }
}
