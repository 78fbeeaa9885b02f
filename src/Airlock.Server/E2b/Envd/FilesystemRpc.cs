using Airlock.Core;
using Airlock.Core.Files;
using Airlock.Protocol.Envd.Filesystem;
using Google.Protobuf.WellKnownTypes;
using CoreFileType = Airlock.Core.Files.FileType;
using WireFileType = Airlock.Protocol.Envd.Filesystem.FileType;

namespace Airlock.Server.E2b.Envd;

/// <summary>envd's <c>filesystem.Filesystem</c> service (spec §3.3) over <see cref="FileService"/>.</summary>
internal static class FilesystemRpc
{
    private const string Service = "filesystem.Filesystem/";

    public static IEndpointRouteBuilder MapEnvdFilesystemRpc(this IEndpointRouteBuilder app)
    {
        var files = app.ServiceProvider.GetRequiredService<FileService>();
        var watchers = app.ServiceProvider.GetRequiredService<FilesystemRpcWatchers>();

        app.MapUnary<StatRequest, StatResponse>(Service + "Stat", (call, request) =>
            ValueTask.FromResult(new StatResponse { Entry = ToWire(files.Stat(call.SandboxId, request.Path, call.User)) }));

        app.MapUnary<MakeDirRequest, MakeDirResponse>(Service + "MakeDir", (call, request) =>
        {
            bool created;
            FileEntry entry;
            try
            {
                (created, entry) = files.MakeDirectory(call.SandboxId, request.Path, call.User);
            }
            catch (AirlockException ex) when (ex.Code == "already_exists")
            {
                // Core says a non-directory is in the way; envd calls that an invalid argument and keeps
                // already_exists for "the directory is there" (the SDK turns that into false).
                throw AirlockException.Invalid(ex.Message);
            }

            if (!created)
            {
                throw AirlockException.Conflict("already_exists", $"directory '{entry.Path}' already exists");
            }

            return ValueTask.FromResult(new MakeDirResponse { Entry = ToWire(entry) });
        });

        app.MapUnary<MoveRequest, MoveResponse>(Service + "Move", (call, request) =>
            ValueTask.FromResult(new MoveResponse { Entry = ToWire(files.Move(call.SandboxId, request.Source, request.Destination, call.User)) }));

        app.MapUnary<ListDirRequest, ListDirResponse>(Service + "ListDir", (call, request) =>
        {
            // The SDK sends depth 1 by default; an absent depth (0) means the same, as envd.
            var depth = request.Depth == 0 ? 1 : (int)Math.Min(request.Depth, int.MaxValue);
            var response = new ListDirResponse();
            response.Entries.AddRange(files.List(call.SandboxId, request.Path, depth, call.User).Select(ToWire));
            return ValueTask.FromResult(response);
        });

        app.MapUnary<RemoveRequest, RemoveResponse>(Service + "Remove", (call, request) =>
        {
            files.Remove(call.SandboxId, request.Path, call.User);
            return ValueTask.FromResult(new RemoveResponse());
        });

        app.MapServerStream<WatchDirRequest, WatchDirResponse>(Service + "WatchDir", (call, request, stream) => WatchAsync(files, call, request, stream));

        app.MapUnary<CreateWatcherRequest, CreateWatcherResponse>(Service + "CreateWatcher", (call, request) =>
            ValueTask.FromResult(new CreateWatcherResponse
            {
                WatcherId = watchers.Create(call.SandboxId, request.Path, request.Recursive, request.IncludeEntry, call.User),
            }));

        app.MapUnary<GetWatcherEventsRequest, GetWatcherEventsResponse>(Service + "GetWatcherEvents", (call, request) =>
        {
            var response = new GetWatcherEventsResponse();
            response.Events.AddRange(watchers.Drain(call.SandboxId, request.WatcherId));
            return ValueTask.FromResult(response);
        });

        app.MapUnary<RemoveWatcherRequest, RemoveWatcherResponse>(Service + "RemoveWatcher", (call, request) =>
        {
            watchers.Remove(call.SandboxId, request.WatcherId);
            return ValueTask.FromResult(new RemoveWatcherResponse());
        });
        return app;
    }

    private static async Task WatchAsync(FileService files, ConnectCall call, WatchDirRequest request, ConnectStream<WatchDirResponse> stream)
    {
        var (_, root, _) = files.Resolve(call.SandboxId, request.Path, call.User);
        // The watch is in place before start goes out: a change made after the SDK sees start is reported.
        using var watch = files.Watch(call.SandboxId, root, request.Recursive, call.User);
        await stream.WriteAsync(new WatchDirResponse { Start = new WatchDirResponse.Types.StartEvent() }, call.CancellationToken);
        stream.StartKeepalives(call.KeepaliveInterval, () => new WatchDirResponse { Keepalive = new WatchDirResponse.Types.KeepAlive() }, call.CancellationToken);
        await foreach (var e in watch.ReadAllAsync(call.CancellationToken))
        {
            await stream.WriteAsync(new WatchDirResponse { Filesystem = ToWire(files, call, root, e, request.IncludeEntry) }, call.CancellationToken);
        }
    }

    /// <summary>One watch event on the wire; with <paramref name="includeEntry"/>, the entry when it can still be stat-ed.</summary>
    internal static FilesystemEvent ToWire(FileService files, ConnectCall call, string root, FileEvent e, bool includeEntry) =>
        ToWire(files, call.SandboxId, call.User, root, e, includeEntry);

    internal static FilesystemEvent ToWire(FileService files, string sandboxId, string? user, string root, FileEvent e, bool includeEntry)
    {
        var wire = new FilesystemEvent { Name = e.Name, Type = (EventType)(int)e.Type };
        if (includeEntry && e.Type is not (FileEventType.Remove or FileEventType.Rename))
        {
            try
            {
                wire.Entry = ToWire(files.Stat(sandboxId, root.TrimEnd('/') + "/" + e.Name, user));
            }
            catch (AirlockException)
            {
                // Gone again already; the event still stands without its entry.
            }
        }

        return wire;
    }

    internal static EntryInfo ToWire(FileEntry entry)
    {
        var info = new EntryInfo
        {
            Name = entry.Name,
            Type = entry.Type switch
            {
                CoreFileType.File => WireFileType.File,
                CoreFileType.Directory => WireFileType.Directory,
                CoreFileType.Symlink => WireFileType.Symlink,
                _ => WireFileType.Unspecified,
            },
            Path = entry.Path,
            Size = entry.Size,
            Mode = (uint)entry.Mode,
            Permissions = entry.Permissions,
            Owner = entry.Owner,
            Group = entry.Group,
            ModifiedTime = Timestamp.FromDateTimeOffset(entry.ModifiedTime),
        };
        if (entry.SymlinkTarget is { } target)
        {
            info.SymlinkTarget = target;
        }

        return info;
    }
}
