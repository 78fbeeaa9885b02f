// timeit N PROGRAM [ARGS...]: runs PROGRAM N times, one at a time, with vfork+execv+waitpid and
// prints each run's wall time in milliseconds, one per line. With PROGRAM = /bin/true this is the
// spawn floor: the cheapest way a process can start another one on this machine. The other floors
// and peers (unshare, bwrap, crun, runc) are timed by the same loop so their figures are comparable.
// Exits non-zero (and prints the status to stderr) as soon as a run fails.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: timeit N PROGRAM [ARGS...]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        pid_t pid = vfork();
        if (pid == 0) {
            execv(argv[2], argv + 2);
            _exit(127);
        }
        if (pid < 0) {
            perror("vfork");
            return 1;
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) {
            perror("waitpid");
            return 1;
        }
        double t1 = now_ms();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "run %d: %s failed (status 0x%x)\n", i, argv[2], status);
            return 1;
        }
        printf("%.4f\n", t1 - t0);
    }
    return 0;
}
