using Airlock.Core.Templates;

namespace Airlock.Core.Tests.Templates;

public sealed class TemplateSpecTests
{
    [Fact]
    public void Hash_IgnoresPackageOrder_ChangesWithContent()
    {
        var a = new TemplateSpec { Name = "t", Packages = ["curl", "git"] };
        var b = new TemplateSpec { Name = "t", Packages = ["git", "curl"] };
        var c = new TemplateSpec { Name = "t", Packages = ["git", "curl", "vim"] };
        var d = a with { Run = ["echo x"] };
        Assert.Equal(a.Hash(), b.Hash());
        Assert.NotEqual(a.Hash(), c.Hash());
        Assert.NotEqual(a.Hash(), d.Hash());
        Assert.Matches("^[0-9a-f]{16}$", a.Hash());
    }

    [Fact]
    public void Base_HasWhatTheIssueAsksFor()
    {
        foreach (var package in new[] { "bash", "coreutils", "procps", "python3", "git", "curl", "ca-certificates", "sudo" })
        {
            Assert.Contains(package, TemplateSpec.Base.Packages);
        }

        Assert.Contains(TemplateSpec.Base.Run, step => step.Contains("--uid 1000", StringComparison.Ordinal));
        Assert.Equal("user", TemplateSpec.Base.User);
    }
}
