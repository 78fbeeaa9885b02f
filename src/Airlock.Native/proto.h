/* airlock-init: wire format of the control protocol (docs/init-protocol.md section 2)
 * and the few declarations shared between the helper's .c files. */
#ifndef AIRLOCK_PROTO_H
#define AIRLOCK_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/capability.h>
#include <linux/filter.h>

/* The protocol is little-endian; the structs below are read and written in host order. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "airlock-init assumes a little-endian host (the control protocol is little-endian)"
#endif

#define MSG_MAX (256 * 1024) /* one message = one request or reply, at most 256 KiB */

enum {
    REQ_SPAWN = 1,
    REQ_SIGNAL = 2,
    REQ_PING = 3,
    REQ_LIST = 4,
    REP_ACK = 100,
    REP_SPAWNED = 101,
    REP_LIST = 104,
    EV_EXIT = 200,
};

enum { SPAWN_PTY = 1, SPAWN_ROOT_CAPS = 2, SPAWN_NO_NEW_PRIVS = 4 };
enum { SIGNAL_GROUP = 1 };

/* All fields are 4 bytes wide, so none of these structs has padding. */
struct msg_hdr { uint32_t type, seq; };
struct spawn_req { struct msg_hdr h; uint32_t uid, gid, flags, argc, envc; /* cwd, argv[], env[] */ };
struct signal_req { struct msg_hdr h; uint32_t pid; int32_t signo; uint32_t flags; };
struct ack_rep { struct msg_hdr h; int32_t err; };
struct spawned_rep { struct msg_hdr h; int32_t err; uint32_t pid; /* step string follows */ };
struct list_rep { struct msg_hdr h; uint32_t count; /* u32 pids[count] follow */ };
struct exit_ev { struct msg_hdr h; uint32_t pid; int32_t status; };

/* The sandbox capability set: Docker's default set without MKNOD. */
#define CAPBIT(c) (1ULL << (c))
#define SANDBOX_CAPS                                                                     \
    (CAPBIT(CAP_CHOWN) | CAPBIT(CAP_DAC_OVERRIDE) | CAPBIT(CAP_FOWNER) |                 \
     CAPBIT(CAP_FSETID) | CAPBIT(CAP_KILL) | CAPBIT(CAP_SETGID) | CAPBIT(CAP_SETUID) |   \
     CAPBIT(CAP_SETPCAP) | CAPBIT(CAP_NET_BIND_SERVICE) | CAPBIT(CAP_NET_RAW) |          \
     CAPBIT(CAP_SYS_CHROOT) | CAPBIT(CAP_AUDIT_WRITE) | CAPBIT(CAP_SETFCAP))

/* seccomp.c: builds the deny-list filter once and exports it as classic BPF (malloc'd). */
int seccomp_build(struct sock_fprog *out);

/* spawn.c */
struct spawn_args {
    uint32_t uid, gid, flags;
    const char *cwd;
    char **argv; /* NULL-terminated, points into the request buffer */
    char **envp; /* NULL-terminated, points into the request buffer */
    int fds[3];  /* stdin, stdout, stderr as received (CLOEXEC, >= 3) */
};
/* Validates a SPAWN message and fills *a (argv/envp arrays are malloc'd: spawn_args_free).
 * Returns 0 or an errno. */
int spawn_parse(char *msg, size_t len, struct spawn_args *a);
void spawn_args_free(struct spawn_args *a);
/* Starts the child and execs; returns the pid, or -errno with *step naming what failed. Returns
 * once the child has exec'd or failed. The caller still owns (and must close) a->fds. */
pid_t spawn_start(const struct spawn_args *a, const char **step);

#endif
