/* orphans: the zombie-reaping workload of bench/bench.py. Run it as the init's child.
 *
 *   orphans N OUTFILE TIMEOUT_MS
 *
 * Forks N children; each forks a grandchild that exits at once and exits itself, so N
 * grandchildren are orphaned and reparent to PID 1 of the namespace (alive or already zombies),
 * which must reap them. This process reaps its own N children as it goes (waitpid WNOHANG), so
 * every zombie whose parent is PID 1 is the init's to reap. Right after the last fork it counts,
 * in /proc (the namespace's own, mounted by unshare --mount-proc), the zombies whose parent is
 * PID 1 ("pending_at_last_fork"; the same count is also taken every 1000 forks, and the largest
 * is "peak_pending"); then it reaps the rest of its children and scans /proc until
 * no grandchild is left, alive or zombie (a grandchild has this program's comm), or until
 * TIMEOUT_MS. PID 1's CPU time (utime+stime of /proc/1/stat, and the ns of /proc/1/schedstat)
 * is read at start and end.
 * Results go to OUTFILE as "key value" lines.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char mycomm[64];

/* Reads /proc/PID/stat; returns 0 and fills state, ppid, comm, ticks (utime+stime). */
static int read_stat(const char *pid, char *state, int *ppid, char *comm, size_t commlen,
                     long long *ticks) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *open_paren = strchr(buf, '(');
    char *close_paren = strrchr(buf, ')');
    if (!open_paren || !close_paren) return -1;
    size_t clen = (size_t)(close_paren - open_paren - 1);
    if (comm) {
        if (clen >= commlen) clen = commlen - 1;
        memcpy(comm, open_paren + 1, clen);
        comm[clen] = 0;
    }
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    char st;
    int pp;
    unsigned long long f[11];
    if (sscanf(close_paren + 2, "%c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
               &st, &pp, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9],
               &f[10]) != 13)
        return -1;
    if (state) *state = st;
    if (ppid) *ppid = pp;
    if (ticks) *ticks = (long long)(f[9] + f[10]);
    return 0;
}

/* zombies with parent 1; all processes with our comm but us (grandchildren, alive or zombie). */
static void scan(int self, int *z_of_1, int *left) {
    DIR *d = opendir("/proc");
    *z_of_1 = 0;
    *left = 0;
    if (!d) return;
    struct dirent *e;
    char comm[64];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        if (atoi(e->d_name) == self) continue;
        char st;
        int pp;
        if (read_stat(e->d_name, &st, &pp, comm, sizeof comm, NULL) != 0) continue;
        if (st == 'Z' && pp == 1) (*z_of_1)++;
        if (strcmp(comm, mycomm) == 0) (*left)++;
    }
    closedir(d);
}

static long long pid1_ticks(void) {
    long long t = -1;
    read_stat("1", NULL, NULL, NULL, 0, &t);
    return t;
}

/* PID 1's run time in ns (first field of /proc/1/schedstat: the scheduler's own account,
 * where utime+stime come in 10 ms ticks); -1 when the kernel has no schedstat. */
static long long pid1_run_ns(void) {
    long long ns = -1;
    FILE *f = fopen("/proc/1/schedstat", "re");
    if (f) {
        if (fscanf(f, "%lld", &ns) != 1) ns = -1;
        fclose(f);
    }
    return ns;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: orphans N OUTFILE TIMEOUT_MS\n");
        return 100;
    }
    int n = atoi(argv[1]);
    long long timeout_ns = atoll(argv[3]) * 1000000LL;
    int self = (int)getpid();
    read_stat("self", NULL, NULL, mycomm, sizeof mycomm, NULL);
    long long cpu0 = pid1_ticks();
    long long run0 = pid1_run_ns();
    long long t0 = now_ns();
    int reaped = 0, fork_retries = 0, peak = 0, z1 = 0, left = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && i % 1000 == 0) {
            scan(self, &z1, &left);
            if (z1 > peak) peak = z1;
        }
        pid_t c = fork();
        if (c == 0) {
            if (fork() == 0) _exit(0);
            _exit(0);
        }
        if (c < 0) {
            /* out of pids or memory: wait for one of ours, then try again */
            fork_retries++;
            if (waitpid(-1, NULL, 0) > 0) reaped++;
            else usleep(1000);
            i--;
            continue;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) reaped++;
    }
    long long t_last = now_ns();
    int pending;
    scan(self, &pending, &left);
    if (pending > peak) peak = pending;
    long long t_scanned = now_ns();
    while (waitpid(-1, NULL, 0) > 0) reaped++;
    int timed_out = 0;
    z1 = pending;
    long long t_zero;
    for (;;) {
        scan(self, &z1, &left);
        t_zero = now_ns();
        if (left == 0) break;
        if (t_zero - t_last > timeout_ns) { timed_out = 1; break; }
        usleep(500);
    }
    long long cpu1 = pid1_ticks();
    long long run1 = pid1_run_ns();
    char out[1024];
    int len = snprintf(out, sizeof out,
                       "forks %d\nfork_loop_ns %lld\npending_at_last_fork %d\npeak_pending %d\n"
                       "first_scan_ns %lld\ntime_to_zero_ns %lld\ntimed_out %d\nleft %d\n"
                       "zombies_of_pid1_at_end %d\npid1_cpu_ticks %lld\nclk_tck %ld\n"
                       "fork_retries %d\nreaped_children %d\npid1_cpu_ns %lld\n",
                       n, t_last - t0, pending, peak, t_scanned - t_last, t_zero - t_last, timed_out,
                       left, z1, (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1,
                       sysconf(_SC_CLK_TCK), fork_retries, reaped,
                       (run0 >= 0 && run1 >= 0) ? run1 - run0 : -1);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, out, (size_t)len) != len) return 101;
    close(fd);
    return 0;
}
