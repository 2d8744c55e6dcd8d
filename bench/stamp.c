/* stamp: a worker that exits at once with a given code, for fleet-init's restart scenarios.
 *
 *   stamp OUTFILE CODE
 *
 * Appends one line "PID START_NS END_NS" (CLOCK_MONOTONIC at entry of main and just before
 * exit) to OUTFILE in a single write(2), then exits with CODE. Built static when possible so
 * that dynamic loading does not count in the restart latency the bench derives from these lines
 * (START of run n+1 minus END of run n).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long long start = now_ns();
    if (argc != 3) return 100;
    int code = atoi(argv[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return 101;
    char line[96];
    long long end = now_ns();
    int len = snprintf(line, sizeof line, "%d %lld %lld\n", (int)getpid(), start, end);
    if (write(fd, line, (size_t)len) != len) return 102;
    _exit(code);
}
