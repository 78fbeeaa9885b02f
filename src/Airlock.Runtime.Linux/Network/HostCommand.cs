using System.Diagnostics;

namespace Airlock.Runtime.Linux.Network;

/// <summary>Runs <c>nft</c> / <c>ip</c> with a script on stdin: one exec per change.</summary>
internal static class HostCommand
{
    public static async Task<(int ExitCode, string Output)> RunAsync(string file, IEnumerable<string> args, string? stdin = null, CancellationToken cancellationToken = default)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardInput = stdin is not null,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new IOException($"could not start {file}");
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin.AsMemory(), cancellationToken).ConfigureAwait(false);
            process.StandardInput.Close();
        }

        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        return (process.ExitCode, (await stdout.ConfigureAwait(false)) + (await stderr.ConfigureAwait(false)));
    }

    /// <summary>Runs and throws with the tool's own message when it fails.</summary>
    public static async Task<string> RequireAsync(string file, IEnumerable<string> args, string? stdin = null, CancellationToken cancellationToken = default)
    {
        var (code, output) = await RunAsync(file, args, stdin, cancellationToken).ConfigureAwait(false);
        if (code != 0)
        {
            throw new IOException($"{file} failed ({code}): {output.Trim()}");
        }

        return output;
    }
}
