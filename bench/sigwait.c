/* sigwait: the workload of the signal-latency and shutdown scenarios of bench/bench.py.
 *
 *   sigwait OUTFILE wait     block SIGTERM, write "ready PID", sigwaitinfo(SIGTERM), write
 *                            "recv NS" (CLOCK_MONOTONIC at receipt), exit 0
 *   sigwait OUTFILE ignore   ignore SIGTERM, write "ready PID", pause forever (only SIGKILL ends it)
 *
 * CLOCK_MONOTONIC is system-wide, so NS compares with the timestamp bench/sendsig.c takes just
 * before kill(2) in another process (and another PID namespace). Each line is one write(2) to
 * OUTFILE opened O_APPEND, so the bench can read it at any time without torn lines.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int out = -1;

static void say(const char *line) {
    size_t len = strlen(line);
    if (write(out, line, len) != (ssize_t)len) _exit(111);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    char line[128];
    if (argc != 3) {
        fprintf(stderr, "usage: sigwait OUTFILE wait|ignore\n");
        return 100;
    }
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) { perror("sigwait: open"); return 101; }
    if (strcmp(argv[2], "ignore") == 0) {
        signal(SIGTERM, SIG_IGN);
        snprintf(line, sizeof line, "ready %d\n", (int)getpid());
        say(line);
        for (;;) pause();
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) { perror("sigwait: sigprocmask"); return 102; }
    snprintf(line, sizeof line, "ready %d\n", (int)getpid());
    say(line);
    siginfo_t info;
    for (;;) {
        int sig = sigwaitinfo(&set, &info);
        if (sig == SIGTERM) break;
    }
    long long t = now_ns();
    snprintf(line, sizeof line, "recv %lld\n", t);
    say(line);
    return 0;
}
