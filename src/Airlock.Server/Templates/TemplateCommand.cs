using Airlock.Core.Templates;
using Airlock.Runtime.Linux;
using Airlock.Runtime.Linux.Templates;
using Microsoft.Extensions.Options;

namespace Airlock.Server.Templates;

/// <summary>Builds one template from the command line, with progress on stdout.</summary>
internal static class TemplateCommand
{
    public static async Task<int> RunAsync(string name)
    {
        TemplateSpec? spec = name switch
        {
            _ when name == TemplateSpec.Base.Name => TemplateSpec.Base,
            _ when name == TemplateSpec.CodeInterpreter.Name => TemplateSpec.CodeInterpreter,
            _ => null,
        };
        if (spec is null)
        {
            Console.Error.WriteLine($"unknown template '{name}'");
            return 2;
        }

        var options = new RuntimeOptions
        {
            DataDir = Environment.GetEnvironmentVariable("AIRLOCK_DATA") ?? "data",
            TemplatesDir = Environment.GetEnvironmentVariable("AIRLOCK_TEMPLATES"),
        };
        var builder = new DebootstrapTemplateBuilder(Options.Create(options));
        try
        {
            var path = await builder.EnsureBuiltAsync(spec, new ConsoleProgress(name));
            Console.WriteLine($"template {name} ready at {path}");
            return 0;
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"template {name} failed: {ex.Message}");
            return 1;
        }
    }

    private sealed class ConsoleProgress(string name) : IProgress<string>
    {
        public void Report(string value) => Console.WriteLine($"template {name}: {value}");
    }
}
