/* The seccomp deny list (docs/init-protocol.md, "Seccomp deny list").
 *
 * Built once, with libseccomp, before the sandbox starts, and exported as a classic BPF program.
 * Every SPAWN child then loads that ready-made program with one seccomp(2) call: compiling the
 * filter per spawn would cost far more than the rest of the fork/exec path. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto.h"

static const int denied[] = {
    SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(swapon),
    SCMP_SYS(swapoff), SCMP_SYS(reboot), SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load),
    SCMP_SYS(init_module), SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(bpf),
    SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key), SCMP_SYS(perf_event_open),
    SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at), SCMP_SYS(userfaultfd),
    SCMP_SYS(unshare), SCMP_SYS(setns), SCMP_SYS(iopl), SCMP_SYS(ioperm), SCMP_SYS(acct),
    SCMP_SYS(quotactl), SCMP_SYS(quotactl_fd), SCMP_SYS(syslog), SCMP_SYS(lookup_dcookie),
    SCMP_SYS(fsopen), SCMP_SYS(fsconfig), SCMP_SYS(fsmount), SCMP_SYS(fspick),
    SCMP_SYS(move_mount), SCMP_SYS(open_tree), SCMP_SYS(mount_setattr), SCMP_SYS(uselib),
    SCMP_SYS(vhangup), SCMP_SYS(settimeofday), SCMP_SYS(clock_settime), SCMP_SYS(clock_adjtime),
    SCMP_SYS(adjtimex),
    /* io_uring runs operations from kernel workers that this filter never sees (and has a long
     * record of kernel bugs): refused outright, as Docker and Android do. */
    SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
};

/* clone(2)'s namespace flags. CLONE_NEWTIME (0x80) is left out on purpose: in clone()'s flags
 * that bit belongs to the exit signal (CSIGNAL); a time namespace needs unshare or clone3,
 * which are both refused anyway. */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};

int seccomp_build(struct sock_fprog *out)
{
    int rc = -ENOMEM, fd = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return -ENOMEM;
    /* Only the native arch is allowed: a process switching ABI (int 0x80, x32) is killed
     * rather than given a syscall table this list was not written for. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
        goto out;
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
        if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0)) < 0)
            goto out;
    /* Rules for one syscall are OR'ed: deny clone if any one namespace bit is set. */
    for (size_t i = 0; i < sizeof clone_ns_flags / sizeof clone_ns_flags[0]; i++)
        if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                   SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i],
                                           clone_ns_flags[i]))) < 0)
            goto out;
    /* clone3 passes its flags in memory, which BPF cannot read: claim it does not exist so
     * glibc falls back to clone(), whose flags we can check. */
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0)
        goto out;

    /* libseccomp 2.5 can only export to an fd: go through a memfd and read it back. */
    fd = memfd_create("airlock-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = seccomp_export_bpf(ctx, fd)) < 0)
        goto out;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    size_t n = (size_t)st.st_size;
    if (n == 0 || n % sizeof(struct sock_filter) || n / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        rc = -EINVAL;
        goto out;
    }
    struct sock_filter *prog = malloc(n);
    if (!prog) {
        rc = -ENOMEM;
        goto out;
    }
    if (pread(fd, prog, n, 0) != (ssize_t)n) {
        rc = -EIO;
        free(prog);
        goto out;
    }
    out->len = (unsigned short)(n / sizeof(struct sock_filter));
    out->filter = prog;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}
