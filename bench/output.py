#!/usr/bin/env python3
"""Worker output throughput and SIGTERM latency under an output flood (issue 14).

Python 3 standard library only; run as root (after bench/run.sh built the release binary).

1. 1 GiB of 100-byte lines (bench/lines.c) through
   - `output: "jsonl"`: fleet-init (PID 1 of its own namespace) reads the worker's pipe and
     writes each line as an `output` event to its stdout, a pipe this script drains;
   - `output: "inherit"`: the worker writes to that pipe itself;
   - `lines | cat`: the same bytes through one plain copy in a pipe;
   - `lines | relay` (bench/relay.c): the bytes of the `output` events written by a C program
     that checks and escapes nothing, the floor for any process writing what the SPEC asks;
   repetitions interleaved. Throughput is input bytes per second from the start to the arrival
   of the last line (END-OF-BENCH) at the reader; PID 1's CPU is utime+stime of fleet-init from
   /proc/PID/stat read once the last line arrived (its worker then sleeps; nothing is left to
   do), per GiB of input. Target: jsonl at least half of cat's throughput.
2. SIGTERM latency: kill(fleet-init, SIGTERM) to a worker's receipt of its stop signal
   (bench/sigwait.c, CLOCK_MONOTONIC on both sides), with a second worker idle (`sleep`) or
   flooding its jsonl output (`lines 0`) that the reader drains. Target: flood within 2x idle.

   Each rep takes --latency-samples of each (interleaved): one sample is a single signal, and
   a few scheduler hiccups of a shared 2-core machine decide a median of three.

    python3 bench/output.py [--reps N] [--gib G] [--latency-samples K] [--out results-output.json]
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "build")
FLEET = os.path.join(ROOT, "target", "release", "fleet-init")
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
MARK = b"END-OF-BENCH"
TICK = os.sysconf("SC_CLK_TCK")


def helper(name):
    path = os.path.join(BUILD, name)
    source = os.path.join(HERE, name + ".c")
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(source):
        os.makedirs(BUILD, exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-o", path, source], check=True)
    return path


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def namespace_init(unshare_pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(unshare_pid)
        if kids:
            return kids[0]
        time.sleep(0.001)
    raise RuntimeError("unshare started no child")


def drain_until_mark(stream, timeout):
    """Reads until the line with MARK has arrived; returns (bytes read, time of arrival).
    Reads into one buffer (no allocation per read): the reader must not be the bottleneck."""
    fd = stream.fileno()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    total = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The last bytes of the previous read stay in front, so a mark across reads is seen.
        keep = 16
        count = os.readv(fd, [view[keep:]])
        if count == 0:
            break
        total += count
        # The mark is on the last line the worker writes: nothing follows it until the
        # bench sends SIGTERM, so only the end of a read can hold it.
        if buffer.find(MARK, max(0, keep + count - 512), keep + count) >= 0:
            return total, time.monotonic()
        buffer[:keep] = buffer[count:keep + count]
    raise RuntimeError(f"no end mark after {total} bytes")


def write_config(workdir, workers, grace_ms=2000):
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        json.dump({"grace_ms": grace_ms, "state_dir": os.path.join(workdir, "state"),
                   "workers": workers}, f)
    return path


def run_throughput(kind, size, workdir):
    lines = helper("lines")
    if kind in ("cat", "relay"):
        copier = "cat" if kind == "cat" else helper("relay")
        command = ["sh", "-c", f"{lines} {size} | {copier}"]
    else:
        worker = {"name": "gen", "restart": "never", "output": kind,
                  "command": ["sh", "-c", f"{lines} {size}; exec sleep 1000"]}
        command = UNSHARE + [FLEET, "--config", write_config(workdir, [worker])]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    init = namespace_init(process.pid) if kind in ("jsonl", "inherit") else None
    try:
        read, arrived = drain_until_mark(process.stdout, timeout=600)
        cpu = cpu_seconds(init) if init else None
    finally:
        if init:
            os.kill(init, signal.SIGTERM)
        # The rest of the stream (shutdown events) is read so that nothing blocks.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        process.wait(timeout=30)
    seconds = arrived - started
    return {"kind": kind, "seconds": seconds, "mib_per_s": size / seconds / 2**20,
            "stdout_bytes": read, "pid1_cpu_s": cpu}


def run_latency(flood, workdir):
    out = os.path.join(workdir, "sigwait.out")
    if os.path.exists(out):
        os.unlink(out)
    other = [helper("lines"), "0"] if flood else ["sleep", "1000"]
    workers = [
        {"name": "target", "command": [helper("sigwait"), out, "wait"]},
        {"name": "other", "command": other},
    ]
    command = UNSHARE + [FLEET, "--config", write_config(workdir, workers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reader = threading.Thread(target=lambda: [None for _ in iter(
        lambda: os.read(process.stdout.fileno(), 1 << 20), b"")], daemon=True)
    reader.start()
    try:
        init = namespace_init(process.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(out) and open(out).read().startswith("ready"):
                break
            time.sleep(0.005)
        # A flood in full swing before the signal.
        time.sleep(0.5)
        sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        os.kill(init, signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    found = re.search(r"recv (\d+)", open(out).read())
    if not found:
        raise RuntimeError("the target never got its stop signal")
    return (int(found.group(1)) - sent) / 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=int(os.environ.get("OUTPUT_REPS", "5")))
    parser.add_argument("--latency-samples", type=int,
                        default=int(os.environ.get("OUTPUT_LATENCY_SAMPLES", "5")))
    parser.add_argument("--gib", type=float, default=float(os.environ.get("OUTPUT_GIB", "1")))
    parser.add_argument("--out", default=os.path.join(HERE, "results-output.json"))
    args = parser.parse_args()
    size = int(args.gib * 2**30) // 100 * 100
    kinds = ["jsonl", "inherit", "cat", "relay"]
    samples = {kind: [] for kind in kinds + ["idle", "flood"]}
    with tempfile.TemporaryDirectory() as workdir:
        for rep in range(args.reps):
            for kind in kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]:
                sample = run_throughput(kind, size, workdir)
                samples[kind].append(sample)
                print(f"output bench: {kind} rep {rep + 1}: {sample['mib_per_s']:.0f} MiB/s",
                      file=sys.stderr)
            for _ in range(args.latency_samples):
                for kind in ["idle", "flood"]:
                    samples[kind].append(run_latency(kind == "flood", workdir))
    median = lambda xs: statistics.median(xs) if xs else float("nan")
    gib = size / 2**30
    print(f"\n## Worker output: {gib:.2f} GiB of 100-byte lines, {args.reps} reps "
          f"(load {open('/proc/loadavg').read().split()[0]})\n")
    print("| path | MiB/s median (min-max) | PID 1 CPU s/GiB | stdout bytes/input byte |")
    print("| --- | --- | --- | --- |")
    for kind in kinds:
        rates = [s["mib_per_s"] for s in samples[kind]]
        cpus = [s["pid1_cpu_s"] / gib for s in samples[kind] if s["pid1_cpu_s"] is not None]
        ratio = median([s["stdout_bytes"] for s in samples[kind]]) / size
        cpu = f"{median(cpus):.2f}" if cpus else "n/a"
        print(f"| {kind} | {median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f}) | {cpu} "
              f"| {ratio:.2f} |")
    jsonl = median([s["mib_per_s"] for s in samples["jsonl"]])
    cat = median([s["mib_per_s"] for s in samples["cat"]])
    relay = median([s["mib_per_s"] for s in samples["relay"]])
    idle, flood = median(samples["idle"]), median(samples["flood"])
    print(f"\nSIGTERM to a worker ({len(samples['idle'])} samples each, medians): "
          f"idle {idle:.2f} ms ({min(samples['idle']):.2f}-"
          f"{max(samples['idle']):.2f}), beside a flood {flood:.2f} ms "
          f"({min(samples['flood']):.2f}-{max(samples['flood']):.2f})\n")
    print(f"- jsonl >= 1/2 of cat: {jsonl:.0f} vs {cat:.0f} MiB/s: "
          f"{'pass' if jsonl >= cat / 2 else 'FAIL'}")
    print(f"- for reference, the C relay writing the same bytes: {relay:.0f} MiB/s, "
          f"{relay / cat:.2f} of cat; jsonl is {jsonl / relay:.2f} of it")
    print(f"- SIGTERM latency beside a flood <= 2x idle: "
          f"{'pass' if flood <= 2 * idle else 'FAIL'}")
    with open(args.out, "w") as f:
        json.dump(samples, f, indent=1)


if __name__ == "__main__":
    main()
