/* SPAWN: parse the request, fork, and do in the child the steps .NET cannot do between fork and
 * exec (docs/init-protocol.md, "SPAWN"). */
#include <errno.h>
#include <fcntl.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <grp.h>
#include <linux/seccomp.h>

#include "proto.h"

extern char **environ;

/* Steps the child reports on failure; the index travels on the pipe, the name in SPAWNED. */
enum step {
    ST_SETSID, ST_DUP2, ST_TIOCSCTTY, ST_CLOSE_RANGE, ST_SIGNALS, ST_CHDIR, ST_CAPBSET,
    ST_SECCOMP, ST_SETGROUPS, ST_SETGID, ST_KEEPCAPS, ST_SETUID, ST_SECUREBITS, ST_CAPSET,
    ST_AMBIENT, ST_NO_NEW_PRIVS, ST_EXEC, ST_COUNT
};
static const char *const step_names[ST_COUNT] = {
    "setsid", "dup2", "tiocsctty", "close_range", "signals", "chdir", "capbset",
    "seccomp", "setgroups", "setgid", "keepcaps", "setuid", "securebits", "capset",
    "ambient", "no_new_privs", "exec",
};

/* Reads a NUL-terminated string at *off; returns NULL if it runs past the message. */
static char *take_string(char *msg, size_t len, size_t *off)
{
    if (*off >= len)
        return NULL;
    char *s = msg + *off;
    char *nul = memchr(s, '\0', len - *off);
    if (!nul)
        return NULL;
    *off = (size_t)(nul - msg) + 1;
    return s;
}

int spawn_parse(char *msg, size_t len, struct spawn_args *a)
{
    struct spawn_req r;
    if (len < sizeof r)
        return EINVAL;
    memcpy(&r, msg, sizeof r);
    /* Each string takes at least one byte, so the counts are bounded by the message size;
     * this also keeps the pointer-array sizes below from overflowing. */
    if (r.argc == 0 || r.argc > len || r.envc > len)
        return EINVAL;
    a->uid = r.uid;
    a->gid = r.gid;
    a->flags = r.flags;
    if (r.flags & ~(uint32_t)(SPAWN_PTY | SPAWN_ROOT_CAPS | SPAWN_NO_NEW_PRIVS))
        return EINVAL;
    /* One allocation for both arrays; freed right after fork (the child has its own copy). */
    char **v = malloc(((size_t)r.argc + 1 + (size_t)r.envc + 1) * sizeof(char *));
    if (!v)
        return ENOMEM;
    a->argv = v;
    a->envp = v + r.argc + 1;
    size_t off = sizeof r;
    if (!(a->cwd = take_string(msg, len, &off)))
        goto bad;
    for (uint32_t i = 0; i < r.argc; i++)
        if (!(a->argv[i] = take_string(msg, len, &off)))
            goto bad;
    a->argv[r.argc] = NULL;
    for (uint32_t i = 0; i < r.envc; i++)
        if (!(a->envp[i] = take_string(msg, len, &off)))
            goto bad;
    a->envp[r.envc] = NULL;
    if (off != len)
        goto bad;
    return 0;
bad:
    spawn_args_free(a);
    return EINVAL;
}

void spawn_args_free(struct spawn_args *a)
{
    free(a->argv);
    a->argv = a->envp = NULL;
}

/* In the child: report (step, errno) to B and die. Never returns into B's event loop. */
static _Noreturn void child_fail(int rep, int step)
{
    int msg[2] = {step, errno};
    /* 8 bytes to a pipe is one atomic write; nothing useful to do if it fails. */
    if (write(rep, msg, sizeof msg) < 0) {
    }
    _exit(127);
}

static int capset_all(uint64_t caps)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    for (int i = 0; i < 2; i++) {
        uint32_t w = (uint32_t)(caps >> (32 * i));
        d[i].effective = d[i].permitted = d[i].inheritable = w;
    }
    return (int)syscall(SYS_capset, &h, d);
}

static _Noreturn void child(const struct spawn_args *a, const struct sock_fprog *filter, int rep)
{
    const int root_caps = (a->flags & SPAWN_ROOT_CAPS) != 0;

    /* Own session and process group, so SIGNAL with flags=1 (-pid) reaches exactly this job. */
    if (setsid() < 0)
        child_fail(rep, ST_SETSID);
    /* The received fds are all >= 3 (B's 0-2 are /dev/null), so these dup2s cannot clobber
     * one another. dup2 also clears the CLOEXEC flag they were received with. */
    for (int i = 0; i < 3; i++)
        if (dup2(a->fds[i], i) < 0)
            child_fail(rep, ST_DUP2);
    /* After dup2 (not before, as fd 0 is /dev/null until then) and after setsid, so the
     * pty becomes this new session's controlling terminal. */
    if ((a->flags & SPAWN_PTY) && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(rep, ST_TIOCSCTTY);
    /* Close everything inherited from B (listen and client sockets, epoll, signalfd, the
     * received originals) except the report pipe, which is CLOEXEC and goes at exec. */
    if ((rep > 3 && close_range(3, (unsigned)rep - 1, 0) < 0) ||
        close_range((unsigned)rep + 1, ~0U, 0) < 0)
        child_fail(rep, ST_CLOSE_RANGE);
    /* B ignores SIGPIPE and blocks SIGCHLD (and its own parent may have ignored more):
     * ignored dispositions and the mask survive exec, so reset them. Handlers do not survive
     * exec, but resetting everything is simplest. EINVAL for SIGKILL/SIGSTOP and glibc's
     * internal signals is expected and harmless. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        child_fail(rep, ST_SIGNALS);
    if (chdir(a->cwd) < 0)
        child_fail(rep, ST_CHDIR);
    /* Bounding set: needs CAP_SETPCAP, so before setuid. Loop until the kernel says the cap
     * number is past its last one (EINVAL) rather than reading /proc/sys each time. */
    for (int c = 0; c < 64; c++) {
        if (SANDBOX_CAPS & CAPBIT(c))
            continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break;
            child_fail(rep, ST_CAPBSET);
        }
    }
    /* Loading a filter without no_new_privs needs CAP_SYS_ADMIN, still held here (only the
     * bounding set was reduced). The filter allows everything that follows. */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) < 0)
        child_fail(rep, ST_SECCOMP);
    gid_t g = a->gid;
    if (setgroups(1, &g) < 0)
        child_fail(rep, ST_SETGROUPS);
    if (setresgid(a->gid, a->gid, a->gid) < 0)
        child_fail(rep, ST_SETGID);
    /* A non-root uid that must keep caps: keep permitted across setuid (KEEPCAPS is cleared
     * again by exec), then make them ambient below so they also survive exec. */
    if (root_caps && a->uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        child_fail(rep, ST_KEEPCAPS);
    if (setresuid(a->uid, a->uid, a->uid) < 0)
        child_fail(rep, ST_SETUID);
    /* uid 0 without ROOT_CAPS: exec would hand root the whole bounding set again. NOROOT
     * (locked, inherited) stops uid 0 and setuid-root binaries from gaining caps. */
    if (!root_caps && a->uid == 0 &&
        prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) < 0)
        child_fail(rep, ST_SECUREBITS);
    /* Either exactly the sandbox set or nothing. Lowering permitted also trims ambient. */
    if (capset_all(root_caps ? SANDBOX_CAPS : 0) < 0)
        child_fail(rep, ST_CAPSET);
    if (root_caps && a->uid != 0)
        for (int c = 0; c < 64; c++)
            if ((SANDBOX_CAPS & CAPBIT(c)) &&
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
                child_fail(rep, ST_AMBIENT);
    if ((a->flags & SPAWN_NO_NEW_PRIVS) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(rep, ST_NO_NEW_PRIVS);
    /* execvp looks PATH up in environ, so switch environ first: PATH is the sandbox's. */
    environ = a->envp;
    execvp(a->argv[0], a->argv);
    child_fail(rep, ST_EXEC);
}

pid_t spawn_start(const struct spawn_args *a, const struct sock_fprog *filter, const char **step)
{
    int p[2];
    /* CLOEXEC: a successful exec closes the write end, which B sees as EOF = started. */
    if (pipe2(p, O_CLOEXEC) < 0) {
        *step = "pipe";
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        *step = "fork";
        return -e;
    }
    if (pid == 0) {
        close(p[0]);
        child(a, filter, p[1]);
    }
    close(p[1]);
    int msg[2];
    ssize_t n;
    do
        n = read(p[0], msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == 0)
        return pid; /* exec'd */
    /* The child is exiting (or, if the pipe misbehaved, is made to). It is not in the spawn
     * table, so the event loop reaps it silently and no EXIT is sent. */
    if (n != (ssize_t)sizeof msg || msg[0] < 0 || msg[0] >= ST_COUNT) {
        kill(pid, SIGKILL);
        *step = "spawn";
        return -EIO;
    }
    *step = step_names[msg[0]];
    return -(msg[1] ? msg[1] : EIO);
}
