/* airlock-init: starts a sandbox (process A) and is its PID 1 (process B).
 * The contract is docs/init-protocol.md; section numbers below refer to it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"

#define MAX_CGROUPS 16
#define MAX_CGROUP_SETS 16
#define ZYGOTE_MAX_ARGS 128 /* per request, the sequence number included */
#define MAX_CLIENTS 64
#define MAX_RECV_FDS 8 /* SPAWN takes 3; room to notice (and close) a few extra */
#define CLIENT_SNDBUF (1 << 20)

struct config {
    const char *id, *lower, *state, *hostname;
    unsigned long long disk_bytes;
    const char *cgroups[MAX_CGROUPS];
    int ncgroups;
    const char *sets[MAX_CGROUP_SETS]; /* "<file in one of cgroups>=<value>" */
    int nsets;
    char ctl[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* ---------------------------------------------------------------- process A */

/* "" when started per sandbox; "<seq> " in a child of the zygote (section 1a), whose replies
 * share one pipe and are told apart by the request's sequence number. */
static const char *reply_prefix = "";

static _Noreturn void a_fail(const char *step, int err)
{
    printf("%serror %s: %s\n", reply_prefix, step, strerror(err));
    fflush(stdout);
    exit(1);
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int set_target_ok(const struct config *c, const char *set);

static void parse_args(int argc, char **argv, struct config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            a_fail("args", EINVAL);
        i++;
        if (!strcmp(k, "--id"))
            c->id = v;
        else if (!strcmp(k, "--lower"))
            c->lower = v;
        else if (!strcmp(k, "--state"))
            c->state = v;
        else if (!strcmp(k, "--hostname"))
            c->hostname = v;
        else if (!strcmp(k, "--disk-bytes")) {
            char *end;
            errno = 0;
            c->disk_bytes = strtoull(v, &end, 10);
            if (errno || *end || end == v || c->disk_bytes == 0 || v[0] == '-')
                a_fail("args", EINVAL);
        } else if (!strcmp(k, "--cgroup")) {
            if (c->ncgroups == MAX_CGROUPS)
                a_fail("args", E2BIG);
            c->cgroups[c->ncgroups++] = v;
        } else if (!strcmp(k, "--cgroup-set")) {
            if (c->nsets == MAX_CGROUP_SETS)
                a_fail("args", E2BIG);
            c->sets[c->nsets++] = v;
        } else
            a_fail("args", EINVAL);
    }
    if (!c->id || !c->lower || !c->state || !c->disk_bytes || !c->id[0])
        a_fail("args", EINVAL);
    if (!c->hostname)
        c->hostname = c->id;
    if (strlen(c->hostname) > 64) /* HOST_NAME_MAX */
        a_fail("hostname", ENAMETOOLONG);
    /* The overlay option string separates with ',' and ':'; we do not escape. */
    if (strpbrk(c->lower, ",:\\") || strpbrk(c->state, ",:\\"))
        a_fail("overlay", EINVAL);
    for (int i = 0; i < c->nsets; i++)
        if (!set_target_ok(c, c->sets[i]))
            a_fail("args", EINVAL);
    /* sun_path holds 108 bytes with the NUL: fail here, clearly, not with a truncated bind. */
    if ((size_t)snprintf(c->ctl, sizeof c->ctl, "%s/ctl", c->state) >= sizeof c->ctl)
        a_fail("ctl-path", ENAMETOOLONG);
}

/* A --cgroup-set names a file directly inside one of the --cgroup directories. */
static int set_target_ok(const struct config *c, const char *set)
{
    const char *eq = strchr(set, '=');
    if (!eq)
        return 0;
    for (int i = 0; i < c->ncgroups; i++) {
        size_t n = strlen(c->cgroups[i]);
        const char *file = set + n + 1;
        if (!strncmp(set, c->cgroups[i], n) && set[n] == '/' && file < eq &&
            !memchr(file, '/', (size_t)(eq - file)) && strncmp(file, "..=", 3) && strncmp(file, ".=", 2))
            return 1;
    }
    return 0;
}

/* Creates the state dir (mode 0700: the control socket and mount points live there) and its
 * two mount points, then every cgroup directory with its limits (section 1, step 1). */
static void make_dirs(const struct config *c)
{
    char p[PATH_MAX];
    if ((mkdir(c->state, 0700) < 0 && errno != EEXIST) || chmod(c->state, 0700) < 0)
        a_fail("state", errno);
    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(p, sizeof p, "%s/%s", c->state, i ? "root" : "rw") >= sizeof p)
            a_fail("state", ENAMETOOLONG);
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            a_fail("state", errno);
    }
    for (int i = 0; i < c->ncgroups; i++) {
        /* The server's parent (airlock-<hash>) first: it may not exist yet in this hierarchy. */
        const char *slash = strrchr(c->cgroups[i], '/');
        size_t n = slash ? (size_t)(slash - c->cgroups[i]) : 0;
        if (n > 0 && n < sizeof p) {
            memcpy(p, c->cgroups[i], n);
            p[n] = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                a_fail("cgroup", errno);
        }
        if (mkdir(c->cgroups[i], 0755) < 0 && errno != EEXIST)
            a_fail("cgroup", errno);
    }
    for (int i = 0; i < c->nsets; i++) {
        const char *eq = strchr(c->sets[i], '=');
        size_t n = (size_t)(eq - c->sets[i]);
        if (n >= sizeof p)
            a_fail("cgroup", ENAMETOOLONG);
        memcpy(p, c->sets[i], n);
        p[n] = '\0';
        int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write_all(fd, eq + 1, strlen(eq + 1)) < 0)
            a_fail("cgroup", errno);
        close(fd);
    }
}

/* Field 22 of /proc/<pid>/stat: with the pid, it names this process across pid reuse. Read through
 * a /proc fd opened before unshare: by now B has detached the host's tree from the mount namespace
 * A shares with it. */
static unsigned long long start_time(int procfd, pid_t pid)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "%d/stat", (int)pid);
    int fd = openat(procfd, p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    if (!s)
        return 0;
    s += 2; /* field 3 */
    for (int f = 3; f < 22 && s; f++) {
        s = strchr(s, ' ');
        if (s)
            s++;
    }
    return s ? strtoull(s, NULL, 10) : 0;
}

static void join_cgroup(const char *dir)
{
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s/cgroup.procs", dir) >= sizeof p)
        a_fail("cgroup", ENAMETOOLONG);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        a_fail("cgroup", errno);
    /* "0" = the writing process. Done before fork so B and everything it spawns start inside. */
    if (write(fd, "0", 1) != 1)
        a_fail("cgroup", errno);
    close(fd);
}

/* ---------------------------------------------------------------- process B: setup */

static int ready_fd = -1;
static char **saved_argv;
static int saved_argc;

/* Everything inside can read /proc/1/cmdline (it is not behind the dumpable check): our argv
 * holds host paths (data dir, template dir, cgroups). Overwrite the argument strings in place
 * so the sandbox sees only INIT_TITLE; the environment strings that follow them (the server's
 * environment, API key included) are wiped too, although /proc/1/environ is already unreadable.
 * Called once every config string (which point into argv) has been used. */
#define INIT_TITLE "/sbin/airlock-init"
static void scrub_cmdline(void)
{
    extern char **environ;
    char *start = saved_argv[0], *end = saved_argv[saved_argc - 1];
    end += strlen(end) + 1;
    /* The environment block directly follows argv on the initial stack. */
    for (char **e = environ; e && *e; e++)
        if (*e == end)
            end += strlen(*e) + 1;
    memset(start, 0, (size_t)(end - start));
    /* The kernel reports up to the end of the original argv area; a NUL last byte keeps it
     * from following into the environment (setproctitle rule), so the title must be shorter. */
    if ((size_t)(end - start) > sizeof INIT_TITLE)
        memcpy(start, INIT_TITLE, sizeof INIT_TITLE);
    static char *no_env[] = {NULL};
    environ = no_env;
}

static _Noreturn void b_fail(const char *step)
{
    int e = errno;
    if (ready_fd >= 0)
        dprintf(ready_fd, "error %s: %s\n", step, strerror(e));
    _exit(1);
}

static void path2(char *buf, const char *a, const char *b)
{
    if ((size_t)snprintf(buf, PATH_MAX, "%s/%s", a, b) >= PATH_MAX) {
        errno = ENAMETOOLONG;
        b_fail("path");
    }
}

static void mkdir_ok(const char *p, mode_t m, const char *step)
{
    if (mkdir(p, m) < 0 && errno != EEXIST)
        b_fail(step);
}

static void write_file(const char *p, const char *s, const char *step)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || write_all(fd, s, strlen(s)) < 0 || close(fd) < 0)
        b_fail(step);
}

/* §1 step 3: the sandbox's root filesystem. The overlay options show up in the sandbox's
 * /proc/self/mountinfo, so they must not name host paths: the lower layer is passed as an fd
 * (/proc/self/fd/N) and upper/work relative to rw/, the current directory while mounting. */
static void mount_root(const struct config *c, char *root)
{
    char rw[PATH_MAX], opts[PATH_MAX + 64];
    /* Private first, so nothing below propagates back to the host's mount namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        b_fail("mount-private");
    path2(rw, c->state, "rw");
    path2(root, c->state, "root");
    snprintf(opts, sizeof opts, "size=%llu,mode=0755", c->disk_bytes);
    if (mount("tmpfs", rw, "tmpfs", 0, opts) < 0)
        b_fail("tmpfs");
    if (chdir(rw) < 0)
        b_fail("mkdir");
    mkdir_ok("upper", 0755, "mkdir");
    mkdir_ok("work", 0755, "mkdir");
    /* /etc/hostname and /etc/hosts go straight into the upper layer (plain tmpfs writes, no
     * copy-up through the overlay); the merged /etc still shows everything the template has. */
    char buf[256];
    mkdir_ok("upper/etc", 0755, "etc");
    snprintf(buf, sizeof buf, "%s\n", c->hostname);
    write_file("upper/etc/hostname", buf, "etc");
    snprintf(buf, sizeof buf, "127.0.0.1 localhost %s\n::1 localhost ip6-localhost ip6-loopback\n",
             c->hostname);
    write_file("upper/etc/hosts", buf, "etc");
    int lower = open(c->lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (lower < 0)
        b_fail("overlay");
    snprintf(opts, sizeof opts, "lowerdir=/proc/self/fd/%d,upperdir=upper,workdir=work", lower);
    if (mount("overlay", root, "overlay", 0, opts) < 0)
        b_fail("overlay");
    close(lower); /* the mount holds its own reference */
}

/* Mounts src/type at root/rel; mkdir's the mount point first (a minimal template may lack it). */
static void mount_in(const char *root, const char *rel, const char *src, const char *type,
                     unsigned long flags, const char *opts, const char *step)
{
    char p[PATH_MAX];
    path2(p, root, rel);
    mkdir_ok(p, 0755, step);
    if (mount(src, p, type, flags, opts) < 0)
        b_fail(step);
}

/* §1 step 4: /proc, /sys, /dev and the /proc masks, all before pivot_root. */
static void mount_specials(const char *root)
{
    char p[PATH_MAX], q[PATH_MAX];
    mount_in(root, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "proc");
    mount_in(root, "dev", "tmpfs", "tmpfs", MS_NOSUID, "mode=0755", "dev");

    static const struct { const char *name; unsigned maj, min; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
        {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
    };
    mode_t old = umask(0); /* the nodes must really be 0666 */
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        path2(q, root, "dev");
        path2(p, q, nodes[i].name);
        if (mknod(p, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) < 0)
            b_fail("dev");
    }
    umask(old);
    static const struct { const char *name, *target; } links[] = {
        {"dev/fd", "/proc/self/fd"},         {"dev/stdin", "/proc/self/fd/0"},
        {"dev/stdout", "/proc/self/fd/1"},   {"dev/stderr", "/proc/self/fd/2"},
        {"dev/ptmx", "pts/ptmx"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        path2(p, root, links[i].name);
        if (symlink(links[i].target, p) < 0)
            b_fail("dev");
    }
    mount_in(root, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5", "devpts");
    mount_in(root, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", "shm");

    /* Masks. A path this kernel does not have (ENOENT) needs no mask. */
    static const char *const ro[] = {"proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus",
                                     "proc/fs"};
    for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
        path2(p, root, ro[i]);
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            b_fail("mask");
        }
        /* A bind cannot be made read-only in the same call: remount it. */
        if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  NULL) < 0)
            b_fail("mask");
    }
    static const char *const nulled[] = {"proc/kcore", "proc/keys", "proc/timer_list",
                                         "proc/sched_debug"};
    path2(q, root, "dev/null");
    for (size_t i = 0; i < sizeof nulled / sizeof nulled[0]; i++) {
        path2(p, root, nulled[i]);
        if (mount(q, p, NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
            b_fail("mask");
    }
    static const char *const empty[] = {"proc/acpi", "proc/scsi"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        path2(p, root, empty[i]);
        if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
            errno != ENOENT)
            b_fail("mask");
    }
}

/* §1 step 5: bound on the host path before pivot_root hides it; the fd keeps working after. */
static int make_listener(const struct config *c)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        b_fail("socket");
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, c->ctl, strlen(c->ctl) + 1); /* length checked in parse_args */
    /* A stale socket from an earlier init of this state dir would make bind fail. */
    if (unlink(c->ctl) < 0 && errno != ENOENT)
        b_fail("socket");
    /* The socket file takes its mode from the umask at bind: 0600 with no window. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0)
        b_fail("bind");
    if (listen(fd, 16) < 0)
        b_fail("listen");
    return fd;
}

static void lo_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        b_fail("lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        b_fail("lo");
    ifr.ifr_flags |= IFF_UP; /* the kernel adds 127.0.0.1/8 and ::1 when lo comes up */
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        b_fail("lo");
    close(s);
}

/* Closes every fd >= 3 except keep1 and keep2. */
static void close_others(int keep1, int keep2)
{
    int lo = keep1 < keep2 ? keep1 : keep2, hi = keep1 < keep2 ? keep2 : keep1;
    if ((lo > 3 && close_range(3, (unsigned)lo - 1, 0) < 0) ||
        (hi > lo + 1 && close_range((unsigned)lo + 1, (unsigned)hi - 1, 0) < 0) ||
        close_range((unsigned)hi + 1, ~0U, 0) < 0)
        b_fail("fds");
}

/* ---------------------------------------------------------------- process B: event loop */

/* Large buffers are static (.bss): untouched pages cost no memory. */
static char inbuf[MSG_MAX + 1] __attribute__((aligned(4096)));
static char outbuf[MSG_MAX] __attribute__((aligned(4096)));

static int clients[MAX_CLIENTS], nclients;
static pid_t *procs; /* pids spawned through SPAWN and not yet reaped */
static size_t nprocs, capprocs;
static struct sock_fprog filter;

static void drop_client(int fd)
{
    for (int i = 0; i < nclients; i++)
        if (clients[i] == fd) {
            clients[i] = clients[--nclients];
            break;
        }
    close(fd); /* also removes it from the epoll set */
}

/* Never blocks and never raises SIGPIPE: a client that is gone, or so far behind that its
 * queue is full, is dropped (it reconnects and resyncs with LIST). Returns -1 if dropped. */
static int send_msg(int fd, const void *buf, size_t len)
{
    if (send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len)
        return 0;
    drop_client(fd);
    return -1;
}

static void reply_ack(int fd, uint32_t seq, int err)
{
    struct ack_rep r = {{REP_ACK, seq}, err};
    send_msg(fd, &r, sizeof r);
}

static void reply_spawned(int fd, uint32_t seq, int err, pid_t pid, const char *step)
{
    struct spawned_rep r = {{REP_SPAWNED, seq}, err, (uint32_t)pid};
    size_t n = strlen(step) + 1;
    memcpy(outbuf, &r, sizeof r);
    memcpy(outbuf + sizeof r, step, n);
    send_msg(fd, outbuf, sizeof r + n);
}

static void do_spawn(int fd, uint32_t seq, size_t len, const int *fds, int nfds)
{
    struct spawn_args a;
    memset(&a, 0, sizeof a);
    if (nfds != 3) {
        reply_spawned(fd, seq, EINVAL, 0, "fds");
        return;
    }
    int err = spawn_parse(inbuf, len, &a);
    if (err) {
        reply_spawned(fd, seq, err, 0, "request");
        return;
    }
    /* Grow the table before forking: once the child runs, it must be tracked. */
    if (nprocs == capprocs) {
        size_t n = capprocs ? capprocs * 2 : 16;
        pid_t *p = realloc(procs, n * sizeof *p);
        if (!p) {
            spawn_args_free(&a);
            reply_spawned(fd, seq, ENOMEM, 0, "table");
            return;
        }
        procs = p;
        capprocs = n;
    }
    memcpy(a.fds, fds, sizeof a.fds);
    const char *step = "";
    pid_t pid = spawn_start(&a, &step);
    spawn_args_free(&a);
    if (pid < 0) {
        reply_spawned(fd, seq, -pid, 0, step);
        return;
    }
    procs[nprocs++] = pid;
    reply_spawned(fd, seq, 0, pid, "");
}

static void do_signal(int fd, uint32_t seq, size_t len)
{
    struct signal_req r;
    if (len != sizeof r) {
        reply_ack(fd, seq, EINVAL);
        return;
    }
    memcpy(&r, inbuf, sizeof r);
    /* pid 1 is init itself, and -1 would be every process: neither is a target. */
    if (r.pid <= 1 || r.pid > INT_MAX || (r.flags & ~(uint32_t)SIGNAL_GROUP)) {
        reply_ack(fd, seq, EINVAL);
        return;
    }
    pid_t target = (r.flags & SIGNAL_GROUP) ? -(pid_t)r.pid : (pid_t)r.pid;
    reply_ack(fd, seq, kill(target, r.signo) < 0 ? errno : 0);
}

static void do_list(int fd, uint32_t seq)
{
    size_t max = (MSG_MAX - sizeof(struct list_rep)) / sizeof(uint32_t);
    size_t n = nprocs < max ? nprocs : max;
    struct list_rep r = {{REP_LIST, seq}, (uint32_t)n};
    memcpy(outbuf, &r, sizeof r);
    for (size_t i = 0; i < n; i++) {
        uint32_t p = (uint32_t)procs[i];
        memcpy(outbuf + sizeof r + i * 4, &p, 4);
    }
    send_msg(fd, outbuf, sizeof r + n * 4);
}

static void client_readable(int fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
    } cm;
    struct iovec iov = {inbuf, sizeof inbuf};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cm.buf;
    mh.msg_controllen = sizeof cm.buf;
    /* MSG_CMSG_CLOEXEC: a received fd must never leak into an unrelated child's exec. */
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            drop_client(fd);
        return;
    }
    int fds[MAX_RECV_FDS], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k && nfds < MAX_RECV_FDS; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (n == 0) { /* EOF (SEQPACKET has no empty messages worth keeping) */
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        drop_client(fd);
        return;
    }
    struct msg_hdr h = {0, 0};
    if ((size_t)n >= sizeof h)
        memcpy(&h, inbuf, sizeof h);
    if ((size_t)n < sizeof h || (size_t)n > MSG_MAX || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        if (h.type == REQ_SPAWN)
            reply_spawned(fd, h.seq, EMSGSIZE, 0, "request");
        else
            reply_ack(fd, h.seq, (size_t)n < sizeof h ? EINVAL : EMSGSIZE);
    } else if (h.type == REQ_SPAWN) {
        do_spawn(fd, h.seq, (size_t)n, fds, nfds);
    } else if (h.type == REQ_SIGNAL) {
        do_signal(fd, h.seq, (size_t)n);
    } else if (h.type == REQ_PING) {
        reply_ack(fd, h.seq, 0);
    } else if (h.type == REQ_LIST) {
        do_list(fd, h.seq);
    } else {
        reply_ack(fd, h.seq, ENOSYS);
    }
    /* The child has its own copies (or there is no child): B must not keep them, or the
     * server would never see EOF on the process's stdout. */
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    /* A big request touched many buffer pages: give them back to keep idle RSS tiny. */
    if (n > 64 * 1024)
        madvise(inbuf, sizeof inbuf, MADV_DONTNEED);
}

static void accept_clients(int lfd, int ep)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return; /* EAGAIN, or a connection that vanished */
        if (nclients == MAX_CLIENTS) {
            close(fd);
            continue;
        }
        /* Room for a full LIST reply and a burst of EXIT events. SO_SNDBUFFORCE because we
         * are root and net.core.wmem_max may be small; it is a limit, not an allocation. */
        int sz = CLIENT_SNDBUF;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
        clients[nclients++] = fd;
    }
}

static void reap(int sfd)
{
    struct signalfd_siginfo si;
    /* Drain first, then wait: SIGCHLD coalesces, so one signal may stand for many exits. */
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    }
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        size_t i;
        for (i = 0; i < nprocs && procs[i] != pid; i++) {
        }
        if (i == nprocs)
            continue; /* an orphan re-parented to init: reaped silently */
        procs[i] = procs[--nprocs];
        struct exit_ev ev = {{EV_EXIT, 0}, (uint32_t)pid, st};
        /* Backwards, because send_msg may drop (swap-remove) the current client. */
        for (int c = nclients - 1; c >= 0; c--)
            send_msg(clients[c], &ev, sizeof ev);
    }
}

static _Noreturn void event_loop(int lfd)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || ep < 0)
        _exit(2);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        _exit(2);
    ev.data.fd = sfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0)
        _exit(2);
    reap(sfd); /* anything that exited before the signalfd existed */
    for (;;) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            _exit(2); /* EBADF/EINVAL: a bug; dying takes the sandbox down visibly */
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                accept_clients(lfd, ep);
            } else if (fd == sfd) {
                reap(sfd);
            } else {
                /* The fd may have been dropped earlier in this batch (and even reused by
                 * accept): only act on current clients; recv is non-blocking anyway. */
                int known = 0;
                for (int c = 0; c < nclients; c++)
                    known |= clients[c] == fd;
                if (!known)
                    continue;
                if (evs[i].events & EPOLLIN)
                    client_readable(fd); /* reads EOF itself when the peer is gone */
                else if (evs[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                    drop_client(fd);
            }
        }
    }
}

/* ---------------------------------------------------------------- process B: main */

/* What every spawned process must not have, set once in B and inherited by each SPAWN child
 * (which therefore neither loops over the bounding set nor compiles and loads a filter per exec).
 * B keeps its effective capabilities (the bounding set only limits what an exec can gain), and
 * needs none of the filtered syscalls after its setup. Loading a filter without no_new_privs
 * needs CAP_SYS_ADMIN, which B holds. */
static void harden(void)
{
    /* Loop until the kernel says the cap number is past its last one (EINVAL). */
    for (int c = 0; c < 64; c++) {
        if (SANDBOX_CAPS & CAPBIT(c))
            continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break;
            b_fail("capbset");
        }
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) < 0)
        b_fail("seccomp");
}

static _Noreturn void init_main(const struct config *c)
{
    char root[PATH_MAX];
    umask(022); /* deterministic for the files we write and for every spawned process */
    /* SIGCHLD must not be ignored (children would be auto-reaped, EXIT lost) and is consumed
     * through a signalfd, so block it before any child can exist. SIGPIPE: belt and braces
     * next to MSG_NOSIGNAL. Children reset both. */
    /* Dispositions are inherited across fork and (ignored ones) across exec, from A, the zygote
     * and the server: start every spawned process from the defaults, so the SPAWN child only has
     * to undo what B sets here (docs/init-protocol.md, SPAWN). EINVAL for SIGKILL/SIGSTOP and
     * glibc's internal signals is expected. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &dfl, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    /* Out of the server's session and process group at once (B was forked, so it is not a group
     * leader): a signal to the server's terminal group must not reach a sandbox. */
    if (setsid() < 0)
        b_fail("setsid");

    mount_root(c, root);
    mount_specials(root);
    int lfd = make_listener(c);

    /* §1 step 6. pivot_root(".", ".") stacks the old root under the new one at "/"; the lazy
     * unmount then drops the host's tree from this namespace entirely. */
    if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        b_fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        b_fail("pivot_root");
    if (sethostname(c->hostname, strlen(c->hostname)) < 0)
        b_fail("hostname");

    /* §1 step 7. The root the server will open as /proc/<B>/root is final. After this write A
     * exits and B is re-parented to the host's init. */
    if (write_all(ready_fd, "ok\n", 3) < 0)
        _exit(1);
    close(ready_fd);
    ready_fd = -1; /* a failure from here on is B's exit, seen by the server as a closed socket */

    /* §1 step 8, while the server finishes the create: nothing inside runs before the event loop
     * starts (the first SPAWN is read there), so this setup overlaps the server's own work. The
     * network namespace is B's own, made here; the server never uses /proc/<B>/ns/net while it is
     * still the host's (LinuxSandboxNetwork checks). */
    if (unshare(CLONE_NEWNET) < 0)
        b_fail("netns");
    /* sysfs shows the network devices of the namespace that mounts it: mounted only now, it
     * shows the sandbox's lo, never the host's interfaces. */
    mount_in("/", "sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
             "sysfs");
    lo_up();
    /* Init keeps full capabilities: nothing inside may ptrace it or read /proc/1/mem etc. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        b_fail("dumpable");
    /* A reader of A's stdout until EOF (a standalone start) must not wait on B: 0-2 to /dev/null. */
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0)
        b_fail("fds");
    for (int i = 0; i < 3; i++)
        if (i != nul && dup2(nul, i) < 0)
            b_fail("fds");
    if (nul > 2)
        close(nul);
    close_others(lfd, lfd);
    scrub_cmdline(); /* c's strings are dead from here on */
    harden();
    event_loop(lfd);
}

static int filter_built;

/* Process A: start one sandbox (section 1). Returns the exit status; stdout says what happened. */
static int create_main(int argc, char **argv)
{
    struct config c;
    parse_args(argc, argv, &c);
    if (!filter_built) {
        int rc = seccomp_build(&filter);
        if (rc < 0)
            a_fail("seccomp", -rc);
    }
    make_dirs(&c);
    for (int i = 0; i < c.ncgroups; i++)
        join_cgroup(c.cgroups[i]);
    /* Host paths A still needs once B has pivoted (the mount namespace is shared with B). */
    int statefd = open(c.state, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (statefd < 0 || procfd < 0)
        a_fail("state", errno);

    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        a_fail("pipe", errno);
    /* A stays in the host pid namespace; its next child is PID 1 of the new one. */
    /* The network namespace is made by B itself, after it has said ok (step 8). */
    if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWCGROUP) < 0)
        a_fail("unshare", errno);
    fflush(stdout); /* nothing buffered may be printed twice */
    pid_t pid = fork();
    if (pid < 0)
        a_fail("fork", errno);
    if (pid == 0) {
        close(ready[0]);
        ready_fd = ready[1];
        init_main(&c);
    }
    close(ready[1]);

    char msg[512];
    size_t len = 0;
    while (len < sizeof msg - 1) {
        ssize_t n = read(ready[0], msg + len, sizeof msg - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(msg, '\n', len))
            break;
    }
    msg[len] = '\0';
    if (!strcmp(msg, "ok\n")) {
        /* <state>/init.pid: how the server (and a restarted one) finds and kills this init. */
        unsigned long long st = start_time(procfd, pid);
        char line[64];
        int n = snprintf(line, sizeof line, "%d %llu", (int)pid, st);
        int fd = openat(statefd, "init.pid", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || write_all(fd, line, (size_t)n) < 0 || close(fd) < 0) {
            kill(pid, SIGKILL);
            a_fail("pidfile", errno);
        }
        printf("%sok %s\n", reply_prefix, line);
        fflush(stdout);
        return 0;
    }
    /* B failed (and exits) or died: report and reap it. */
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!strncmp(msg, "error ", 6) && memchr(msg, '\n', len))
        printf("%s%s", reply_prefix, msg);
    else if (WIFSIGNALED(st))
        printf("%serror init: killed by signal %d\n", reply_prefix, WTERMSIG(st));
    else
        printf("%serror init: exited with status %d\n", reply_prefix, WEXITSTATUS(st));
    fflush(stdout);
    return 1;
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Section 1a: the zygote. Started once by the server, single-threaded; reads requests from stdin
 * (u32 length, then "<seq>\0<arg>\0<arg>\0..." with the arguments of section 1), forks a process A
 * per request and goes back to reading. A writes "<seq> ok <pid>\n" or "<seq> error ...\n" to the
 * shared stdout pipe in one write (shorter than PIPE_BUF, so never interleaved) and exits. Saves
 * the server a fork+exec of a ~25-thread process, the helper's exec and dynamic linking, and the
 * seccomp compilation, per sandbox. EOF on stdin (the server is gone) ends the zygote; sandboxes
 * it started are not its children (A exits, B is re-parented to the host's init). */
static int zygote_main(int argc, char **argv)
{
    saved_argc = argc;
    saved_argv = argv;
    if (seccomp_build(&filter) == 0)
        filter_built = 1; /* otherwise each A tries again and reports the error */
    signal(SIGCHLD, SIG_IGN); /* A processes are reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    static char buf[65536];
    static char prefix[32];
    for (;;) {
        uint32_t len;
        if (read_full(0, &len, sizeof len) < 0)
            return 0;
        if (len == 0 || len >= sizeof buf)
            return 2; /* not our server: stop rather than guess */
        if (read_full(0, buf, len) < 0)
            return 0;
        buf[len] = '\0';
        char *args[ZYGOTE_MAX_ARGS + 1];
        int n = 0;
        char *p = buf;
        for (; p < buf + len && n < ZYGOTE_MAX_ARGS; p += strlen(p) + 1)
            args[n++] = p;
        args[n] = NULL;
        if (strlen(args[0]) > 20)
            return 2;
        /* Never run with part of a request: a dropped --cgroup-set would be a sandbox without a limit. */
        if (p < buf + len) {
            dprintf(1, "%s error args: %s\n", args[0], strerror(E2BIG));
            continue;
        }
        pid_t pid = fork();
        if (pid < 0) {
            dprintf(1, "%s error fork: %s\n", args[0], strerror(errno));
            continue;
        }
        if (pid == 0) {
            signal(SIGCHLD, SIG_DFL);
            signal(SIGPIPE, SIG_DFL);
            int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (null >= 0) {
                dup2(null, 0); /* the request pipe stays the zygote's alone */
                close(null);
            }
            snprintf(prefix, sizeof prefix, "%s ", args[0]);
            reply_prefix = prefix;
            args[0] = argv[0];
            exit(create_main(n, args));
        }
    }
}

int main(int argc, char **argv)
{
    /* Make sure 0-2 are open, so no fd we create lands there and is later replaced. */
    for (;;) {
        int fd = open("/dev/null", O_RDWR);
        if (fd < 0 || fd > 2) {
            if (fd > 2)
                close(fd);
            break;
        }
    }
    if (argc == 2 && !strcmp(argv[1], "--zygote"))
        return zygote_main(argc, argv);
    saved_argc = argc;
    saved_argv = argv;
    return create_main(argc, argv);
}
