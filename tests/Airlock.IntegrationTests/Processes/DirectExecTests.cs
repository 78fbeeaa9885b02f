using System.Net.Http.Json;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Processes;

/// <summary>
/// The exec fast path (plain words run without bash, Airlock.Core.Processes.DirectExec) answers as
/// bash does: each command is run as is (fast path) and with a trailing comment (` #`, which always
/// goes through bash) and both answers must match: exit code, stdout, stderr. One difference is
/// allowed: the environment holds the same variables in a different order, so `env` output is
/// compared sorted, and Exec_Environment_FastPathAddsBashVariablesLast tells the paths apart by it.
/// </summary>
public sealed class DirectExecTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    private async Task<(int Exit, string Stdout, string Stderr)> ExecAsync(string id, string cmd, string? cwd = null, string? user = null)
    {
        using var cts = Api.NewTimeout();
        var response = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd, cwd, user }, cts.Token);
        var text = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(response.IsSuccessStatusCode, $"exec {cmd}: {(int)response.StatusCode} {text}");
        var json = JsonDocument.Parse(text).RootElement;
        return (json.GetProperty("exitCode").GetInt32(), json.GetProperty("stdout").GetString()!, json.GetProperty("stderr").GetString()!);
    }

    private async Task AssertSameAsBashAsync(string id, string cmd, string? cwd = null, string? user = null, bool sortLines = false)
    {
        var direct = await ExecAsync(id, cmd, cwd, user);
        var bash = await ExecAsync(id, cmd + " #", cwd, user);
        string Norm(string s) => sortLines ? string.Join('\n', s.Split('\n').Order(StringComparer.Ordinal)) : s;
        Assert.Equal(bash.Exit, direct.Exit);
        Assert.Equal(Norm(bash.Stdout), Norm(direct.Stdout));
        Assert.Equal(bash.Stderr, direct.Stderr);
    }

    [Fact]
    public async Task Exec_PlainCommands_SameAsBash()
    {
        await _client.WithSandboxAsync(async id =>
        {
            foreach (var cmd in new[] { "true", "false", "echo a  b", "ls -a /", "id", "cat /etc/hostname", "sh -c exit", "ls /nonexistent", "sudo -n id -u", "/usr/bin/printf x" })
            {
                await AssertSameAsBashAsync(id, cmd);
            }
        });
    }

    [Fact]
    public async Task Exec_Environment_SameAsBash()
    {
        await _client.WithSandboxAsync(async id =>
        {
            // PWD (the physical cwd), SHLVL (0: bash execs the last command in place) and `_` (the path found).
            await AssertSameAsBashAsync(id, "env", sortLines: true);
            await AssertSameAsBashAsync(id, "env", cwd: "/tmp", sortLines: true);
            await AssertSameAsBashAsync(id, "env", cwd: "/", user: "root", sortLines: true);
            await AssertSameAsBashAsync(id, "/usr/bin/env", sortLines: true);
            var env = await ExecAsync(id, "env", cwd: "/tmp");
            Assert.Contains("PWD=/tmp\n", env.Stdout);
            Assert.Contains("SHLVL=0\n", env.Stdout);
            Assert.Contains("_=/usr/bin/env\n", env.Stdout);
        });
    }

    [Fact]
    public async Task Exec_Environment_FastPathAddsBashVariablesLast()
    {
        await _client.WithSandboxAsync(async id =>
        {
            // The same variables as bash, in a different order: the request's as built (PATH first), then
            // the three bash would add. bash exports them in its own hash order (PWD first, PATH
            // between SHLVL and _), so this fails whenever the fast path is not taken.
            var direct = await ExecAsync(id, "env", cwd: "/tmp");
            Assert.StartsWith("PATH=", direct.Stdout);
            Assert.EndsWith("\nPWD=/tmp\nSHLVL=0\n_=/usr/bin/env\n", direct.Stdout);
            await AssertSameAsBashAsync(id, "env", cwd: "/tmp", sortLines: true);
        });
    }

    [Fact]
    public async Task Exec_CwdThroughSymlink_BashExportsPhysicalPwd()
    {
        await _client.WithSandboxAsync(async id =>
        {
            // /bin is a symlink to usr/bin: bash exports getcwd(), not the path asked for.
            var env = await ExecAsync(id, "env", cwd: "/bin");
            Assert.Contains("PWD=/usr/bin", env.Stdout.Split('\n'));
            await AssertSameAsBashAsync(id, "env", cwd: "/bin", sortLines: true);
        });
    }

    [Fact]
    public async Task Exec_Scripts_SameAsBash()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var setup = await ExecAsync(
                id,
                "cd ~ && printf '#!/bin/sh\\necho script $0 \"$@\"\\n' > ok.sh && printf 'echo bash=${BASH_VERSION:+yes}\\n' > noshebang "
                + "&& printf '#!/nonexistent/interp\\n' > badinterp && chmod +x ok.sh noshebang badinterp && mkdir -p bin "
                + "&& printf '#!/bin/sh\\necho mine\\n' > bin/ls && chmod +x bin/ls && printf 'x' > plain.txt");
            Assert.Equal(0, setup.Exit);

            await AssertSameAsBashAsync(id, "./ok.sh a b");
            await AssertSameAsBashAsync(id, "/home/user/ok.sh");
            // No #!: bash runs it as a bash script (glibc's execvp would use /bin/sh): bash must decide.
            var noShebang = await ExecAsync(id, "./noshebang");
            Assert.Equal("bash=yes\n", noShebang.Stdout);
            // The interpreter is missing: the direct exec fails and bash reports it its own way.
            await AssertSameAsBashAsync(id, "./badinterp");
            await AssertSameAsBashAsync(id, "./plain.txt");
            await AssertSameAsBashAsync(id, "bin/ls");
        });
    }

    [Fact]
    public async Task Exec_MissingCommand_BashMessageAnd127()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var result = await ExecAsync(id, "nosuchcommand arg");
            Assert.Equal(127, result.Exit);
            Assert.Equal("/bin/bash: line 1: nosuchcommand: command not found\n", result.Stderr);
            await AssertSameAsBashAsync(id, "./missing");
        });
    }

    [Fact]
    public async Task Exec_PathLookup_FirstMatchAsBash()
    {
        await _client.WithSandboxAsync(async id =>
        {
            // A program earlier on PATH shadows /usr/bin's; a non-executable file earlier on PATH is skipped by bash.
            var setup = await ExecAsync(
                id,
                "printf '#!/bin/sh\\necho shadow\\n' > /usr/local/bin/whoami && chmod +x /usr/local/bin/whoami "
                + "&& printf 'x' > /usr/local/bin/hostname && chmod 644 /usr/local/bin/hostname",
                user: "root");
            Assert.Equal(0, setup.Exit);
            Assert.Equal("shadow\n", (await ExecAsync(id, "whoami")).Stdout);
            await AssertSameAsBashAsync(id, "whoami");
            await AssertSameAsBashAsync(id, "hostname");
            await AssertSameAsBashAsync(id, "env", sortLines: true);
        });
    }
}
