using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Processes;

/// <summary>
/// Long-lived processes over the native API (the E2B process model): start → data* → end,
/// selection by pid or tag, re-attach with replay, stdin, signals, timeouts, env, users, pty.
/// </summary>
public sealed partial class ProcessApiTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly TimeSpan s_short = TimeSpan.FromSeconds(20);
    private readonly HttpClient _client = fixture.Client;

    [Fact]
    public async Task Start_EveryField_Returns201WithProcess()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsJsonAsync(
                Url(id),
                new { cmd = "sleep 100", cwd = "/tmp", env = new Dictionary<string, string> { ["X"] = "1" }, user = "user", tag = "full", stdin = true, timeoutSeconds = 300 },
                cts.Token);
            var text = await response.Content.ReadAsStringAsync(cts.Token);
            Assert.True(response.StatusCode == HttpStatusCode.Created, text);
            var json = JsonDocument.Parse(text).RootElement;
            Assert.True(json.GetProperty("pid").GetInt32() > 0);
            Assert.Equal("full", json.GetProperty("tag").GetString());
            Assert.Equal("sleep 100", json.GetProperty("cmd").GetString());
            Assert.Equal("/tmp", json.GetProperty("cwd").GetString());
            Assert.False(json.GetProperty("pty").GetBoolean());
            Assert.True(json.GetProperty("running").GetBoolean());
            Assert.Equal(JsonValueKind.Null, json.GetProperty("exitCode").ValueKind);
        });
    }

    [Fact]
    public async Task Start_WithArgs_ExecsProgramDirectly()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "/bin/echo", args = new[] { "a b", "$HOME" } });
            var events = await ReadToEndAsync(id, pid.ToString());
            Assert.Equal("a b $HOME\n", Stdout(events));
        });
    }

    [Fact]
    public async Task List_ShowsRunningProcessesOnly()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var sleeper = await StartAsync(id, new { cmd = "sleep 100", tag = "sleeper" });
            var quick = await StartAsync(id, new { cmd = "true" });
            await ReadToEndAsync(id, quick.ToString());

            using var cts = Api.NewTimeout();
            var list = await (await _client.GetAsync(Url(id), cts.Token)).JsonAsync();
            var pids = list.EnumerateArray().Select(p => p.GetProperty("pid").GetInt32()).ToList();
            Assert.Contains(sleeper, pids);
            Assert.DoesNotContain(quick, pids);
            Assert.All(list.EnumerateArray(), p => Assert.True(p.GetProperty("running").GetBoolean()));
        });
    }

    [Fact]
    public async Task Get_ByPidAndByTag_ReturnsTheSameProcess()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "sleep 100", tag = "web" });
            using var cts = Api.NewTimeout();
            var byPid = await (await _client.GetAsync(Url(id, pid.ToString()), cts.Token)).JsonAsync();
            var byTag = await (await _client.GetAsync(Url(id, "web"), cts.Token)).JsonAsync();
            Assert.Equal(pid, byPid.GetProperty("pid").GetInt32());
            Assert.Equal(pid, byTag.GetProperty("pid").GetInt32());
            Assert.Equal("web", byPid.GetProperty("tag").GetString());

            var missing = await _client.GetAsync(Url(id, "nosuchtag"), cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            Assert.Equal("not_found", (await missing.JsonAsync()).GetProperty("code").GetString());
        });
    }

    [Fact]
    public async Task Events_FinishedProcess_ReplaysOutputThenReportsExit()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "echo out; echo err >&2; exit 3" });
            await WaitUntilFinishedAsync(id, pid.ToString());

            // Attached only after the exit: everything since the start is still there.
            var events = await ReadToEndAsync(id, pid.ToString());
            Assert.Equal("start", events[0].Name);
            Assert.Equal(pid, events[0].Data.GetProperty("pid").GetInt32());
            Assert.Equal("end", events[^1].Name);
            Assert.All(events[1..^1], e => Assert.Contains(e.Name, new[] { "stdout", "stderr" }));
            Assert.Equal("out\n", Stdout(events));
            Assert.Equal("err\n", Text(events, "stderr"));
            Assert.Equal(3, events[^1].Data.GetProperty("exitCode").GetInt32());
            Assert.Equal("exit status 3", events[^1].Data.GetProperty("status").GetString());

            using var cts = Api.NewTimeout();
            var info = await (await _client.GetAsync(Url(id, pid.ToString()), cts.Token)).JsonAsync();
            Assert.False(info.GetProperty("running").GetBoolean());
            Assert.Equal(3, info.GetProperty("exitCode").GetInt32());
        });
    }

    [Fact]
    public async Task Events_RunningProcess_StreamsLiveOutput()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "echo one; read x; echo got $x", stdin = true });
            using var cts = Api.NewTimeout();
            using var response = await OpenEventsAsync(id, pid.ToString(), cts.Token);
            var seen = new StringBuilder();
            var names = new List<string>();
            var sent = false;
            await foreach (var e in Sse.ReadAsync(response, cts.Token))
            {
                names.Add(e.Name);
                if (e.Name == "stdout")
                {
                    seen.Append(e.Data.GetProperty("data").GetString());
                }

                if (!sent && seen.ToString().Contains("one\n", StringComparison.Ordinal))
                {
                    // The output so far arrived while the process still waits for input: it is live.
                    sent = true;
                    await SendStdinAsync(id, pid.ToString(), "live\n");
                }

                if (e.Name == "end")
                {
                    Assert.Equal(0, e.Data.GetProperty("exitCode").GetInt32());
                    break;
                }
            }

            Assert.Equal("start", names[0]);
            Assert.Equal("end", names[^1]);
            Assert.Equal("one\ngot live\n", seen.ToString());
        });
    }

    [Fact]
    public async Task Events_ReplayFalse_StartsFromNow()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "echo old; read x; echo new", stdin = true });
            await ReadUntilAsync(id, pid.ToString(), "old\n");
            using var cts = Api.NewTimeout();
            using var response = await _client.GetAsync(Url(id, pid.ToString()) + "/events?replay=false", HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var events = new List<SseEvent>();
            await foreach (var e in Sse.ReadAsync(response, cts.Token))
            {
                events.Add(e);
                if (e.Name == "start")
                {
                    await SendStdinAsync(id, pid.ToString(), "\n");
                }
            }

            Assert.Equal("new\n", Stdout(events));
            Assert.Equal("end", events[^1].Name);
        });
    }

    [Fact]
    public async Task Events_MultiByteCharacterSplitAcrossWrites_ArrivesWhole()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "printf '\\xe2\\x82'; sleep 0.2; printf '\\xac\\n'" });
            Assert.Equal("\u20ac\n", Stdout(await ReadToEndAsync(id, pid.ToString())));
        });
    }

    [Fact]
    public async Task Get_TagReused_SelectsTheNewestProcess()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var first = await StartAsync(id, new { cmd = "true", tag = "job" });
            await WaitUntilFinishedAsync(id, first.ToString());
            var second = await StartAsync(id, new { cmd = "sleep 100", tag = "job" });
            using var cts = Api.NewTimeout();
            var info = await (await _client.GetAsync(Url(id, "job"), cts.Token)).JsonAsync();
            Assert.Equal(second, info.GetProperty("pid").GetInt32());
            Assert.True(info.GetProperty("running").GetBoolean());
        });
    }

    [Fact]
    public async Task Events_TwoConcurrentReaders_BothGetEverything()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done" });
            var a = ReadToEndAsync(id, pid.ToString());
            var b = ReadToEndAsync(id, pid.ToString());
            var both = await Task.WhenAll(a, b).WaitAsync(Api.Timeout, TestContext.Current.CancellationToken);
            Assert.All(both, events =>
            {
                Assert.Equal("1\n2\n3\n4\n5\n", Stdout(events));
                Assert.Equal("end", events[^1].Name);
            });
        });
    }

    [Fact]
    public async Task Stdin_WriteThenClose_CatEchoesAndExits0()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "cat", stdin = true, tag = "cat" });
            await SendStdinAsync(id, "cat", "hello\n");
            await SendStdinAsync(id, pid.ToString(), new byte[] { 0, 1, 0xff, (byte)'\n' });
            using var cts = Api.NewTimeout();
            Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync(Url(id, "cat") + "/stdin", cts.Token)).StatusCode);

            var events = await ReadToEndAsync(id, pid.ToString());
            Assert.StartsWith("hello\n", Stdout(events), StringComparison.Ordinal);
            Assert.Equal(0, events[^1].Data.GetProperty("exitCode").GetInt32());
        });
    }

    [Fact]
    public async Task Stdin_ProcessStartedWithout_Answers400()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "sleep 100" });
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsync(Url(id, pid.ToString()) + "/stdin", new ByteArrayContent("x"u8.ToArray()), cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("stdin_closed", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }

    [Theory]
    [InlineData("{\"signal\":\"SIGTERM\"}", 15, "signal: terminated")]
    [InlineData("{\"signal\":15}", 15, "signal: terminated")]
    [InlineData("{\"signal\":\"INT\"}", 2, "signal: interrupt")]
    [InlineData("", 9, "signal: killed")]
    public async Task Signal_RunningProcess_EndsWithThatSignal(string body, int signal, string status)
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "sleep 100" });
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsync(Url(id, pid.ToString()) + "/signal", new StringContent(body, Encoding.UTF8, "application/json"), cts.Token);
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);

            var end = (await ReadToEndAsync(id, pid.ToString()))[^1];
            Assert.Equal("end", end.Name);
            Assert.Equal(signal, end.Data.GetProperty("signal").GetInt32());
            Assert.Equal(-1, end.Data.GetProperty("exitCode").GetInt32());
            Assert.Equal(status, end.Data.GetProperty("status").GetString());

            var info = await (await _client.GetAsync(Url(id, pid.ToString()), cts.Token)).JsonAsync();
            Assert.Equal(signal, info.GetProperty("signal").GetInt32());
        });
    }

    [Fact]
    public async Task Signal_FinishedOrUnknownProcess_Answers404Problem()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "true" });
            await WaitUntilFinishedAsync(id, pid.ToString());
            using var cts = Api.NewTimeout();
            foreach (var selector in new[] { pid.ToString(), "999999", "no-such-tag" })
            {
                var response = await _client.PostAsJsonAsync(Url(id, selector) + "/signal", new { signal = "SIGTERM" }, cts.Token);
                Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
                Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                Assert.Equal("not_found", (await response.JsonAsync()).GetProperty("code").GetString());
            }
        });
    }

    [Fact]
    public async Task Signal_Unsupported_Answers400()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "sleep 100" });
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsJsonAsync(Url(id, pid.ToString()) + "/signal", new { signal = 31 }, cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("invalid_argument", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }

    [Fact]
    public async Task Start_TimeoutSeconds_KillsTheProcess()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var started = DateTime.UtcNow;
            var pid = await StartAsync(id, new { cmd = "sleep 60", timeoutSeconds = 1 });
            var end = (await ReadToEndAsync(id, pid.ToString()))[^1];
            Assert.Equal(9, end.Data.GetProperty("signal").GetInt32());
            Assert.Equal("deadline exceeded", end.Data.GetProperty("error").GetString());
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(15));
        });
    }

    [Theory]
    [InlineData("{\"cmd\":\"true\",\"cwd\":\"/does/not/exist\"}")]
    [InlineData("{\"cmd\":\"true\",\"user\":\"nobody-here\"}")]
    [InlineData("{\"cmd\":\"\"}")]
    [InlineData("{\"cmd\":\"true\",\"timeoutSeconds\":-1}")]
    [InlineData("{\"cmd\":\"true\",\"pty\":{\"cols\":0,\"rows\":24}}")]
    public async Task Start_BadInput_Answers400InvalidArgument(string body)
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsync(Url(id), new StringContent(body, Encoding.UTF8, "application/json"), cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("invalid_argument", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }

    [Fact]
    public async Task Start_Cwd_RelativeResolvesUnderHome()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "mkdir -p ~/proj");
            var pid = await StartAsync(id, new { cmd = "pwd", cwd = "proj" });
            Assert.Equal("/home/user/proj\n", Stdout(await ReadToEndAsync(id, pid.ToString())));
        });
    }

    [Fact]
    public async Task Start_Env_PerCommandOverridesSandboxWide()
    {
        var id = await _client.CreateSandboxAsync(new { env = new Dictionary<string, string> { ["A"] = "sandbox", ["B"] = "sandbox" } });
        try
        {
            var pid = await StartAsync(id, new { cmd = "echo $A $B $C", env = new Dictionary<string, string> { ["B"] = "cmd", ["C"] = "c" } });
            Assert.Equal("sandbox cmd c\n", Stdout(await ReadToEndAsync(id, pid.ToString())));
        }
        finally
        {
            await _client.DeleteSandboxAsync(id);
        }
    }

    [Theory]
    [InlineData(null, "user 1000 /home/user")]
    [InlineData("user", "user 1000 /home/user")]
    [InlineData("root", "root 0 /root")]
    public async Task Start_User_RunsAsThatUserInItsHome(string? user, string expected)
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "echo $(whoami) $(id -u) $HOME", user });
            Assert.Equal(expected + "\n", Stdout(await ReadToEndAsync(id, pid.ToString())));
        });
    }

    [Fact]
    public async Task Start_UserAddedOrChangedInside_SeenByTheNextProcess()
    {
        // Users come from the sandbox's own /etc/passwd, parsed once and kept while the file's stamp
        // holds (LiveSandbox.ResolveUser): a cache that missed a change would refuse bob or keep his old uid.
        await _client.WithSandboxAsync(async id =>
        {
            async Task<(HttpStatusCode Status, JsonElement Body)> ExecAsBobAsync()
            {
                using var cts = Api.NewTimeout();
                // cwd /tmp: bob's home stays his old uid's after the sed below.
                var response = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/exec", new { cmd = "id -u", user = "bob", cwd = "/tmp" }, cts.Token);
                return (response.StatusCode, await response.JsonAsync());
            }

            var missing = await ExecAsBobAsync();
            Assert.Equal(HttpStatusCode.BadRequest, missing.Status);
            Assert.Equal("invalid_argument", missing.Body.GetProperty("code").GetString());

            Assert.Equal(0, (await _client.ExecAsync(id, "useradd -m bob", user: "root")).ExitCode);
            var added = await ExecAsBobAsync();
            Assert.Equal(HttpStatusCode.OK, added.Status);
            Assert.Equal("1001\n", added.Body.GetProperty("stdout").GetString());

            Assert.Equal(0, (await _client.ExecAsync(id, "sed -i s/^bob:x:1001:/bob:x:1234:/ /etc/passwd", user: "root")).ExitCode);
            var changed = await ExecAsBobAsync();
            Assert.Equal(HttpStatusCode.OK, changed.Status);
            Assert.Equal("1234\n", changed.Body.GetProperty("stdout").GetString());
        });
    }

    [Fact]
    public async Task Events_ClientDisconnectsMidStream_ProcessSurvivesAndReattachSeesLaterOutput()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "echo before; read x; echo after $x", stdin = true });
            using (var cts = Api.NewTimeout())
            {
                using var response = await OpenEventsAsync(id, pid.ToString(), cts.Token);
                await foreach (var e in Sse.ReadAsync(response, cts.Token))
                {
                    if (e.Name == "stdout")
                    {
                        break; // and hang up
                    }
                }
            }

            using var check = Api.NewTimeout();
            var info = await (await _client.GetAsync(Url(id, pid.ToString()), check.Token)).JsonAsync();
            Assert.True(info.GetProperty("running").GetBoolean());
            await SendStdinAsync(id, pid.ToString(), "x\n");

            var events = await ReadToEndAsync(id, pid.ToString());
            Assert.Equal("before\nafter x\n", Stdout(events));
            Assert.Equal(0, events[^1].Data.GetProperty("exitCode").GetInt32());
        });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Events_BackgroundChildHoldsOutput_EndIsNotHeldBack(bool pty)
    {
        await _client.WithSandboxAsync(async id =>
        {
            var started = DateTime.UtcNow;
            var pid = await StartAsync(id, new { cmd = "sleep 100 & echo done", pty = pty ? new { cols = 80, rows = 24 } : null });
            var events = await ReadToEndAsync(id, pid.ToString(), s_short);
            Assert.Equal(pty ? "done\r\n" : "done\n", Text(events, pty ? "pty" : "stdout"));
            Assert.Equal(0, events[^1].Data.GetProperty("exitCode").GetInt32());
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(15));
        });
    }

    [Fact]
    public async Task Pty_WebSocket_RunsCommandsResizesAndIsATty()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "/bin/bash", args = Array.Empty<string>(), pty = new { cols = 80, rows = 24 }, tag = "term" });
            using var cts = Api.NewTimeout();
            using var socket = await ConnectPtyAsync(id, "term", cts.Token);
            var output = new Terminal(socket, cts.Token);

            await socket.SendAsync("echo $((6*7))\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
            await output.WaitForAsync(s => Regex.IsMatch(s, @"(?<![0-9])42\r\n"), "42");

            await socket.SendAsync("{\"type\":\"resize\",\"cols\":100,\"rows\":40}"u8.ToArray(), WebSocketMessageType.Text, true, cts.Token);
            await socket.SendAsync("stty size\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
            await output.WaitForAsync(s => s.Contains("40 100", StringComparison.Ordinal), "40 100");

            await socket.SendAsync("tty\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
            await output.WaitForAsync(s => Regex.IsMatch(s, @"/dev/pts/\d+"), "/dev/pts/N");

            // Resize over HTTP too.
            var resize = await _client.PostAsJsonAsync(Url(id, pid.ToString()) + "/resize", new { cols = 120, rows = 50 }, cts.Token);
            Assert.Equal(HttpStatusCode.NoContent, resize.StatusCode);
            await socket.SendAsync("stty size\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
            await output.WaitForAsync(s => s.Contains("50 120", StringComparison.Ordinal), "50 120");

            // The shell exits; the socket closes with the exit in the reason.
            await socket.SendAsync("exit 4\n"u8.ToArray(), WebSocketMessageType.Binary, true, cts.Token);
            await output.Closed.WaitAsync(s_short, cts.Token);
            Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
            Assert.Equal("exit status 4", socket.CloseStatusDescription);
        });
    }

    [Fact]
    public async Task Pty_ReattachOverSse_ReplaysTerminalOutput()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "echo hi; tty; stty size", pty = new { cols = 77, rows = 33 } });
            var events = await ReadToEndAsync(id, pid.ToString());
            var pty = Text(events, "pty");
            Assert.Contains("hi\r\n", pty, StringComparison.Ordinal);
            Assert.Matches(@"/dev/pts/\d+", pty);
            Assert.Contains("33 77", pty, StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task Pty_OnProcessWithoutPty_Answers400()
    {
        await _client.WithSandboxAsync(async id =>
        {
            var pid = await StartAsync(id, new { cmd = "sleep 100" });
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsJsonAsync(Url(id, pid.ToString()) + "/resize", new { cols = 10, rows = 10 }, cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("invalid_argument", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }


    private static string Url(string id, string? selector = null) =>
        selector is null ? $"/v1/sandboxes/{id}/processes" : $"/v1/sandboxes/{id}/processes/{selector}";


    private async Task<int> StartAsync(string id, object body)
    {
        using var cts = Api.NewTimeout();
        var response = await _client.PostAsJsonAsync(Url(id), body, cts.Token);
        var text = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"start: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("pid").GetInt32();
    }

    private async Task SendStdinAsync(string id, string selector, string text) => await SendStdinAsync(id, selector, Encoding.UTF8.GetBytes(text));

    private async Task SendStdinAsync(string id, string selector, byte[] bytes)
    {
        using var cts = Api.NewTimeout();
        var response = await _client.PostAsync(Url(id, selector) + "/stdin", new ByteArrayContent(bytes), cts.Token);
        Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
    }

    private async Task<HttpResponseMessage> OpenEventsAsync(string id, string selector, CancellationToken cancellationToken)
    {
        var response = await _client.GetAsync(Url(id, selector) + "/events", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return response;
    }

    /// <summary>Attaches (with replay) and reads until the end event, which must come within the timeout.</summary>
    private async Task<List<SseEvent>> ReadToEndAsync(string id, string selector, TimeSpan? timeout = null)
    {
        using var cts = Api.NewTimeout(timeout);
        using var response = await OpenEventsAsync(id, selector, cts.Token);
        var events = await Sse.ReadAllAsync(response, cts.Token);
        Assert.Equal("start", events[0].Name);
        Assert.Equal("end", events[^1].Name);
        return events;
    }

    /// <summary>Attaches and reads until the stdout so far contains the text, then detaches.</summary>
    private async Task ReadUntilAsync(string id, string selector, string text)
    {
        using var cts = Api.NewTimeout(s_short);
        using var response = await OpenEventsAsync(id, selector, cts.Token);
        var seen = new StringBuilder();
        await foreach (var e in Sse.ReadAsync(response, cts.Token))
        {
            if (e.Name == "stdout" && seen.Append(e.Data.GetProperty("data").GetString()).ToString().Contains(text, StringComparison.Ordinal))
            {
                return;
            }
        }

        Assert.Fail($"'{text}' never came; saw '{seen}'");
    }

    private async Task WaitUntilFinishedAsync(string id, string selector)
    {
        using var cts = Api.NewTimeout(s_short);
        while ((await (await _client.GetAsync(Url(id, selector), cts.Token)).JsonAsync()).GetProperty("running").GetBoolean())
        {
            await Task.Delay(50, cts.Token);
        }
    }

    private async Task<ClientWebSocket> ConnectPtyAsync(string id, string selector, CancellationToken cancellationToken)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + AirlockServer.ApiKey);
        var uri = new UriBuilder(fixture.Server.BaseAddress) { Scheme = "ws", Path = Url(id, selector) + "/pty" }.Uri;
        await socket.ConnectAsync(uri, cancellationToken);
        return socket;
    }

    private static string Stdout(List<SseEvent> events) => Text(events, "stdout");

    private static string Text(List<SseEvent> events, string name) =>
        string.Concat(events.Where(e => e.Name == name).Select(e => e.Data.GetProperty("data").GetString()));

    /// <summary>Collects a pty WebSocket's output in the background; waits for text to appear in it.</summary>
    private sealed class Terminal
    {
        private readonly StringBuilder _text = new();
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _mark;

        public Terminal(ClientWebSocket socket, CancellationToken cancellationToken) => Closed = PumpAsync(socket, cancellationToken);

        public Task Closed { get; }

        private async Task PumpAsync(ClientWebSocket socket, CancellationToken cancellationToken)
        {
            var buffer = new byte[16 * 1024];
            var decoder = Encoding.UTF8.GetDecoder();
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer, cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    break;
                }

                var chars = new char[decoder.GetCharCount(buffer, 0, received.Count)];
                decoder.GetChars(buffer, 0, received.Count, chars, 0);
                TaskCompletionSource changed;
                lock (_text)
                {
                    _text.Append(chars);
                    changed = _changed;
                    _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
                }

                changed.TrySetResult();
            }
        }

        /// <summary>Waits until the output since the previous match satisfies the predicate.</summary>
        public async Task WaitForAsync(Func<string, bool> predicate, string what)
        {
            using var cts = Api.NewTimeout(s_short);
            while (true)
            {
                Task changed;
                lock (_text)
                {
                    var text = _text.ToString(_mark, _text.Length - _mark);
                    if (predicate(text))
                    {
                        _mark = _text.Length;
                        return;
                    }

                    changed = _changed.Task;
                }

                try
                {
                    await Task.WhenAny(changed, Closed).WaitAsync(cts.Token);
                }
                catch (OperationCanceledException)
                {
                    Assert.Fail($"'{what}' never appeared in the terminal:\n{_text}");
                }

                if (Closed.IsCompleted && !changed.IsCompleted)
                {
                    Assert.Fail($"terminal closed ({Closed.Exception?.GetBaseException().Message}) before '{what}':\n{_text}");
                }
            }
        }
    }
}
