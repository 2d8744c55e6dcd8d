/* sendsig: send a signal and time it, for bench/bench.py.
 *
 *   sendsig SIGNUM PID [WAIT_MS [WATCHPID...]]
 *
 * Opens pidfds on PID and every WATCHPID first, then reads CLOCK_MONOTONIC and calls kill(2) at
 * once; the timestamp is printed after the kill so that printing costs nothing in the measured
 * interval ("sent NS"). With WAIT_MS > 0 it then waits (poll on the pidfds, at most WAIT_MS) for
 * those processes to end and prints "exit PID NS" for each one as it ends, "timeout PID" for
 * each one still alive when WAIT_MS runs out. The pids are the caller's (host) pids.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#define MAXW 64

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: sendsig SIGNUM PID [WAIT_MS [WATCHPID...]]\n");
        return 100;
    }
    int sig = atoi(argv[1]);
    int pid = atoi(argv[2]);
    long wait_ms = argc > 3 ? atol(argv[3]) : 0;
    int pids[MAXW];
    struct pollfd fds[MAXW];
    int n = 0;
    if (wait_ms > 0) {
        pids[n] = pid;
        fds[n].fd = (int)syscall(SYS_pidfd_open, pid, 0);
        fds[n].events = POLLIN;
        n++;
        for (int i = 4; i < argc && n < MAXW; i++) {
            pids[n] = atoi(argv[i]);
            fds[n].fd = (int)syscall(SYS_pidfd_open, pids[n], 0);
            fds[n].events = POLLIN;
            n++;
        }
    }
    long long t0 = now_ns();
    int rc = kill(pid, sig);
    int err = errno;
    printf("sent %lld\n", t0);
    if (rc != 0) {
        printf("error kill %d\n", err);
        return 1;
    }
    fflush(stdout);
    long long deadline = t0 + wait_ms * 1000000LL;
    int left = 0;
    for (int i = 0; i < n; i++) {
        if (fds[i].fd < 0) printf("gone %d\n", pids[i]); /* already gone before the kill */
        else left++;
    }
    while (left > 0) {
        long long remain = deadline - now_ns();
        if (remain <= 0) break;
        int r = poll(fds, n, (int)((remain + 999999) / 1000000));
        long long t = now_ns();
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        for (int i = 0; i < n; i++) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                printf("exit %d %lld\n", pids[i], t);
                close(fds[i].fd);
                fds[i].fd = -1; /* poll ignores negative fds */
                left--;
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (fds[i].fd >= 0) printf("timeout %d\n", pids[i]);
    return 0;
}
