using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Airlock.Runtime.Linux.Network;

/// <summary>
/// Creates sockets inside other network namespaces. A socket keeps the namespace it was created
/// in, so one dedicated thread <c>setns</c>es into the sandbox's netns, calls <c>socket()</c> and
/// goes straight back; the socket is then connected and used from any thread like a host socket.
/// Joining a net namespace is allowed in a multithreaded process (unlike a mount namespace), and
/// affects only the calling thread, which is why no thread-pool thread ever does it.
/// </summary>
internal sealed partial class NetnsSockets : IDisposable
{
    private const int CLONE_NEWNET = 0x40000000;
    private const int SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0x80000;
    private readonly BlockingCollection<Work> _queue = [];
    private readonly Thread _thread;
    private string? _broken;

    public NetnsSockets()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "airlock-netns" };
        _thread.Start();
    }

    private sealed record Work(SafeFileHandle Netns, AddressFamily Family, SocketType Type, TaskCompletionSource<Socket> Done);

    /// <summary>A new unconnected socket in the network namespace <paramref name="netns"/> (an fd of <c>/proc/&lt;pid&gt;/ns/net</c>).</summary>
    public Task<Socket> CreateAsync(SafeFileHandle netns, AddressFamily family, SocketType type = SocketType.Stream)
    {
        if (_broken is { } reason)
        {
            return Task.FromException<Socket>(new IOException(reason));
        }

        var work = new Work(netns, family, type, new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously));
        _queue.Add(work);
        return work.Done.Task;
    }

    private void Run()
    {
        // This thread's own (the host's) namespace, to come back to.
        var home = open("/proc/thread-self/ns/net", 0x80000 /* O_CLOEXEC */);
        foreach (var work in _queue.GetConsumingEnumerable())
        {
            if (home < 0 || _broken is not null)
            {
                work.Done.TrySetException(new IOException(_broken ?? "cannot open the host network namespace"));
                continue;
            }

            var added = false;
            work.Netns.DangerousAddRef(ref added);
            try
            {
                if (setns((int)work.Netns.DangerousGetHandle(), CLONE_NEWNET) != 0)
                {
                    work.Done.TrySetException(new IOException($"setns into the sandbox network failed: errno {Marshal.GetLastPInvokeError()}"));
                    continue;
                }

                var fd = socket(work.Family == AddressFamily.InterNetworkV6 ? 10 : 2, (work.Type == SocketType.Dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
                var errno = Marshal.GetLastPInvokeError();
                if (setns(home, CLONE_NEWNET) != 0)
                {
                    // Never leave this thread in a sandbox's namespace: stop making sockets at all.
                    _broken = $"cannot return to the host network namespace: errno {Marshal.GetLastPInvokeError()}";
                }

                if (fd < 0)
                {
                    work.Done.TrySetException(new IOException($"socket() in the sandbox network failed: errno {errno}"));
                }
                else if (_broken is not null)
                {
                    close(fd);
                    work.Done.TrySetException(new IOException(_broken));
                }
                else
                {
                    work.Done.TrySetResult(new Socket(new SafeSocketHandle(fd, ownsHandle: true)));
                }
            }
            catch (Exception ex)
            {
                work.Done.TrySetException(ex);
            }
            finally
            {
                if (added)
                {
                    work.Netns.DangerousRelease();
                }
            }
        }
    }

    public void Dispose() => _queue.CompleteAdding();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
