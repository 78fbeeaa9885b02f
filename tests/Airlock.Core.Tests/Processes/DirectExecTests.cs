using Airlock.Core.Files;
using Airlock.Core.Processes;
using Airlock.Core.Sandboxes;

namespace Airlock.Core.Tests.Processes;

/// <summary>
/// The `bash -c` fast path: every piece of shell syntax, every builtin/keyword, every environment
/// and filesystem condition that bash could treat differently sends the command to bash.
/// </summary>
public sealed class DirectExecTests
{
    private const string Path = "/usr/local/bin:/usr/bin:/bin";
    private static readonly SandboxUser s_user = new("user", 1000, 1000, "/home/user");
    private static readonly SandboxUser s_root = new("root", 0, 0, "/root");

    private static ExecutableProbe Elf(ulong inode = 1, int mode = 0x1ED /* 0755 */, int uid = 0, int gid = 0) =>
        new(true, true, mode, uid, gid, true, inode);

    private sealed class FakeFs(Dictionary<string, ExecutableProbe> files, params string[] dirs) : ISandboxFileSystem
    {
        public HashSet<string> PhysicalDirs { get; } = [.. dirs];

        public ExecutableProbe? ProbeExecutable(string path) => files.TryGetValue(path, out var p) ? p : null;

        public bool IsPhysicalDirectory(string path) => PhysicalDirs.Contains(path);

        public FileStamp? GetStamp(string path) => null;

        public string? ReadSmallText(string path) => null;

        public Stream OpenRead(string path) => throw new NotSupportedException();

        public Stream OpenWrite(string path, SandboxUser owner) => throw new NotSupportedException();

        public FileEntry Stat(string path) => throw new NotSupportedException();

        public IReadOnlyList<FileEntry> List(string path, int depth) => throw new NotSupportedException();

        public bool MakeDirectory(string path, SandboxUser owner) => throw new NotSupportedException();

        public void Move(string source, string destination, SandboxUser owner) => throw new NotSupportedException();

        public void Remove(string path) => throw new NotSupportedException();

        public IFileWatch Watch(string path, bool recursive) => throw new NotSupportedException();
    }

    private static FakeFs StandardFs() => new(
        new Dictionary<string, ExecutableProbe>
        {
            ["/usr/bin/true"] = Elf(10),
            ["/bin/true"] = Elf(10), // merged /usr: the same file
            ["/usr/bin/ls"] = Elf(11),
            ["/bin/ls"] = Elf(11),
            ["/usr/bin/echo"] = Elf(12),
            ["/usr/bin/python3"] = Elf(13),
            ["/home/user/run.sh"] = new(true, true, 0x1ED, 1000, 1000, true, 20),
        },
        "/", "/home/user", "/tmp");

    private static Dictionary<string, string> Env(params (string Key, string Value)[] extra)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal) { ["PATH"] = Path, ["HOME"] = "/home/user", ["USER"] = "user", ["LOGNAME"] = "user" };
        foreach (var (k, v) in extra)
        {
            env[k] = v;
        }

        return env;
    }

    private static (string[] Argv, KeyValuePair<string, string>[] Added)? Plan(string line, Dictionary<string, string>? env = null, string cwd = "/home/user", SandboxUser? user = null, FakeFs? fs = null) =>
        DirectExec.Plan(line, env ?? Env(), cwd, user ?? s_user, fs ?? StandardFs());

    [Theory]
    [InlineData("true", new[] { "true" })]
    [InlineData("  ls   -la\t/tmp  ", new[] { "ls", "-la", "/tmp" })]
    [InlineData("python3 -m http.server 8080", new[] { "python3", "-m", "http.server", "8080" })]
    [InlineData("dd if=/dev/zero of=x bs=1M count=1", new[] { "dd", "if=/dev/zero", "of=x", "bs=1M", "count=1" })]
    [InlineData("a,b:c+d@e%f_g.h/i-j", new[] { "a,b:c+d@e%f_g.h/i-j" })]
    public void SplitPlainWords_PlainWords_Splits(string line, string[] expected) =>
        Assert.Equal(expected, DirectExec.SplitPlainWords(line));

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("echo 'a'")] // quotes
    [InlineData("echo \"a\"")]
    [InlineData("echo $HOME")] // parameter expansion
    [InlineData("echo ${HOME}")]
    [InlineData("echo `id`")] // command substitution
    [InlineData("echo $(id)")]
    [InlineData("echo a\\ b")] // escape
    [InlineData("ls *.txt")] // globs
    [InlineData("ls ?")]
    [InlineData("ls [ab]")]
    [InlineData("ls ~")] // tilde
    [InlineData("ls ~/x")]
    [InlineData("echo {a,b}")] // braces
    [InlineData("true; false")] // lists and operators
    [InlineData("true && false")]
    [InlineData("true || false")]
    [InlineData("sleep 1 &")]
    [InlineData("ls | wc")]
    [InlineData("(true)")]
    [InlineData("echo a > f")] // redirections
    [InlineData("cat < f")]
    [InlineData("true 2>&1")]
    [InlineData("true # comment")] // comments
    [InlineData("#true")]
    [InlineData("! true")] // negation
    [InlineData("true\nfalse")] // newline
    [InlineData("true\rx")]
    [InlineData("echo é")] // non-ASCII
    [InlineData("echo a^b")]
    [InlineData("echo a]")]
    public void SplitPlainWords_ShellSyntax_ReturnsNull(string line) => Assert.Null(DirectExec.SplitPlainWords(line));

    [Theory]
    [InlineData("if")]
    [InlineData("time ls")] // a keyword even though /usr/bin/time exists
    [InlineData("function")]
    [InlineData("coproc ls")]
    [InlineData("cd /tmp")] // builtins
    [InlineData("exec ls")]
    [InlineData("command ls")]
    [InlineData("builtin echo")]
    [InlineData("kill 1")]
    [InlineData("test -f x")]
    [InlineData("pwd")]
    [InlineData("printf x")]
    [InlineData("source x")]
    [InlineData(". x")]
    [InlineData(":")]
    [InlineData("export A")]
    [InlineData("exit 3")]
    [InlineData("true --help")] // /bin/true answers --help, the builtin does not
    [InlineData("false --version")]
    [InlineData("echo -n a")] // builtin and /bin/echo options differ (--help)
    [InlineData("echo a --help")]
    [InlineData("A=1 env")] // assignment before the command
    [InlineData("A=1")]
    [InlineData("%1")] // job spec
    [InlineData("-x")]
    public void IsExternalCommand_BuiltinKeywordOrAssignment_ReturnsFalse(string line) =>
        Assert.False(DirectExec.IsExternalCommand(DirectExec.SplitPlainWords(line)!));

    [Theory]
    [InlineData("true")]
    [InlineData("false")]
    [InlineData("echo hello world")]
    [InlineData("ls -la")]
    [InlineData("/usr/bin/env")]
    [InlineData("./run.sh a=b")]
    public void IsExternalCommand_Program_ReturnsTrue(string line) =>
        Assert.True(DirectExec.IsExternalCommand(DirectExec.SplitPlainWords(line)!));

    [Theory]
    [InlineData("BASH_ENV")]
    [InlineData("BASH_FUNC_ls%%")]
    [InlineData("BASHOPTS")]
    [InlineData("ENV")]
    [InlineData("SHELLOPTS")]
    [InlineData("POSIXLY_CORRECT")]
    [InlineData("EXECIGNORE")]
    [InlineData("SHLVL")]
    [InlineData("PWD")]
    [InlineData("OLDPWD")]
    [InlineData("IFS")]
    [InlineData("PS4")]
    [InlineData("GLOBIGNORE")]
    [InlineData("CDPATH")]
    [InlineData("UID")]
    [InlineData("HOSTNAME")]
    [InlineData("COMP_WORDS")]
    [InlineData("_")]
    [InlineData("A-B")] // not an identifier
    [InlineData("1A")]
    public void Plan_ShellVariableInEnvironment_ReturnsNull(string key)
    {
        Assert.False(DirectExec.EnvironmentAllows(Env((key, "x"))));
        Assert.Null(Plan("true", Env((key, "x"))));
    }

    [Fact]
    public void Plan_PlainProgram_ExecsWithBashEnvironment()
    {
        var plan = Plan("ls -la /tmp");
        Assert.NotNull(plan);
        Assert.Equal(["ls", "-la", "/tmp"], plan.Value.Argv);
        Assert.Equal(
            [new("PWD", "/home/user"), new("SHLVL", "0"), new("_", "/usr/bin/ls")],
            plan.Value.Added);
    }

    [Fact]
    public void Plan_SlashWord_RelativeToCwdAndUnderscoreAsTyped()
    {
        var plan = Plan("./run.sh x");
        Assert.NotNull(plan);
        Assert.Equal(["./run.sh", "x"], plan.Value.Argv);
        Assert.Contains(new KeyValuePair<string, string>("_", "./run.sh"), plan.Value.Added);
        Assert.NotNull(Plan("/usr/bin/ls"));
    }

    [Fact]
    public void Plan_MissingProgram_ReturnsNull()
    {
        Assert.Null(Plan("nosuchcommand"));
        Assert.Null(Plan("./missing"));
        Assert.Null(Plan("/nope/ls"));
    }

    [Fact]
    public void Plan_NoPathOrRelativePathEntry_ReturnsNull()
    {
        var env = Env();
        env.Remove("PATH");
        Assert.Null(Plan("ls", env));
        Assert.Null(Plan("ls", Env(("PATH", "bin:/usr/bin"))));
        Assert.Null(Plan("ls", Env(("PATH", ":/usr/bin"))));
        Assert.Null(Plan("ls", Env(("PATH", "/usr/bin/"))));
        Assert.Null(Plan("ls", Env(("PATH", "/usr/../usr/bin"))));
        // Without PATH bash makes up its own default: even a slash word goes to bash.
        Assert.Null(Plan("/usr/bin/ls", env));
    }

    [Fact]
    public void Plan_SecondDifferentFileOnPath_ReturnsNull()
    {
        var fs = StandardFs();
        var files = new Dictionary<string, ExecutableProbe> { ["/usr/local/bin/ls"] = Elf(99), ["/usr/bin/ls"] = Elf(11) };
        Assert.Null(Plan("ls", fs: new FakeFs(files, "/home/user")));
        // The same file twice (merged /usr) is fine, and the first one is what bash reports as `_`.
        Assert.NotNull(Plan("true", fs: fs));
    }

    [Fact]
    public void Plan_FirstEntryNotRunnable_ReturnsNull()
    {
        Dictionary<string, ExecutableProbe> With(ExecutableProbe first) =>
            new() { ["/usr/local/bin/tool"] = first, ["/usr/bin/tool"] = Elf(2) };

        // Bash skips a non-executable file or a directory and runs a later one: bash decides.
        Assert.Null(Plan("tool", fs: new FakeFs(With(Elf(1, mode: 0x1A4 /* 0644 */)), "/home/user")));
        Assert.Null(Plan("tool", fs: new FakeFs(With(new(true, false, 0x1ED, 0, 0, false, 1)), "/home/user")));
        // Could not be examined (EACCES, EXDEV...).
        Assert.Null(Plan("tool", fs: new FakeFs(With(default), "/home/user")));
    }

    [Fact]
    public void Plan_ScriptWithoutShebang_ReturnsNull()
    {
        // bash runs it as a bash script, glibc's execvp as /bin/sh: never shortcut.
        var files = new Dictionary<string, ExecutableProbe> { ["/home/user/x"] = new(true, true, 0x1ED, 1000, 1000, false, 5) };
        Assert.Null(Plan("./x", fs: new FakeFs(files, "/home/user")));
    }

    [Theory]
    [InlineData(0x1C0 /* 0700 */, 1000, 1000, true)] // owner x
    [InlineData(0x1C0, 0, 0, false)] // not the owner, no group/other x
    [InlineData(0x1A4 /* 0644 */, 1000, 1000, false)]
    [InlineData(0x1F8 /* 0770 */, 0, 1000, true)] // group x
    [InlineData(0x1E5 /* 0745 */, 0, 1000, false)] // the group bits decide for a group member
    [InlineData(0x105 /* 0405 */, 1000, 0, false)] // the owner bits decide for the owner
    [InlineData(0x1ED, 0, 0, true)] // other x
    public void ExecutableBy_ModeBits_AsTheKernel(int mode, int uid, int gid, bool expected) =>
        Assert.Equal(expected, new ExecutableProbe(true, true, mode, uid, gid, true, 1).ExecutableBy(s_user));

    [Fact]
    public void ExecutableBy_Root_AnyExecuteBit()
    {
        Assert.True(new ExecutableProbe(true, true, 0x001, 1000, 1000, true, 1).ExecutableBy(s_root));
        Assert.False(new ExecutableProbe(true, true, 0x1B6 /* 0666 */, 1000, 1000, true, 1).ExecutableBy(s_root));
    }

    [Theory]
    [InlineData("/home/user/")]
    [InlineData("/home//user")]
    [InlineData("/home/./user")]
    [InlineData("/home/user/..")]
    [InlineData("home/user")]
    [InlineData("/linked")] // not a physical directory (a symlink on the way)
    public void Plan_CwdNotPhysicalPath_ReturnsNull(string cwd) => Assert.Null(Plan("ls", cwd: cwd));

    [Fact]
    public void Plan_RootCwd_Works()
    {
        var plan = Plan("ls", cwd: "/", user: s_root);
        Assert.NotNull(plan);
        Assert.Contains(new KeyValuePair<string, string>("PWD", "/"), plan.Value.Added);
        Assert.NotNull(Plan("./usr/bin/ls", cwd: "/"));
    }

    [Fact]
    public void Plan_LongLine_ReturnsNull() => Assert.Null(Plan("echo " + new string('a', 5000)));
}
