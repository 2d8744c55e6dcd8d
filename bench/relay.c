/* relay: the floor for `output: "jsonl"` in bench/output.py (issue 14).
 *
 *   lines BYTES | relay     reads stdin in 128 KiB reads, as fleet-init reads a worker's pipe,
 *                           and writes every line wrapped in the bytes of an `output` event
 *                           (a fixed timestamp, worker "gen", stream "stdout"), one write per
 *                           read, through a 1 MiB pipe when stdout is one.
 *
 * It checks nothing and escapes nothing (the bench's lines need neither): its throughput is
 * what any process writing the bytes the SPEC's event asks for gets on this machine, so the
 * gap between it and fleet-init's `jsonl` is fleet-init's own work, and the gap between it and
 * `cat` is the format's (about 2.08 bytes out per byte in).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BYTES (128 * 1024)

static const char HEAD[] = "{\"ts\":\"2026-12-01T00:00:00.000Z\",\"level\":\"info\","
                           "\"event\":\"output\",\"worker\":\"gen\",\"stream\":\"stdout\","
                           "\"line\":\"";
static const char TAIL[] = "\"}\n";

static void write_all(const char *buffer, size_t length) {
    while (length > 0) {
        ssize_t written = write(1, buffer, length);
        if (written < 0) _exit(111);
        buffer += written;
        length -= (size_t)written;
    }
}

int main(void) {
    static char in[READ_BYTES];
    /* The longest a read can render to: every byte a line of its own. */
    static char out[READ_BYTES * (sizeof HEAD + sizeof TAIL) + READ_BYTES];
    static char carry[READ_BYTES];
    size_t carried = 0;
    fcntl(1, F_SETPIPE_SZ, 1 << 20);
    for (;;) {
        ssize_t count = read(0, in, sizeof in);
        if (count < 0) _exit(111);
        if (count == 0) break;
        size_t used = 0, rendered = 0;
        for (;;) {
            char *newline = memchr(in + used, '\n', (size_t)count - used);
            if (!newline) break;
            size_t length = (size_t)(newline - (in + used));
            memcpy(out + rendered, HEAD, sizeof HEAD - 1);
            rendered += sizeof HEAD - 1;
            memcpy(out + rendered, carry, carried);
            rendered += carried;
            carried = 0;
            memcpy(out + rendered, in + used, length);
            rendered += length;
            memcpy(out + rendered, TAIL, sizeof TAIL - 1);
            rendered += sizeof TAIL - 1;
            used += length + 1;
        }
        size_t rest = (size_t)count - used;
        if (carried + rest > sizeof carry) _exit(112); /* the bench's lines are 100 bytes */
        memcpy(carry + carried, in + used, rest);
        carried += rest;
        write_all(out, rendered);
    }
    return 0;
}
