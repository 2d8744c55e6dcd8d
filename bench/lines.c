/* lines: the worker of bench/output.py (worker output throughput, issue 14).
 *
 *   lines BYTES   write BYTES/100 lines of 100 bytes (99 printable + newline) to stdout in
 *                 64 KiB writes; the last line starts with END-OF-BENCH. BYTES 0: forever.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE 100
#define PER_WRITE 655 /* lines per write: 65,500 bytes */

static void write_all(const char *buffer, size_t length) {
    while (length > 0) {
        ssize_t written = write(1, buffer, length);
        if (written < 0) _exit(111);
        buffer += written;
        length -= (size_t)written;
    }
}

int main(int argc, char **argv) {
    static char block[LINE * PER_WRITE];
    if (argc != 2) {
        fprintf(stderr, "usage: lines BYTES\n");
        return 100;
    }
    long long lines = atoll(argv[1]) / LINE;
    for (int i = 0; i < PER_WRITE; i++) {
        char *line = block + i * LINE;
        memset(line, 'a' + i % 26, LINE - 1);
        memcpy(line, "line of a hundred bytes ", 24);
        line[LINE - 1] = '\n';
    }
    for (long long done = 0; lines == 0 || done < lines;) {
        long long count = PER_WRITE;
        if (lines != 0 && lines - done < count) count = lines - done;
        if (lines != 0 && done + count == lines) {
            memcpy(block + (count - 1) * LINE, "END-OF-BENCH", 12);
        }
        write_all(block, (size_t)(count * LINE));
        done += count;
    }
    return 0;
}
