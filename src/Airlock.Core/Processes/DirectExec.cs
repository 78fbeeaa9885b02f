using Airlock.Core.Files;
using Airlock.Core.Sandboxes;

namespace Airlock.Core.Processes;

/// <summary>
/// The exec fast path: a command line that <c>/bin/bash -c</c> would run as one external program with
/// its words as arguments is exec'd directly, with the variables bash would have given it, saving
/// bash's start-up (~1 ms of a ~3 ms round trip). Any doubt means bash: this is only taken when the
/// result is what bash would have done, including argv[0], PWD, SHLVL and <c>_</c>. One difference
/// remains, by design: the environment's order (the request's variables as built, then those three;
/// bash exports them in its own hash order): a plain <c>env</c> shows it, so the tests compare sorted.
/// </summary>
/// <remarks>
/// Why it is equivalent: for <c>bash -c 'prog a b'</c> (one simple command) bash does not fork; it
/// execs <c>prog</c> in place (so same pid, exit status and signals), exporting its environment plus
/// <c>PWD</c> (the physical cwd), <c>SHLVL</c> (incremented at start-up, decremented again for that exec:
/// 0 when it was unset) and <c>_</c> (the path it found). What rules out the fast path:
/// <list type="bullet">
/// <item>any character but letters, digits, <c>_ . / , : + @ % = -</c> and blanks: quoting, expansions
/// (<c>$ ` \ ~</c>, globs <c>* ? [</c>, braces), operators and redirections (<c>; &amp; | ( ) &lt; &gt;</c>),
/// comments (<c>#</c>), history/negation (<c>!</c>), newlines, non-ASCII;</item>
/// <item>a first word that is a keyword, a builtin (except <c>true</c>/<c>false</c> with no arguments and
/// <c>echo</c> with no argument starting with <c>-</c>, whose builtins behave as the programs do), an
/// assignment (<c>=</c>), a job spec (<c>%</c>) or starts with <c>-</c>;</item>
/// <item>an environment that changes bash itself or what it exports: <c>BASH*</c> (BASH_ENV is sourced,
/// BASH_FUNC_* are functions), ENV, SHELLOPTS, POSIXLY_CORRECT, EXECIGNORE, the variables bash sets
/// (SHLVL, PWD, OLDPWD, IFS, …), a name that is not an identifier, or no absolute PATH;</item>
/// <item>a program bash would not find as this one file: each PATH directory is checked in the
/// sandbox's root; the program must be a regular file executable by the user by its mode bits,
/// starting with <c>#!</c> or ELF (else bash would run it as a script, and glibc's execvp as /bin/sh),
/// and no other file of that name on the whole PATH (so the child's execvp cannot pick another);
/// a missing program goes to bash, which prints its own "command not found" (127);</item>
/// <item>a cwd whose path is not its physical path (a symlink on the way, <c>.</c>, <c>..</c>, <c>//</c>):
/// bash would export <c>getcwd()</c>.</item>
/// </list>
/// Login shells (<c>bash -l -c</c>, the E2B SDKs) read /etc/profile and are never shortcut.
/// If the direct exec still fails (a missing ELF interpreter, ACLs) the caller runs bash instead.
/// </remarks>
internal static class DirectExec
{
    private static readonly HashSet<string> s_keywords = new(StringComparer.Ordinal)
    {
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until", "do", "done",
        "in", "function", "time", "{", "}", "!", "[[", "]]", "coproc",
    };

    // bash 5.2 `compgen -b`.
    private static readonly HashSet<string> s_builtins = new(StringComparer.Ordinal)
    {
        ".", ":", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "command", "compgen", "complete",
        "compopt", "continue", "declare", "dirs", "disown", "echo", "enable", "eval", "exec", "exit", "export",
        "false", "fc", "fg", "getopts", "hash", "help", "history", "jobs", "kill", "let", "local", "logout",
        "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly", "return", "set", "shift",
        "shopt", "source", "suspend", "test", "times", "trap", "true", "type", "typeset", "ulimit", "umask",
        "unalias", "unset", "wait",
    };

    // Variables bash reads at start-up or sets itself: with any of them in the environment, bash decides.
    private static readonly HashSet<string> s_shellVariables = new(StringComparer.Ordinal)
    {
        "ENV", "SHELLOPTS", "POSIXLY_CORRECT", "EXECIGNORE", "SHLVL", "PWD", "OLDPWD", "IFS", "PPID", "UID", "EUID",
        "GROUPS", "HOSTNAME", "HOSTTYPE", "MACHTYPE", "OSTYPE", "OPTIND", "OPTERR", "LINENO", "SECONDS", "RANDOM",
        "SRANDOM", "HISTCMD", "PIPESTATUS", "EPOCHSECONDS", "EPOCHREALTIME", "PS4", "GLOBIGNORE", "CDPATH",
        "TMOUT", "FUNCNAME", "DIRSTACK", "_",
    };

    /// <summary>The command line as plain words, or null when it has any shell syntax (or is empty).</summary>
    public static string[]? SplitPlainWords(string line)
    {
        var words = new List<string>();
        var start = -1;
        for (var i = 0; i <= line.Length; i++)
        {
            var c = i < line.Length ? line[i] : ' ';
            if (c is ' ' or '\t')
            {
                if (start >= 0)
                {
                    words.Add(line[start..i]);
                    start = -1;
                }

                continue;
            }

            if (!IsPlain(c))
            {
                return null;
            }

            if (start < 0)
            {
                start = i;
            }
        }

        return words.Count > 0 ? [.. words] : null;
    }

    private static bool IsPlain(char c) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '.' or '/' or ',' or ':' or '+' or '@' or '%' or '=' or '-';

    /// <summary>
    /// True when the first word is run as an external program by bash (or is a builtin that behaves
    /// exactly as the program of that name with these arguments).
    /// </summary>
    public static bool IsExternalCommand(string[] words)
    {
        var first = words[0];
        if (first[0] is '-' or '%' || first.Contains('=') || s_keywords.Contains(first))
        {
            return false;
        }

        if (!s_builtins.Contains(first))
        {
            return true;
        }

        return first switch
        {
            // The builtins ignore arguments; coreutils' programs answer --help and --version.
            "true" or "false" => words.Length == 1,
            // No option and no backslash (excluded above): both print the words and a newline.
            "echo" => words.Skip(1).All(w => w[0] != '-'),
            _ => false,
        };
    }

    /// <summary>True when nothing in the environment changes what bash does or exports.</summary>
    public static bool EnvironmentAllows(IReadOnlyDictionary<string, string> env)
    {
        foreach (var key in env.Keys)
        {
            if (!IsIdentifier(key) || key.StartsWith("BASH", StringComparison.Ordinal) || key.StartsWith("COMP_", StringComparison.Ordinal) || s_shellVariables.Contains(key))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsIdentifier(string name)
    {
        if (name.Length == 0 || name[0] is >= '0' and <= '9')
        {
            return false;
        }

        foreach (var c in name)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>An absolute path with no empty, <c>.</c> or <c>..</c> component and no trailing slash.</summary>
    public static bool IsNormalAbsolute(string path)
    {
        if (path == "/")
        {
            return true;
        }

        if (path.Length < 2 || path[0] != '/' || path[^1] == '/')
        {
            return false;
        }

        foreach (var part in path[1..].Split('/'))
        {
            if (part is "" or "." or "..")
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The direct form of <c>bash -c <paramref name="line"/></c>: (argv, the variables bash would add), or
    /// null when bash must run it. <paramref name="env"/> is the environment bash would have been given.
    /// </summary>
    public static (string[] Argv, KeyValuePair<string, string>[] Added)? Plan(
        string line, IReadOnlyDictionary<string, string> env, string cwd, SandboxUser user, ISandboxFileSystem fs)
    {
        if (line.Length > 4096 || SplitPlainWords(line) is not { } words || !IsExternalCommand(words) || !EnvironmentAllows(env))
        {
            return null;
        }

        if (!env.TryGetValue("PATH", out var path) || !IsNormalAbsolute(cwd))
        {
            return null;
        }

        var program = words[0];
        string found;
        if (program.Contains('/'))
        {
            // Run as given, relative to the cwd; bash exports the word itself as `_`.
            var relative = program.StartsWith("./", StringComparison.Ordinal) ? program[2..] : program;
            var full = program[0] == '/' ? program : (cwd == "/" ? "/" : cwd + "/") + relative;
            if (fs.ProbeExecutable(full) is not { } probe || !Runnable(probe, user))
            {
                return null;
            }

            found = program;
        }
        else
        {
            found = "";
            ulong inode = 0;
            foreach (var dir in path.Split(':'))
            {
                // An empty or relative entry means the cwd, a trailing slash changes `_`: leave those to bash.
                if (!IsNormalAbsolute(dir))
                {
                    return null;
                }

                var candidate = (dir == "/" ? "" : dir) + "/" + program;
                if (fs.ProbeExecutable(candidate) is not { } probe)
                {
                    continue;
                }

                // A later entry of that name could be run by the child's execvp if this one failed
                // to exec: only the same file again (merged /usr: /bin is /usr/bin) is fine.
                if (found.Length > 0)
                {
                    if (!probe.Probed || probe.Inode != inode)
                    {
                        return null;
                    }

                    continue;
                }

                // A first entry bash would skip (not executable, a directory): bash decides.
                if (!Runnable(probe, user))
                {
                    return null;
                }

                found = candidate;
                inode = probe.Inode;
            }

            if (found.Length == 0)
            {
                return null;
            }
        }

        if (!fs.IsPhysicalDirectory(cwd))
        {
            return null;
        }

        return (words, [new("PWD", cwd), new("SHLVL", "0"), new("_", found)]);
    }

    private static bool Runnable(ExecutableProbe probe, SandboxUser user) => probe.ExecutableBy(user) && probe.KnownFormat;
}
