using Airlock.Core;
using Airlock.Core.Sandboxes;

namespace Airlock.Core.Tests.Sandboxes;

public sealed class SandboxPathTests
{
    private static readonly SandboxUser s_user = new("user", 1000, 1000, "/home/user");

    [Theory]
    [InlineData("a.txt", "/home/user/a.txt")]
    [InlineData("~/a.txt", "/home/user/a.txt")]
    [InlineData("/etc/../etc/./passwd", "/etc/passwd")]
    [InlineData("/../../../etc/shadow", "/etc/shadow")]
    [InlineData("../../..", "/")]
    [InlineData("//tmp//x/", "/tmp/x")]
    public void Resolve_NormalizesInsideRoot(string path, string expected) =>
        Assert.Equal(expected, SandboxPath.Resolve(path, s_user));

    [Theory]
    [InlineData("")]
    [InlineData("a\0b")]
    public void Resolve_BadPath_Throws(string path) =>
        Assert.Equal("invalid_argument", Assert.Throws<AirlockException>(() => SandboxPath.Resolve(path, s_user)).Code);
}
