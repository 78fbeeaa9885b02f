using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Airlock.IntegrationTests.Infrastructure;

namespace Airlock.IntegrationTests.Files;

/// <summary>
/// The files API against real sandboxes: content round trips (streamed, binary, large, empty),
/// ownership, stat/list, mkdir/move/remove, path rules, and the inotify watch stream.
/// </summary>
public sealed class FileApiTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private readonly HttpClient _client = fixture.Client;

    [Fact]
    public async Task WriteRead_BinaryContent_RoundTripsExactly()
    {
        await _client.WithSandboxAsync(async id =>
        {
            // Every byte value, including NUL and invalid UTF-8.
            var content = new byte[256 * 1024];
            for (var i = 0; i < content.Length; i++)
            {
                content[i] = (byte)(i * 7 + (i >> 8));
            }

            using var cts = Api.NewTimeout();
            var put = await _client.PutAsync(Url(id, "/tmp/bin.dat"), new ByteArrayContent(content), cts.Token);
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
            var entry = await put.JsonAsync();
            Assert.Equal(content.Length, entry.GetProperty("size").GetInt64());
            Assert.Equal("/tmp/bin.dat", entry.GetProperty("path").GetString());

            var get = await _client.GetAsync(Url(id, "/tmp/bin.dat"), cts.Token);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal("application/octet-stream", get.Content.Headers.ContentType?.MediaType);
            Assert.Equal(content.Length, get.Content.Headers.ContentLength);
            Assert.Equal(content, await get.Content.ReadAsByteArrayAsync(cts.Token));

            // Overwrite truncates.
            await _client.PutAsync(Url(id, "/tmp/bin.dat"), new ByteArrayContent("short"u8.ToArray()), cts.Token);
            Assert.Equal("short", await _client.GetStringAsync(Url(id, "/tmp/bin.dat"), cts.Token));
        });
    }

    [Fact]
    public async Task WriteRead_100MegabyteFile_StreamsBothWays()
    {
        await _client.WithSandboxAsync(async id =>
        {
            const long size = 100L * 1024 * 1024;
            using var cts = Api.NewTimeout(TimeSpan.FromSeconds(90));
            var upload = new GeneratedContent(size);
            var put = await _client.PutAsync(Url(id, "big/file.bin"), upload, cts.Token);
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
            Assert.Equal(size, (await put.JsonAsync()).GetProperty("size").GetInt64());
            var expected = Convert.ToHexStringLower(upload.Sha256!);

            var inside = await _client.ExecAsync(id, "sha256sum big/file.bin | cut -d' ' -f1");
            Assert.Equal(expected + "\n", inside.Stdout);

            using var get = await _client.GetAsync(Url(id, "big/file.bin"), HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(size, get.Content.Headers.ContentLength);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            await using var body = await get.Content.ReadAsStreamAsync(cts.Token);
            var buffer = new byte[1 << 20];
            long total = 0;
            int n;
            while ((n = await body.ReadAsync(buffer, cts.Token)) > 0)
            {
                hash.AppendData(buffer, 0, n);
                total += n;
            }

            Assert.Equal(size, total);
            Assert.Equal(expected, Convert.ToHexStringLower(hash.GetHashAndReset()));
        });
    }

    [Fact]
    public async Task WriteRead_EmptyFile_HasContentLength0()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var put = await _client.PutAsync(Url(id, "empty"), new ByteArrayContent([]), cts.Token);
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
            Assert.Equal(0, (await put.JsonAsync()).GetProperty("size").GetInt64());

            var get = await _client.GetAsync(Url(id, "empty"), cts.Token);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(0, get.Content.Headers.ContentLength);
            Assert.Empty(await get.Content.ReadAsByteArrayAsync(cts.Token));
        });
    }

    [Fact]
    public async Task Write_MissingParents_CreatesThemOwnedByTheUser()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var put = await _client.PutAsync(Url(id, "/home/user/a/b/c/f.txt"), new StringContent("x"), cts.Token);
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
            var owners = await _client.ExecAsync(id, "stat -c '%U:%G %a' a a/b a/b/c a/b/c/f.txt");
            Assert.Equal("user:user 755\nuser:user 755\nuser:user 755\nuser:user 644\n", owners.Stdout);
        });
    }

    [Theory]
    [InlineData(null, "user")]
    [InlineData("user", "user")]
    [InlineData("root", "root")]
    public async Task Write_AsUser_OwnedByThatUser(string? user, string owner)
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var url = Url(id, "/tmp/owned/f") + (user is null ? "" : $"&user={user}");
            var put = await _client.PutAsync(url, new StringContent("x"), cts.Token);
            var entry = await put.JsonAsync();
            Assert.Equal(owner, entry.GetProperty("owner").GetString());
            Assert.Equal(owner, entry.GetProperty("group").GetString());
            var inside = await _client.ExecAsync(id, "stat -c '%U:%G' /tmp/owned /tmp/owned/f");
            Assert.Equal($"{owner}:{owner}\n{owner}:{owner}\n", inside.Stdout);
        });
    }

    [Fact]
    public async Task Read_RelativePathAsRoot_ResolvesUnderRootsHome()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "echo secret > /root/r.txt", user: "root");
            using var cts = Api.NewTimeout();
            Assert.Equal("secret\n", await _client.GetStringAsync(Url(id, "r.txt") + "&user=root", cts.Token));
        });
    }

    [Fact]
    public async Task Read_Missing_Answers404Problem()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var response = await _client.GetAsync(Url(id, "/nope/missing.txt"), cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("not_found", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }

    [Fact]
    public async Task Read_Directory_Answers400()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            foreach (var path in new[] { "/home/user", "/" })
            {
                var response = await _client.GetAsync(Url(id, path), cts.Token);
                Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
                Assert.Equal("invalid_argument", (await response.JsonAsync()).GetProperty("code").GetString());
            }
        });
    }

    [Fact]
    public async Task Read_NoPath_Answers400()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var response = await _client.GetAsync($"/v1/sandboxes/{id}/files", cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("invalid_argument", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }

    [Fact]
    public async Task Stat_FileDirAndSymlink_ReportsEveryField()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "printf hello > f && chmod 640 f && ln -s f link && mkdir d");
            using var cts = Api.NewTimeout();

            var file = await GetJsonAsync($"/v1/sandboxes/{id}/files/stat?path=f", cts.Token);
            Assert.Equal("f", file.GetProperty("name").GetString());
            Assert.Equal("file", file.GetProperty("type").GetString());
            Assert.Equal("/home/user/f", file.GetProperty("path").GetString());
            Assert.Equal(5, file.GetProperty("size").GetInt64());
            Assert.Equal(Convert.ToInt32("640", 8), file.GetProperty("mode").GetInt32());
            Assert.Equal("-rw-r-----", file.GetProperty("permissions").GetString());
            Assert.Equal("user", file.GetProperty("owner").GetString());
            Assert.Equal("user", file.GetProperty("group").GetString());
            Assert.InRange(file.GetProperty("modifiedTime").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(-2), DateTimeOffset.UtcNow.AddMinutes(1));
            Assert.Equal(JsonValueKind.Null, file.GetProperty("symlinkTarget").ValueKind);

            var link = await GetJsonAsync($"/v1/sandboxes/{id}/files/stat?path=/home/user/link", cts.Token);
            Assert.Equal("symlink", link.GetProperty("type").GetString());
            Assert.Equal("f", link.GetProperty("symlinkTarget").GetString());
            Assert.StartsWith("L", link.GetProperty("permissions").GetString(), StringComparison.Ordinal);

            var dir = await GetJsonAsync($"/v1/sandboxes/{id}/files/stat?path=d", cts.Token);
            Assert.Equal("dir", dir.GetProperty("type").GetString());
            Assert.StartsWith("d", dir.GetProperty("permissions").GetString(), StringComparison.Ordinal);

            var missing = await _client.GetAsync($"/v1/sandboxes/{id}/files/stat?path=nope", cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        });
    }

    [Fact]
    public async Task List_Depth1VersusDepth2_ReturnsOneOrTwoLevels()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "mkdir -p d/sub/deeper && touch d/a d/sub/b d/sub/deeper/c");
            using var cts = Api.NewTimeout();

            var one = await GetJsonAsync($"/v1/sandboxes/{id}/files/list?path=d", cts.Token);
            Assert.Equal(["/home/user/d/a", "/home/user/d/sub"], Paths(one));
            var sub = one.EnumerateArray().Single(e => e.GetProperty("name").GetString() == "sub");
            Assert.Equal("dir", sub.GetProperty("type").GetString());

            var two = await GetJsonAsync($"/v1/sandboxes/{id}/files/list?path=d&depth=2", cts.Token);
            Assert.Equal(["/home/user/d/a", "/home/user/d/sub", "/home/user/d/sub/b", "/home/user/d/sub/deeper"], Paths(two));

            var onFile = await _client.GetAsync($"/v1/sandboxes/{id}/files/list?path=d/a", cts.Token);
            Assert.Equal(HttpStatusCode.BadRequest, onFile.StatusCode);
            var onMissing = await _client.GetAsync($"/v1/sandboxes/{id}/files/list?path=nope", cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, onMissing.StatusCode);
        });
    }

    [Fact]
    public async Task MakeDirectory_WithParents_201ThenAgain200()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var first = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/mkdir", new { path = "x/y/z" }, cts.Token);
            Assert.Equal(HttpStatusCode.Created, first.StatusCode);
            var entry = await first.JsonAsync();
            Assert.Equal("/home/user/x/y/z", entry.GetProperty("path").GetString());
            Assert.Equal("dir", entry.GetProperty("type").GetString());
            Assert.Equal("user", entry.GetProperty("owner").GetString());

            var again = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/mkdir", new { path = "/home/user/x/y/z" }, cts.Token);
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);

            Assert.Equal("user:user\nuser:user\n", (await _client.ExecAsync(id, "stat -c %U:%G x x/y")).Stdout);
        });
    }

    [Fact]
    public async Task MakeDirectory_OverExistingFile_Answers409()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "touch file");
            using var cts = Api.NewTimeout();
            var response = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/mkdir", new { path = "file" }, cts.Token);
            Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
            Assert.Equal("already_exists", (await response.JsonAsync()).GetProperty("code").GetString());

            var below = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/mkdir", new { path = "file/sub" }, cts.Token);
            Assert.InRange((int)below.StatusCode, 400, 499);
        });
    }

    [Fact]
    public async Task Move_File_RenamesIt()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            await _client.PutAsync(Url(id, "from.txt"), new StringContent("moved"), cts.Token);
            await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/mkdir", new { path = "dest" }, cts.Token);
            var response = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/move", new { source = "from.txt", destination = "dest/to.txt" }, cts.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("/home/user/dest/to.txt", (await response.JsonAsync()).GetProperty("path").GetString());
            Assert.Equal(HttpStatusCode.NotFound, (await _client.GetAsync(Url(id, "from.txt"), cts.Token)).StatusCode);
            Assert.Equal("moved", await _client.GetStringAsync(Url(id, "dest/to.txt"), cts.Token));

            var missing = await _client.PostAsJsonAsync($"/v1/sandboxes/{id}/files/move", new { source = "nope", destination = "x" }, cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        });
    }

    [Fact]
    public async Task Remove_FileTreeAndMissing_All204()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "mkdir -p tree/a/b && touch tree/a/b/c tree/x f");
            using var cts = Api.NewTimeout();
            Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync(Url(id, "f"), cts.Token)).StatusCode);
            Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync(Url(id, "tree"), cts.Token)).StatusCode);
            Assert.Equal(HttpStatusCode.NoContent, (await _client.DeleteAsync(Url(id, "never/was"), cts.Token)).StatusCode);
            Assert.Equal("gone\n", (await _client.ExecAsync(id, "test -e f || test -e tree || echo gone")).Stdout);
        });
    }

    [Fact]
    public async Task Paths_Relative_ResolveUnderHomeUser()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var put = await _client.PutAsync(Url(id, "rel/./../rel.txt"), new StringContent("here"), cts.Token);
            Assert.Equal("/home/user/rel.txt", (await put.JsonAsync()).GetProperty("path").GetString());
            Assert.Equal("here", (await _client.ExecAsync(id, "cat /home/user/rel.txt")).Stdout);
            Assert.Equal("here", await _client.GetStringAsync(Url(id, "~/rel.txt"), cts.Token));
        });
    }

    [Fact]
    public async Task Watch_Recursive_ReportsChangesIncludingInNewSubdirectory()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "mkdir w");
            using var cts = Api.NewTimeout();
            using var response = await _client.GetAsync($"/v1/sandboxes/{id}/files/watch?path=w&recursive=true", HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var watch = await Watcher.StartAsync(response, cts.Token);

            await _client.ExecAsync(id, "echo a > w/f1");
            await watch.WaitForAsync(("f1", "create"), ("f1", "write"));

            await _client.ExecAsync(id, "mkdir w/sub");
            await watch.WaitForAsync(("sub", "create"));
            await _client.ExecAsync(id, "echo b > w/sub/f2");
            await watch.WaitForAsync(("sub/f2", "create"), ("sub/f2", "write"));

            await _client.ExecAsync(id, "rm w/f1 w/sub/f2");
            await watch.WaitForAsync(("f1", "remove"), ("sub/f2", "remove"));
        });
    }

    [Fact]
    public async Task Watch_Recursive_FileCreatedRightAfterItsDirectory_IsReported()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "mkdir w");
            using var cts = Api.NewTimeout();
            using var response = await _client.GetAsync($"/v1/sandboxes/{id}/files/watch?path=w&recursive=true", HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var watch = await Watcher.StartAsync(response, cts.Token);

            // One command: the file appears before the server can have added a watch on the new directory.
            await _client.ExecAsync(id, "mkdir -p w/n1/n2 && echo x > w/n1/n2/f");
            await watch.WaitForAsync(("n1", "create"), ("n1/n2", "create"), ("n1/n2/f", "create"));
        });
    }

    [Fact]
    public async Task Watch_NotRecursive_IgnoresSubdirectories()
    {
        await _client.WithSandboxAsync(async id =>
        {
            await _client.ExecAsync(id, "mkdir -p w/old");
            using var cts = Api.NewTimeout();
            using var response = await _client.GetAsync($"/v1/sandboxes/{id}/files/watch?path=w", HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var watch = await Watcher.StartAsync(response, cts.Token);
            await _client.ExecAsync(id, "touch w/old/inner && touch w/top");
            await watch.WaitForAsync(("top", "create"));
            Assert.DoesNotContain(watch.Seen, e => e.Name.StartsWith("old/", StringComparison.Ordinal));
        });
    }

    [Fact]
    public async Task Watch_MissingDirectory_Answers404()
    {
        await _client.WithSandboxAsync(async id =>
        {
            using var cts = Api.NewTimeout();
            var response = await _client.GetAsync($"/v1/sandboxes/{id}/files/watch?path=nope", cts.Token);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("not_found", (await response.JsonAsync()).GetProperty("code").GetString());
        });
    }


    private static string Url(string id, string path) => $"/v1/sandboxes/{id}/files?path={Uri.EscapeDataString(path)}";


    private async Task<JsonElement> GetJsonAsync(string url, CancellationToken cancellationToken)
    {
        var response = await _client.GetAsync(url, cancellationToken);
        var json = await response.JsonAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{url}: {(int)response.StatusCode} {json}");
        return json;
    }

    private static string[] Paths(JsonElement list) =>
        list.EnumerateArray().Select(e => e.GetProperty("path").GetString()!).Order(StringComparer.Ordinal).ToArray();


    /// <summary>Reads a watch stream in the background; waits for given (name, type) events.</summary>
    private sealed class Watcher
    {
        private readonly List<(string Name, string Type)> _seen = [];
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private Watcher(HttpResponseMessage response, CancellationToken cancellationToken) => Done = PumpAsync(response, cancellationToken);

        public static async Task<Watcher> StartAsync(HttpResponseMessage response, CancellationToken cancellationToken)
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                Assert.Fail($"watch: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }

            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var watcher = new Watcher(response, cancellationToken);
            await watcher.WaitForAsync(("", "start"));
            return watcher;
        }

        private Task Done { get; }

        public List<(string Name, string Type)> Seen
        {
            get
            {
                lock (_seen)
                {
                    return [.. _seen];
                }
            }
        }

        private async Task PumpAsync(HttpResponseMessage response, CancellationToken cancellationToken)
        {
            await foreach (var e in Sse.ReadAsync(response, cancellationToken))
            {
                var item = e.Name == "start" ? ("", "start") : (e.Data.GetProperty("name").GetString()!, e.Data.GetProperty("type").GetString()!);
                TaskCompletionSource changed;
                lock (_seen)
                {
                    _seen.Add(item);
                    changed = _changed;
                    _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
                }

                changed.TrySetResult();
            }
        }

        public async Task WaitForAsync(params (string Name, string Type)[] expected)
        {
            using var cts = Api.NewTimeout(TimeSpan.FromSeconds(10));
            while (true)
            {
                Task changed;
                lock (_seen)
                {
                    if (expected.All(_seen.Contains))
                    {
                        return;
                    }

                    changed = _changed.Task;
                }

                try
                {
                    await Task.WhenAny(changed, Done).WaitAsync(cts.Token);
                }
                catch (OperationCanceledException)
                {
                    Assert.Fail($"expected [{string.Join(", ", expected)}], saw [{string.Join(", ", Seen)}]");
                }

                if (Done.IsCompleted && !changed.IsCompleted)
                {
                    Assert.Fail($"the watch ended ({Done.Exception?.GetBaseException().Message}); expected [{string.Join(", ", expected)}], saw [{string.Join(", ", Seen)}]");
                }
            }
        }
    }
}
