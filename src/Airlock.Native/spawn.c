/* SPAWN: parse the request, start the child, and do in it the steps .NET cannot do between fork
 * and exec (docs/init-protocol.md, "SPAWN"). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto.h"

/* Steps the child reports on failure; the index travels in the shared report, the name in SPAWNED. */
enum step {
    ST_SETSID, ST_DUP2, ST_TIOCSCTTY, ST_CLOSE_RANGE, ST_SIGNALS, ST_CHDIR, ST_SETGROUPS,
    ST_SETGID, ST_KEEPCAPS, ST_SETUID, ST_SECUREBITS, ST_CAPSET, ST_AMBIENT, ST_NO_NEW_PRIVS,
    ST_EXEC, ST_COUNT
};
static const char *const step_names[ST_COUNT] = {
    "setsid", "dup2", "tiocsctty", "close_range", "signals", "chdir", "setgroups",
    "setgid", "keepcaps", "setuid", "securebits", "capset", "ambient", "no_new_privs", "exec",
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
    /* One allocation for both arrays, freed once the child has exec'd. argv has a spare slot in
     * front: the ENOEXEC fallback runs "/bin/sh <path> <args...>" in place (see exec_path). */
    char **v = malloc((1 + (size_t)r.argc + 1 + (size_t)r.envc + 1) * sizeof(char *));
    if (!v)
        return ENOMEM;
    a->argv = v + 1;
    a->envp = v + 1 + r.argc + 1;
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
    free(a->argv ? a->argv - 1 : NULL);
    a->argv = a->envp = NULL;
}

/* The child shares B's memory until it execs (CLONE_VM|CLONE_VFORK, as posix_spawn does): no
 * page-table copy, and B sleeps until the exec (or the child's death) wakes it. A failing child
 * leaves (step, errno) here and dies; B reads it once it runs again. */
static volatile int report_step, report_err;

static _Noreturn void child_fail(int step)
{
    report_err = errno;
    report_step = step;
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

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (; *envp; envp++)
        if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

/* execve one candidate; on ENOEXEC run it with /bin/sh as execvp does (argv[-1] is spare). */
static void exec_path(const char *path, char **argv, char **envp)
{
    execve(path, argv, envp);
    if (errno == ENOEXEC) {
        argv[-1] = "/bin/sh";
        argv[0] = (char *)path;
        execve("/bin/sh", argv - 1, envp);
        errno = ENOEXEC;
    }
}

/* execvp with PATH taken from the child's own environment (environ is B's: shared memory). */
static void exec_search(char **argv, char **envp)
{
    const char *file = argv[0];
    if (!*file) {
        errno = ENOENT;
        return;
    }
    if (strchr(file, '/')) {
        exec_path(file, argv, envp);
        return;
    }
    const char *path = env_get(envp, "PATH");
    if (!path)
        path = "/bin:/usr/bin"; /* glibc's default */
    size_t flen = strlen(file);
    char buf[PATH_MAX];
    int eacces = 0;
    for (const char *p = path;; p++) {
        const char *colon = strchr(p, ':');
        size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
        if (dlen + 1 + flen < sizeof buf) {
            /* An empty element is the current directory. */
            size_t k = 0;
            if (dlen) {
                memcpy(buf, p, dlen);
                buf[dlen] = '/';
                k = dlen + 1;
            }
            memcpy(buf + k, file, flen + 1);
            exec_path(buf, argv, envp);
            switch (errno) {
            case EACCES:
                eacces = 1;
                break;
            case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT: case ENAMETOOLONG:
                break;
            default:
                return; /* a real error with this file: stop here, as execvp does */
            }
        }
        if (!colon)
            break;
        p = colon;
    }
    errno = eacces ? EACCES : ENOENT;
}

struct child_args {
    const struct spawn_args *a;
};

/* Runs on its own stack in B's memory. Only per-task state is changed (creds, session, fds and
 * signal dispositions are the child's own copies: no CLONE_FILES/CLONE_FS/CLONE_SIGHAND). The
 * bounding set, the seccomp filter and B's signal dispositions were set up once in B (§1 step 8),
 * so the child inherits them instead of building them each time. */
static int child(void *arg)
{
    const struct spawn_args *a = ((struct child_args *)arg)->a;
    const int root_caps = (a->flags & SPAWN_ROOT_CAPS) != 0;

    /* Own session and process group, so SIGNAL with flags=1 (-pid) reaches exactly this job. */
    if (setsid() < 0)
        child_fail(ST_SETSID);
    /* The received fds are all >= 3 (B's 0-2 are /dev/null), so these dup2s cannot clobber
     * one another. dup2 also clears the CLOEXEC flag they were received with. */
    for (int i = 0; i < 3; i++)
        if (dup2(a->fds[i], i) < 0)
            child_fail(ST_DUP2);
    /* After dup2 (not before, as fd 0 is /dev/null until then) and after setsid, so the
     * pty becomes this new session's controlling terminal. */
    if ((a->flags & SPAWN_PTY) && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(ST_TIOCSCTTY);
    /* Close everything inherited from B (listen and client sockets, epoll, signalfd, the
     * received originals). */
    if (close_range(3, ~0U, 0) < 0)
        child_fail(ST_CLOSE_RANGE);
    /* B ignores SIGPIPE and blocks SIGCHLD; every other disposition is already the default. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigset_t none;
    sigemptyset(&none);
    if (sigaction(SIGPIPE, &dfl, NULL) < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        child_fail(ST_SIGNALS);
    if (chdir(a->cwd) < 0)
        child_fail(ST_CHDIR);
    /* Raw syscalls: glibc's set*id wrappers may broadcast to "all threads" through shared state. */
    gid_t g = a->gid;
    if (syscall(SYS_setgroups, 1, &g) < 0)
        child_fail(ST_SETGROUPS);
    if (syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0)
        child_fail(ST_SETGID);
    /* A non-root uid that must keep caps: keep permitted across setuid (KEEPCAPS is cleared
     * again by exec), then make them ambient below so they also survive exec. */
    if (root_caps && a->uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        child_fail(ST_KEEPCAPS);
    if (syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
        child_fail(ST_SETUID);
    /* uid 0 without ROOT_CAPS: exec would hand root the whole bounding set again. NOROOT
     * (locked, inherited) stops uid 0 and setuid-root binaries from gaining caps. */
    if (!root_caps && a->uid == 0 &&
        prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) < 0)
        child_fail(ST_SECUREBITS);
    /* Either exactly the sandbox set or nothing. Lowering permitted also trims ambient. */
    if (capset_all(root_caps ? SANDBOX_CAPS : 0) < 0)
        child_fail(ST_CAPSET);
    if (root_caps && a->uid != 0)
        for (int c = 0; c < 64; c++)
            if ((SANDBOX_CAPS & CAPBIT(c)) &&
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
                child_fail(ST_AMBIENT);
    if ((a->flags & SPAWN_NO_NEW_PRIVS) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(ST_NO_NEW_PRIVS);
    exec_search(a->argv, a->envp);
    child_fail(ST_EXEC);
}

/* The child's stack: B is single-threaded and the parent sleeps while the child runs, so one
 * static stack serves every spawn. */
static char child_stack[128 * 1024] __attribute__((aligned(16)));

pid_t spawn_start(const struct spawn_args *a, const char **step)
{
    struct child_args ca = {a};
    report_step = -1;
    report_err = 0;
    pid_t pid = clone(child, child_stack + sizeof child_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &ca);
    if (pid < 0) {
        *step = "fork";
        return -errno;
    }
    /* B runs again: the child has exec'd, or died. */
    if (report_step < 0)
        return pid; /* exec'd (or killed before it could report: its EXIT tells) */
    /* The child has exited. It is not in the spawn table, so the event loop reaps it silently
     * and no EXIT is sent. */
    int s = report_step;
    *step = s < ST_COUNT ? step_names[s] : "spawn";
    return -(report_err ? report_err : EIO);
}
