#!/usr/bin/env python3
"""fleet-init against peer inits (issue 6). Python 3 standard library only; run as root.

Every init runs as PID 1 of its own PID namespace,

    unshare --pid --fork --kill-child --mount-proc INIT ... WORKLOAD

on the same workload, repetitions interleaved round-robin across inits (the starting init
rotates each repetition). Scenarios whose measurement is a wait (idle window, the SIGTERM-ignoring
child) run every init side by side in the same repetition instead: a wait costs no CPU, so
neighbours do not disturb it, and the whole run stays under 10 minutes on 2 cores.

Prints one markdown table per scenario (cells: median (min–max), and ×ratio of the init's
median to fleet-init's), the targets of the issue with pass/fail (informational), and writes
every raw sample as JSON (bench/results.json or --out PATH).

The C helpers (bench/*.c) are built by bench/run.sh into bench/build/; this script builds them
too when they are missing. Every wait has a timeout; a namespace is ended by SIGKILL to its
PID 1 (which kills everything in it), and unshare's --kill-child ends it if this script dies.
"""

import argparse
import atexit
import collections
import datetime
import json
import os
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "build")
HELPERS = {"sigwait": [], "sendsig": [], "orphans": [], "stamp": ["-static"]}
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]

# Repetitions of a full run. Start and signal are short runs on a shared machine, where a burst
# of another tenant's load moves every init's median: 40 starts (1 s in all) gave catatonit
# 0.29 ms in one run and 0.52 in the next; 300 span ~10 s.
FULL = dict(
    start_reps=300, idle_reps=3, idle_window_s=10.0, signal_reps=60, zombie_reps=4,
    zombie_n=10000, zombie_timeout_ms=10000, ignore_reps=3, ignore_cap_s=12.0, exit_reps=3,
    clean_reps=3, clean_window_s=4.0, crash_reps=2, crash_window_s=4.5, many_workers=50,
)
QUICK = dict(
    start_reps=8, idle_reps=1, idle_window_s=3.0, signal_reps=6, zombie_reps=1,
    zombie_n=10000, zombie_timeout_ms=5000, ignore_reps=1, ignore_cap_s=12.0, exit_reps=1,
    clean_reps=1, clean_window_s=2.0, crash_reps=1, crash_window_s=2.5, many_workers=50,
)
FLEET_GRACE_MS = 2000  # fleet-init's --grace-ms in the SIGTERM-ignoring scenario
FLEET = "fleet-init"
FLEET_STATIC = "fleet-init-static"
FLEET_TMPFS = "fleet-init (state on tmpfs)"
FLEET_ONLY = "fleet-init-only figure (scenario 7)"
DIRECT_KILL = "direct kill"


# --------------------------------------------------------------------------------------------
# Inits and namespaces


class Init:
    """One init and how it runs a single workload command as PID 1."""

    def __init__(self, name, kind, binary, extra_files=(), state_on_tmpfs=False):
        self.name = name
        self.kind = kind
        self.binary = binary
        self.extra_files = list(extra_files)  # other binaries it needs (binary-size table)
        # fleet-init's handoff registry (fsync'd writes) on /dev/shm instead of the disk.
        self.state_on_tmpfs = state_on_tmpfs

    @property
    def exits_with_child(self):
        # supervisord stays up when its program ends: nothing to time, no code to propagate.
        return self.kind != "supervisord"

    def argv(self, cmd, workdir, fleet_args=()):
        kind = self.kind
        if kind == "none":
            return list(cmd)
        if kind == "fleet":
            state = os.path.join(workdir, "state")
            if self.state_on_tmpfs:
                state = os.path.join("/dev/shm", "fleet-bench-" + os.path.basename(workdir))
            return [self.binary, "--state-dir", state, *fleet_args, "--", *cmd]
        if kind in ("tini", "catatonit"):
            return [self.binary, "--", *cmd]
        if kind == "dumb-init":
            return [self.binary, *cmd]
        if kind == "s6":
            return [self.binary, make_s6_scandir(workdir, cmd)]
        if kind == "supervisord":
            return [self.binary, "-c", make_supervisord_conf(workdir, cmd)]
        raise ValueError(kind)


def make_s6_scandir(workdir, cmd):
    """A scan dir with one service: run execs the workload; finish tells s6-svscan to exit, so
    that s6-svscan ends when the workload ends, like the single-child inits (s6-overlay's way)."""
    service = os.path.join(workdir, "scan", "main")
    os.makedirs(service)
    write_script(os.path.join(service, "run"), "#!/bin/sh\nexec %s\n" % shlex.join(cmd))
    write_script(os.path.join(service, "finish"), "#!/bin/sh\nexec s6-svscanctl -t ..\n")
    return os.path.join(workdir, "scan")


def make_supervisord_conf(workdir, cmd):
    path = os.path.join(workdir, "supervisord.conf")
    with open(path, "w") as f:
        f.write(
            "[supervisord]\nnodaemon=true\nuser=root\nloglevel=warn\n"
            f"logfile={workdir}/supervisord.log\nlogfile_maxbytes=0\n"
            f"pidfile={workdir}/supervisord.pid\nchildlogdir={workdir}\n\n"
            f"[program:main]\ncommand={shlex.join(cmd)}\nautostart=true\nautorestart=false\n"
            "startsecs=0\nstdout_logfile=NONE\nstderr_logfile=NONE\n"
        )
    return path


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


LIVE = set()


class NsRun:
    """One init as PID 1 of a fresh PID namespace, started in the background."""

    def __init__(self, init, cmd, workdir, fleet_args=(), stdout_path=None, argv=None):
        self.init = init
        self.workdir = workdir
        full = UNSHARE + (argv if argv is not None else init.argv(cmd, workdir, fleet_args))
        out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        err = open(os.path.join(workdir, "stderr.log"), "wb")
        try:
            self.proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        finally:
            err.close()
            if stdout_path:
                out.close()
        LIVE.add(self)
        self.pid = None  # host pid of the namespace's PID 1
        self.pidfd = None

    def init_pid(self, timeout=5.0):
        """The host pid of PID 1: unshare's only child."""
        if self.pid is not None:
            return self.pid
        deadline = time.monotonic() + timeout
        upid = self.proc.pid
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{upid}/task/{upid}/children") as f:
                    kids = f.read().split()
            except OSError:
                kids = []
            if kids:
                self.pid = int(kids[0])
                try:
                    self.pidfd = os.pidfd_open(self.pid)
                except OSError:
                    self.pidfd = None
                return self.pid
            if self.proc.poll() is not None:
                return None
            time.sleep(0.0005)
        return None

    def wait(self, timeout):
        """unshare's exit code (the init's, or -N if the init died of signal N); None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGKILL the namespace's PID 1 (ends the whole namespace); always reaps unshare."""
        if self.proc.poll() is None:
            try:
                if self.pidfd is not None:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                else:
                    self.proc.kill()  # --kill-child: the init gets SIGKILL when unshare dies
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        LIVE.discard(self)


def stop_all():
    for run in list(LIVE):
        try:
            run.stop()
        except Exception as error:  # keep stopping the others
            print(f"warning: could not stop a run: {error}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# /proc and helpers


def proc_table():
    """host pid -> (ppid, comm, state)"""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        left, right = data.find(b"("), data.rfind(b")")
        rest = data[right + 2:].split()
        table[int(name)] = (int(rest[1]), data[left + 1:right].decode(errors="replace"),
                            rest[0].decode())
    return table


def descendants(root, table=None):
    table = table if table is not None else proc_table()
    kids = collections.defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        kids[ppid].append(pid)
    found, todo = [], [root]
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kib(fields, key):
    value = fields.get(key)
    return int(value.split()[0]) if value else None


def wakeups(pid):
    """Voluntary context switches of every thread of pid: how often it went to sleep."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(status(f"{pid}/task/{tid}")["voluntary_ctxt_switches"])
        except (OSError, KeyError, ValueError):
            pass
    return total


def wait_for(predicate, timeout, interval=0.001):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def ready_line(path):
    return "ready" in read_text(path)


def helper(name):
    return os.path.join(BUILD, name)


def build_helpers():
    os.makedirs(BUILD, exist_ok=True)
    for name, flags in HELPERS.items():
        src, out = os.path.join(HERE, name + ".c"), helper(name)
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
            continue
        cmd = ["cc", "-O2", *flags, "-o", out, src]
        if subprocess.run(cmd, timeout=120).returncode != 0 and flags:
            subprocess.run(["cc", "-O2", "-o", out, src], timeout=120, check=True)


def parse_sendsig(text):
    result = {"sent": None, "exit": {}, "timeout": set(), "gone": set(), "error": None}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "sent":
            result["sent"] = int(parts[1])
        elif parts[0] == "exit":
            result["exit"][int(parts[1])] = int(parts[2])
        elif parts[0] == "timeout":
            result["timeout"].add(int(parts[1]))
        elif parts[0] == "gone":
            result["gone"].add(int(parts[1]))
        elif parts[0] == "error":
            result["error"] = line
    return result


def sendsig_argv(sig, pid, wait_ms=0, watch=()):
    return [helper("sendsig"), str(int(sig)), str(pid), str(int(wait_ms)), *map(str, watch)]


def sendsig(sig, pid, wait_ms=0, watch=()):
    done = subprocess.run(sendsig_argv(sig, pid, wait_ms, watch), capture_output=True, text=True,
                          timeout=wait_ms / 1000 + 10)
    return parse_sendsig(done.stdout)


def timed_spawn(argv, timeout):
    """Wall time (ns) of argv from spawn to reaped exit, and its wait status; None on timeout."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)  # unshare --kill-child takes the namespace with it
            os.waitpid(pid, 0)
            return None, None
        _, wstatus = os.waitpid(pid, 0)
        return time.perf_counter_ns() - t0, wstatus
    finally:
        os.close(fd)


def parse_events(path):
    events = []
    for line in read_text(path).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            try:
                event["_t"] = datetime.datetime.fromisoformat(
                    event["ts"].replace("Z", "+00:00")).timestamp()
            except (KeyError, ValueError, AttributeError):
                event["_t"] = None
            events.append(event)
    return events


def read_stamps(path):
    rows = []
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    rows.sort(key=lambda row: row[1])
    return rows


# --------------------------------------------------------------------------------------------
# Results


class Results:
    def __init__(self, inits):
        self.columns = [i.name for i in inits]
        self.scenarios = collections.OrderedDict()
        self.targets = []

    def scenario(self, key, title, columns=None, notes=()):
        self.scenarios[key] = {"title": title, "columns": columns or list(self.columns),
                               "metrics": collections.OrderedDict(), "na": {},
                               "notes": list(notes)}
        return self.scenarios[key]

    def metric(self, key, label, kind="num", none_label=None, ratio=True):
        metrics = self.scenarios[key]["metrics"]
        if label not in metrics:
            metrics[label] = {"kind": kind, "none_label": none_label, "ratio": ratio,
                              "samples": collections.defaultdict(list)}
        return metrics[label]

    def add(self, key, label, init, value, **kw):
        self.metric(key, label, **kw)["samples"][init].append(value)

    def na(self, key, init, reason):
        self.scenarios[key]["na"][init] = reason

    def as_json(self):
        out = {}
        for key, sc in self.scenarios.items():
            out[key] = {
                "title": sc["title"], "na": sc["na"], "notes": sc["notes"],
                "metrics": {label: {"kind": m["kind"], "samples": dict(m["samples"])}
                            for label, m in sc["metrics"].items()},
            }
        return out


def fmt(x):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def cell(metric, init, base_median):
    samples = metric["samples"].get(init)
    if not samples:
        return None
    if metric["kind"] == "cat":
        counts = collections.Counter(str(s) for s in samples)
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{k} ({n}/{len(samples)})" for k, n in counts.most_common())
    nums = [s for s in samples if isinstance(s, (int, float))]
    nones = len(samples) - len(nums)
    if not nums:
        return metric["none_label"] or "failed"
    m = statistics.median(nums)
    text = fmt(m) if len(nums) == 1 else f"{fmt(m)} ({fmt(min(nums))}–{fmt(max(nums))})"
    if metric["ratio"] and init != FLEET and base_median not in (None, 0):
        text += f" ×{m / base_median:.2f}"
    if nones:
        text += f"; {nones}/{len(samples)} {metric['none_label'] or 'failed'}"
    return text


def render(results):
    lines = []
    for key, sc in sorted(results.scenarios.items(), key=lambda kv: kv[1]["title"]):
        cols = sc["columns"]
        lines.append(f"### {sc['title']}\n")
        lines.append("| metric | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        na_refs = {}
        for init in cols:
            reason = sc["na"].get(init)
            if reason:
                na_refs.setdefault(reason, len(na_refs) + 1)
        for label, metric in sc["metrics"].items():
            base = med(metric["samples"].get(FLEET, []))
            row = []
            for init in cols:
                text = cell(metric, init, base)
                if text is None:
                    reason = sc["na"].get(init)
                    text = f"n/a [{na_refs[reason]}]" if reason else "—"
                row.append(text)
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
        for reason, n in na_refs.items():
            who = ", ".join(i for i in cols if sc["na"].get(i) == reason)
            lines.append(f"[{n}] {who}: {reason}  ")
        for note in sc["notes"]:
            lines.append(f"- {note}")
        lines.append("")
    return "\n".join(lines)


def target(results, text, measured, ok):
    results.targets.append({"target": text, "measured": measured, "pass": ok})


def render_targets(results):
    lines = ["### Targets of issues 6 and 10 (informational)\n", "| target | measured | verdict |",
             "|---|---|---|"]
    for t in results.targets:
        verdict = {True: "pass", False: "**FAIL**", None: "n/a"}[t["pass"]]
        lines.append(f"| {t['target']} | {t['measured']} | {verdict} |")
    return "\n".join(lines) + "\n"


def rotate(items, rep):
    k = rep % len(items) if items else 0
    return items[k:] + items[:k]


def progress(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Scenarios


class Bench:
    def __init__(self, inits, params, tmp):
        self.inits = inits
        self.p = params
        self.tmp = tmp
        self.results = Results(inits)
        self.runs = 0
        self.loads = {}  # scenario -> /proc/loadavg when it started (others share the machine)

    def workdir(self, name):
        self.runs += 1
        path = os.path.join(self.tmp, f"{self.runs:05d}-{name}")
        os.makedirs(path)
        return path

    def by_name(self, name):
        return next((i for i in self.inits if i.name == name), None)

    # 1 ---------------------------------------------------------------------------------------
    def start_exit(self):
        key = "start"
        sc = self.results.scenario(
            key, "1. start + exit: `INIT -- /bin/true` (wall time per run, ms)",
            columns=["no init"] + self.results.columns,
            notes=["wall time of `unshare --pid --fork --mount-proc [INIT] /bin/true` from spawn "
                   "to reaped exit; overhead = run − median of the no-init runs of the same "
                   "session (namespace creation and /proc mount cost the same for every init)",
                   "s6: s6-svscan with one service whose finish script runs "
                   "`s6-svscanctl -t`, so that it ends with its workload"])
        baseline = Init("no init", "none", "/bin/true")
        inits = [baseline] + [i for i in self.inits if i.exits_with_child]
        for init in self.inits:
            if not init.exits_with_child:
                self.results.na(key, init.name, "does not exit when its program exits")
        walls = collections.defaultdict(list)
        for rep in range(self.p["start_reps"]):
            for init in rotate(inits, rep):
                argv = UNSHARE + init.argv(["/bin/true"], self.workdir("start"))
                ns, wstatus = timed_spawn(argv, timeout=10)
                walls[init.name].append(None if ns is None else ns / 1e6)
                ok = wstatus is not None and os.waitstatus_to_exitcode(wstatus) == 0
                if not ok:
                    progress(f"start: {init.name} ended with status {wstatus}")
        base = med(walls["no init"])
        for init in inits:
            for w in walls[init.name]:
                self.results.add(key, "wall time (ms)", init.name, w, none_label="timeout")
        for init in inits[1:]:
            for w in walls[init.name]:
                self.results.add(key, "overhead over no init (ms)", init.name,
                                 None if w is None else w - base, none_label="timeout")
        sc["metrics"]["wall time (ms)"]["ratio"] = False
        # On a shared machine the medians carry other tenants' load; the fastest runs show
        # what the init itself costs.
        fastest = min((w for w in walls["no init"] if w is not None), default=None)
        for init in inits[1:]:
            best = min((w for w in walls[init.name] if w is not None), default=None)
            if best is not None and fastest is not None:
                self.results.add(key, "overhead, fastest run − fastest no-init run (ms)",
                                 init.name, best - fastest)

    # 2 + 7c -----------------------------------------------------------------------------------
    def idle(self):
        key = "idle"
        window = self.p["idle_window_s"]
        self.results.scenario(
            key, f"2. idle: PID 1 supervising `sleep` ({window:g} s window)",
            notes=[f"wake-ups = voluntary context switches of PID 1 (all its threads) over "
                   f"{window:g} s, sampled from 1 s after the workload started; all inits run "
                   "side by side in each repetition (a sleeping process is not disturbed by "
                   "neighbours)",
                   "all init processes = the namespace's processes but the `sleep` workload "
                   "(s6: s6-svscan + s6-supervise)"])
        many = self.p["many_workers"]
        fleet = self.by_name(FLEET)
        for rep in range(self.p["idle_reps"]):
            batch = []
            try:
                for init in rotate(self.inits, rep):
                    wd = self.workdir("idle")
                    batch.append((init.name, NsRun(init, ["sleep", "100000"], wd), 1))
                if fleet is not None:
                    wd = self.workdir("many")
                    conf = os.path.join(wd, "fleet.json")
                    with open(conf, "w") as f:
                        json.dump({"state_dir": os.path.join(wd, "state"), "workers": [
                            {"name": f"w{n}", "command": ["sleep", "100000"]}
                            for n in range(many)]}, f)
                    argv = [fleet.binary, "--config", conf]
                    batch.append(("many", NsRun(fleet, None, wd, argv=argv), many))
                started = {}
                for name, run, nsleep in batch:
                    pid = run.init_pid()

                    def sleeping(pid=pid, nsleep=nsleep):
                        if pid is None:
                            return False
                        table = proc_table()
                        kids = [p for p in descendants(pid, table) if table[p][1] == "sleep"]
                        return len(kids) >= nsleep

                    started[name] = bool(wait_for(sleeping, 15))
                    if not started[name]:
                        progress(f"idle: {name} never started its workload")
                time.sleep(1.0)
                before = {}
                for name, run, _ in batch:
                    if started[name]:
                        before[name] = wakeups(run.pid)
                time.sleep(window)
                table = proc_table()
                for name, run, _ in batch:
                    if name not in before:
                        continue
                    st = status(run.pid)
                    woke = wakeups(run.pid) - before[name]
                    rss, anon = kib(st, "VmRSS"), kib(st, "RssAnon")
                    own = [p for p in descendants(run.pid, table) if table[p][1] != "sleep"]
                    total = rss
                    for p in own:
                        try:
                            total += kib(status(p), "VmRSS") or 0
                        except OSError:
                            pass
                    if name == "many":
                        self.fleet_scenario()
                        self.results.add("fleet", f"{many} workers: PID 1 wake-ups over "
                                         f"{window:g} s", FLEET, woke)
                        self.results.add("fleet", f"{many} workers: PID 1 VmRSS (KiB)", FLEET, rss)
                        self.results.add("fleet", f"{many} workers: PID 1 RssAnon (KiB)", FLEET,
                                         anon)
                        continue
                    self.results.add(key, "VmRSS of PID 1 (KiB)", name, rss)
                    self.results.add(key, "RssAnon of PID 1 (KiB)", name, anon)
                    self.results.add(key, "VmRSS of all init processes (KiB)", name, total)
                    self.results.add(key, f"PID 1 wake-ups over {window:g} s", name, woke)
            finally:
                for _, run, _ in batch:
                    run.stop()

    def binaries(self, static_path):
        key = "binary"
        sc = self.results.scenario(key, "2b. binary size and linkage",
                                   columns=["init", "file", "size (KiB)", "linkage (`file`)"])
        rows = []
        entries = [(i.name, i.binary, i.extra_files) for i in self.inits
                   if i.name not in (FLEET_STATIC, FLEET_TMPFS)]
        if static_path and os.path.exists(static_path):
            entries.insert(1, (FLEET_STATIC, static_path, []))
        if shutil.which("tini-static"):
            entries.append(("tini-static", shutil.which("tini-static"), []))
        for name, path, extra in entries:
            for p in [path] + extra:
                size = os.path.getsize(p)
                desc = subprocess.run(["file", "-b", "-L", p], capture_output=True, text=True,
                                      timeout=10).stdout.strip()
                if "statically linked" in desc or "static-pie" in desc:
                    link = "static" + (" (static-pie)" if "static-pie" in desc else "")
                elif "dynamically linked" in desc:
                    libs = subprocess.run(["ldd", p], capture_output=True, text=True,
                                          timeout=10).stdout
                    names = [ln.split()[0] for ln in libs.splitlines()
                             if "=>" in ln and "linux-vdso" not in ln]
                    link = "dynamic: " + ", ".join(os.path.basename(n) for n in names)
                else:
                    link = desc.split(",")[0]
                rows.append({"init": name, "file": p, "bytes": size, "linkage": link})
        sc["rows"] = rows

    # 3 + 5a -----------------------------------------------------------------------------------
    def signal_latency(self):
        key, key5 = "signal", "shutdown"
        direct = Init(DIRECT_KILL, "none", "")
        self.results.scenario(
            key, "3. signal forwarding: SIGTERM to PID 1 → received by the child (µs)",
            columns=[DIRECT_KILL] + self.results.columns,
            notes=[f"{DIRECT_KILL}: the same sigwait child with no init (it is PID 1 itself, its "
                   "SIGTERM blocked and waited for), signalled directly: the floor every init's "
                   "figure includes","sendsig reads CLOCK_MONOTONIC and calls kill(PID 1, SIGTERM) at once; the "
                   "child (sigwait: SIGTERM blocked, sigwaitinfo) reads CLOCK_MONOTONIC on "
                   "receipt; the child is started, reports ready, then 50 ms pass before the "
                   "signal",
                   "s6 path: s6-svscan → s6-supervise → service; supervisord: its main loop sees "
                   "the signal on its next wake-up"])
        self.results.scenario(
            key5, "5. shutdown",
            notes=["fast child = the sigwait child of scenario 3 (exits 0 as soon as SIGTERM "
                   "arrives); times are from kill() to the init's exit (pidfd of PID 1 becomes "
                   "readable), measured by sendsig in the same runs as scenario 3",
                   f"SIGTERM-ignoring child: fleet-init runs with --grace-ms {FLEET_GRACE_MS}, "
                   "peers at their defaults (supervisord stopwaitsecs=10, s6 no timeout-kill); "
                   f"wait capped at {self.p['ignore_cap_s']:g} s; all inits side by side in a "
                   "repetition"])
        for rep in range(self.p["signal_reps"]):
            for init in rotate([direct] + self.inits, rep):
                wd = self.workdir("signal")
                out = os.path.join(wd, "sigwait.out")
                run = NsRun(init, [helper("sigwait"), out, "wait"], wd)
                try:
                    pid = run.init_pid()
                    if pid is None or not wait_for(lambda: ready_line(out), 15):
                        progress(f"signal: {init.name} child never ready")
                        self.results.add(key, "latency (µs)", init.name, None,
                                         none_label="failed")
                        continue
                    time.sleep(0.05)
                    r = sendsig(signal.SIGTERM, pid, wait_ms=12000)
                    recv = [int(ln.split()[1]) for ln in read_text(out).splitlines()
                            if ln.startswith("recv ")]
                    lat = (recv[0] - r["sent"]) / 1e3 if recv and r["sent"] else None
                    self.results.add(key, "latency (µs)", init.name, lat, none_label="not received")
                    if init is direct:
                        continue
                    ex = r["exit"].get(pid)
                    self.results.add(key5, "fast child: SIGTERM → init exit (ms)", init.name,
                                     (ex - r["sent"]) / 1e6 if ex and r["sent"] else None,
                                     none_label="no exit in 12 s")
                    code = run.wait(5)
                    self.results.add(key5, "fast child: init exit code", init.name,
                                     "timeout" if code is None else code, kind="cat")
                finally:
                    run.stop()

    def ignore_term(self):
        key = "shutdown"
        cap_ms = int(self.p["ignore_cap_s"] * 1000)
        for rep in range(self.p["ignore_reps"]):
            batch = []
            try:
                for init in rotate(self.inits, rep):
                    wd = self.workdir("ignore")
                    out = os.path.join(wd, "sigwait.out")
                    args = ["--grace-ms", str(FLEET_GRACE_MS)] if init.kind == "fleet" else ()
                    batch.append((init, NsRun(init, [helper("sigwait"), out, "ignore"], wd,
                                              fleet_args=args), out))
                children = {}
                for init, run, out in batch:
                    pid = run.init_pid()
                    if pid is None or not wait_for(lambda: ready_line(out), 15):
                        progress(f"ignore: {init.name} child never ready")
                        continue
                    table = proc_table()
                    kids = [p for p in descendants(pid, table) if table[p][1] == "sigwait"]
                    if kids:
                        children[init.name] = kids[0]
                time.sleep(0.1)
                senders = []
                for init, run, out in batch:
                    if init.name in children:
                        senders.append((init, run, subprocess.Popen(
                            sendsig_argv(signal.SIGTERM, run.pid, cap_ms,
                                         [children[init.name]]),
                            stdout=subprocess.PIPE, text=True)))
                for init, run, sender in senders:
                    try:
                        text, _ = sender.communicate(timeout=cap_ms / 1000 + 10)
                    except subprocess.TimeoutExpired:
                        sender.kill()
                        text, _ = sender.communicate()
                    r = parse_sendsig(text)
                    child = children[init.name]
                    killed = r["exit"].get(child)
                    ended = r["exit"].get(run.pid)
                    self.results.add(
                        key, "TERM-ignoring child: SIGTERM → child SIGKILLed (ms)", init.name,
                        (killed - r["sent"]) / 1e6 if killed else None,
                        none_label=f"no escalation (≥{cap_ms / 1000:g} s)")
                    self.results.add(
                        key, "TERM-ignoring child: SIGTERM → init exit (ms)", init.name,
                        (ended - r["sent"]) / 1e6 if ended else None,
                        none_label=f"still running at {cap_ms / 1000:g} s")
                    code = run.wait(2) if ended else None
                    self.results.add(key, "TERM-ignoring child: init exit code", init.name,
                                     "still running" if code is None else code, kind="cat")
            finally:
                for _, run, _ in batch:
                    run.stop()

    # 4 ----------------------------------------------------------------------------------------
    def zombies(self):
        key = "zombies"
        n, tmo = self.p["zombie_n"], self.p["zombie_timeout_ms"]
        self.results.scenario(
            key, f"4. zombie reaping: {n:,} orphans reparented to PID 1",
            notes=["orphans: forks N children, each forks a grandchild that exits at once and "
                   "exits itself; the zombies counted are those whose parent is PID 1 (State Z "
                   "in the namespace's /proc); peak = largest count at every 1000th fork and at "
                   "the last; time to zero = last fork → no grandchild left, alive or zombie "
                   "(scan every 0.5 ms + scan time); PID 1 CPU = utime+stime of /proc/1/stat "
                   "(10 ms ticks) and the run time of /proc/1/schedstat (ns) over the whole run"])
        for rep in range(self.p["zombie_reps"]):
            for init in rotate(self.inits, rep):
                wd = self.workdir("zombies")
                out = os.path.join(wd, "orphans.out")
                run = NsRun(init, [helper("orphans"), str(n), out, str(tmo)], wd)
                try:
                    got = wait_for(lambda: "reaped_children" in read_text(out),
                                   30 + tmo / 1000, interval=0.01)
                    if not got:
                        progress(f"zombies: {init.name} no result")
                        self.results.add(key, "time from last fork to zero orphans (ms)",
                                         init.name, None, none_label="no result")
                        continue
                    kv = dict(ln.split() for ln in read_text(out).splitlines() if ln.strip())
                    kv = {k: int(v) for k, v in kv.items()}
                    add = lambda label, v, **kw: self.results.add(key, label, init.name, v, **kw)
                    add("orphan zombies of PID 1 at the last fork", kv["pending_at_last_fork"])
                    add("peak orphan zombies of PID 1 (every 1000 forks)", kv["peak_pending"])
                    add("time from last fork to zero orphans (ms)",
                        None if kv["timed_out"] else kv["time_to_zero_ns"] / 1e6,
                        none_label=f"not zero at {tmo / 1000:g} s")
                    add(f"orphans not yet reaped when the wait ended (cap {tmo / 1000:g} s)",
                        kv["left"])
                    add("PID 1 CPU time, utime+stime (ms)",
                        kv["pid1_cpu_ticks"] * 1000 / kv["clk_tck"])
                    add("PID 1 CPU time, schedstat (ms)",
                        kv["pid1_cpu_ns"] / 1e6 if kv.get("pid1_cpu_ns", -1) >= 0 else None,
                        none_label="no schedstat")
                    add("fork loop of the workload (ms, informational)",
                        kv["fork_loop_ns"] / 1e6, ratio=False)
                finally:
                    if init.exits_with_child:
                        run.wait(5)
                    run.stop()

    # 6 ----------------------------------------------------------------------------------------
    def exit_codes(self):
        key = "exit"
        self.results.scenario(
            key, "6. exit-code propagation",
            notes=["s6: plain s6-svscan has no way to return its service's code (s6-overlay "
                   "adds one); the code shown is s6-svscan's own"])
        cases = [("child `exit 3` → init exit code (expect 3)", ["sh", "-c", "exit 3"]),
                 ("child SIGKILLed → init exit code (expect 137)", ["sh", "-c", "kill -9 $$"])]
        for init in self.inits:
            if not init.exits_with_child:
                self.results.na(key, init.name, "does not exit when its program exits (stays "
                                "up; exits 0 after SIGTERM)")
        inits = [i for i in self.inits if i.exits_with_child]
        for rep in range(self.p["exit_reps"]):
            for label, cmd in cases:
                for init in rotate(inits, rep):
                    wd = self.workdir("exit")
                    run = NsRun(init, cmd, wd)
                    try:
                        code = run.wait(10)
                        if code is not None and code < 0:
                            code = f"killed by signal {-code}"
                        self.results.add(key, label, init.name,
                                         "timeout" if code is None else code, kind="cat")
                    finally:
                        run.stop()

    # 7 ----------------------------------------------------------------------------------------
    def fleet_scenario(self):
        key = "fleet"
        if key in self.results.scenarios:
            return self.results.scenarios[key]
        sc = self.results.scenario(
            key, "7. fleet-init only (config mode)",
            notes=["clean-exit restart: worker `stamp` (static C, exits 0 at once, writes "
                   "CLOCK_MONOTONIC at entry and just before exit), restart always, "
                   "clean_restart_budget 1000000; latency = entry of run n+1 − exit of run n "
                   "(helper, µs) or worker_exited ts → next worker_started ts (events, 1 ms "
                   "resolution)",
                   "crash cadence: the same worker exiting 1, backoff_initial_ms 50, "
                   "backoff_max_ms 400, max_crashes 1000; delay = entry of the next run − exit "
                   "of the crashed one, against min(50·2^(crash_count−1), 400) ms",
                   "the 50-worker figures come from the idle runs of scenario 2 (same window)"])
        for init in self.inits:
            if init.name in (FLEET_STATIC, FLEET_TMPFS):
                self.results.na(key, init.name, "same code as fleet-init: measured once, on "
                                "the release build (restart latency on disk and on tmpfs)")
            elif init.name != FLEET:
                self.results.na(key, init.name, FLEET_ONLY)
        return sc

    def fleet_only(self):
        key = "fleet"
        fleet = self.by_name(FLEET)
        self.fleet_scenario()
        if fleet is None:
            return
        for rep in range(self.p["clean_reps"]):
            self._restart_run(fleet, "clean", 0, self.p["clean_window_s"])
            self._restart_run(fleet, "clean", 0, self.p["clean_window_s"], tmpfs=True)
        for rep in range(self.p["crash_reps"]):
            self._restart_run(fleet, "crash", 1, self.p["crash_window_s"])
        self._tree_figures(fleet)

    # 7b: readiness and health probes ------------------------------------------------------
    def probe_costs(self):
        """Wake-ups per minute of 10 ready workers without health checks (should be 0), and
        the cost of one health check (`true`) every second: wake-ups, fleet-init's own CPU per
        check (/proc/PID/schedstat), the probe child's CPU (cutime+cstime), and the syscalls
        of fleet-init per check (strace -c -p, then strace -c -f with the probe children)."""
        key = "fleet"
        fleet = self.by_name(FLEET)
        self.fleet_scenario()
        if fleet is None:
            return
        window = self.p["idle_window_s"]
        for rep in range(self.p["idle_reps"]):
            per_minute = self._probe_run(fleet, 10, None, window)
            if per_minute is not None:
                self.results.add(key, "wake-ups per minute, 10 ready workers, no health "
                                 "checks (expect 0)", FLEET, per_minute[0])
        health = {"command": ["true"], "interval_ms": 1000, "timeout_ms": 2000, "failures": 3}
        figures = self._probe_run(fleet, 1, health, max(window, 10.0))
        if figures is None:
            return
        per_minute, checks, own_us, child_ms, syscalls, syscalls_f, top = figures
        self.results.add(key, "wake-ups per minute, 1 worker, health `true` every 1 s", FLEET,
                         per_minute)
        if checks:
            self.results.add(key, "health check: fleet-init CPU per check (µs)", FLEET,
                             own_us / checks)
            self.results.add(key, "health check: probe child CPU per check (ms, 10 ms ticks)",
                             FLEET, child_ms / checks)
        if syscalls is not None:
            self.results.add(key, "health check: fleet-init syscalls per check (strace -c)",
                             FLEET, syscalls)
            self.results.add(key, "health check: fleet-init's commonest syscalls per check",
                             FLEET, top, kind="cat")
        if syscalls_f is not None:
            self.results.add(key, "health check: syscalls per check with the probe child "
                             "(strace -c -f)", FLEET, syscalls_f)

    def _probe_run(self, fleet, workers, health, window):
        wd = self.workdir("probes")
        conf = os.path.join(wd, "fleet.json")
        events_path = os.path.join(wd, "events.jsonl")
        specs = []
        for i in range(workers):
            spec = {"name": f"w{i}", "command": ["sleep", "600"],
                    "ready": {"file": "/", "interval_ms": 50}}
            if i:
                spec["after"] = [f"w{i - 1}"]
            if health:
                spec["health"] = health
            specs.append(spec)
        with open(conf, "w") as f:
            json.dump({"state_dir": os.path.join(wd, "state"), "workers": specs}, f)
        run = NsRun(fleet, None, wd, argv=[fleet.binary, "--config", conf],
                    stdout_path=events_path)
        try:
            pid = run.init_pid()
            if pid is None:
                return None

            def all_ready():
                return sum(e["event"] == "worker_ready"
                           for e in parse_events(events_path)) >= workers
            if not wait_for(all_ready, 10, interval=0.01):
                progress("probe run: the workers did not all become ready")
                return None
            time.sleep(0.2)

            def cpu():
                with open(f"/proc/{pid}/schedstat") as f:
                    own_ns = int(f.read().split()[0])
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks = int(fields[13]) + int(fields[14])  # cutime + cstime
                return own_ns, ticks * 1000.0 / os.sysconf("SC_CLK_TCK")
            w0, (own0, child0) = wakeups(pid), cpu()
            time.sleep(window)
            w1, (own1, child1) = wakeups(pid), cpu()
            per_minute = (w1 - w0) * 60.0 / window
            if not health:
                return (per_minute,)
            checks = round(window * 1000 / health["interval_ms"])
            syscalls, top = self._strace_per_check(pid, window, health, follow=False)
            syscalls_f, _ = self._strace_per_check(pid, window, health, follow=True)
            return (per_minute, checks, (own1 - own0) / 1000.0, child1 - child0, syscalls,
                    syscalls_f, top)
        finally:
            run.stop()

    def _strace_per_check(self, pid, window, health, follow):
        if shutil.which("strace") is None:
            return None, "strace not installed"
        out = os.path.join(self.tmp, f"strace-{pid}-{int(follow)}.txt")
        argv = ["strace", "-c", "-o", out] + (["-f"] if follow else []) + ["-p", str(pid)]
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(window)
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tracer.kill()
            return None, "strace hung"
        checks = max(1, round(window * 1000 / health["interval_ms"]))
        rows = []
        total = None
        for line in read_text(out).splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit():
                if parts[-1] == "total":
                    total = int(parts[3])
                else:
                    rows.append((int(parts[3]), parts[-1]))
        rows.sort(reverse=True)
        top = ", ".join(f"{name} {calls / checks:.1f}" for calls, name in rows[:6])
        return (None if total is None else total / checks), top

    def _tree_figures(self, fleet):
        """Watchdog sample cost and --reap of a 1,000-process tree (examples/tree_bench.rs)."""
        key = "fleet"
        tool = os.path.join(ROOT, "target", "release", "examples", "tree_bench")
        if not os.path.exists(tool):
            for label in ("memory watchdog: one sample over a 1,000-process tree (ms)",
                          "--reap of a recorded 1,000-process orphan tree (ms)",
                          "registry bytes written while starting 1,000 workers"):
                self.results.add(key, label, FLEET, "tree_bench not built", kind="cat")
            return
        reps = 1 if self.p["idle_reps"] == 1 else 3
        for rep in range(reps):
            out = subprocess.run([tool, "sample", "1000", "20"], capture_output=True,
                                 text=True, timeout=120).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    for us in row["samples_us"]:
                        self.results.add(key, "memory watchdog: one sample over a 1,000-process "
                                         "tree (ms)", FLEET, us / 1000.0)
            out = subprocess.run([tool, "reap", "1000", fleet.binary], capture_output=True,
                                 text=True, timeout=120).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    self.results.add(key, "--reap of a recorded 1,000-process orphan tree (ms)",
                                     FLEET, row["ms"])
                    self.results.add(key, "--reap survivors (of 1,000)", FLEET, row["survivors"])
            out = subprocess.run([tool, "registry", "1000", fleet.binary], capture_output=True,
                                 text=True, timeout=120).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    self.results.add(key, "registry bytes written while starting 1,000 workers",
                                     FLEET, row["registry_bytes"])
                    self.results.add(key, "registry writes while starting 1,000 workers", FLEET,
                                     row["registry_writes"])

    def _restart_run(self, fleet, mode, code, window, tmpfs=False):
        key = "fleet"
        wd = self.workdir(mode)
        suffix = ", state on tmpfs" if tmpfs else ""
        stamps, events_path = os.path.join(wd, "stamps"), os.path.join(wd, "events.jsonl")
        conf = os.path.join(wd, "fleet.json")
        worker = {"name": "w", "command": [helper("stamp"), stamps, str(code)],
                  "restart": "always", "backoff_initial_ms": 50, "backoff_max_ms": 400,
                  "clean_restart_budget": 1000000, "max_crashes": 1000}
        with open(conf, "w") as f:
            state = os.path.join(wd, "state")
            if tmpfs:
                state = os.path.join("/dev/shm", "fleet-bench-" + os.path.basename(wd))
            json.dump({"state_dir": state, "workers": [worker]}, f)
        run = NsRun(fleet, None, wd, argv=[fleet.binary, "--config", conf],
                    stdout_path=events_path)
        try:
            pid = run.init_pid()
            time.sleep(window)
            if pid is not None:
                r = sendsig(signal.SIGTERM, pid, wait_ms=5000)
                if pid in r["timeout"]:
                    progress(f"{mode} restart run: fleet-init did not exit 5 s after SIGTERM")
            exit_code = run.wait(5)
        finally:
            run.stop()
        rows = read_stamps(stamps)
        events = parse_events(events_path)
        self.results.add(key, "exit code after SIGTERM (config mode, expect 0)", FLEET,
                         "timeout" if exit_code is None else exit_code, kind="cat")
        gaps = [(b[1] - a[2]) for a, b in zip(rows, rows[1:])]
        if mode == "clean":
            for g in gaps:
                self.results.add(key, "clean-exit restart latency, helper clock (µs)" + suffix,
                                 FLEET, g / 1e3)
            pairs = []
            last_exit = None
            for e in events:
                if e["event"] == "worker_exited":
                    last_exit = e["_t"]
                elif e["event"] == "worker_started" and last_exit is not None:
                    pairs.append((e["_t"] - last_exit) * 1000)
                    last_exit = None
            for p in pairs:
                self.results.add(key, "clean-exit restart latency, event ts (ms)" + suffix, FLEET,
                                 round(p, 3))
            if len(rows) >= 2:
                span = (rows[-1][2] - rows[0][1]) / 1e9
                self.results.add(key, "clean-exit restarts per second" + suffix, FLEET,
                                 (len(rows) - 1) / span)
            return
        backoffs = [e.get("ms") for e in events if e["event"] == "backoff"]
        crashes = [e.get("crash_count") for e in events
                   if e["event"] == "worker_exited" and e.get("likely_cause") == "crash"]
        by_expected = collections.defaultdict(list)
        formula_ok = 0
        for i, g in enumerate(gaps):
            count = crashes[i] if i < len(crashes) else None
            expected = min(50 * 2 ** (count - 1), 400) if isinstance(count, int) else None
            said = backoffs[i] if i < len(backoffs) else None
            if expected is None:
                continue
            formula_ok += said == expected
            self.results.add(key, "crash restart: observed − expected delay (ms)", FLEET,
                             g / 1e6 - expected, ratio=False)
            by_expected[expected].append(g / 1e6)
        for expected in sorted(by_expected):
            for g in by_expected[expected]:
                self.results.add(key, f"crash restart: observed delay, backoff {expected} ms "
                                 "(ms)", FLEET, g, ratio=False)
        self.results.add(key, "crash restart: `backoff` events matching the formula", FLEET,
                         f"{formula_ok}/{len(gaps)}", kind="cat")


# --------------------------------------------------------------------------------------------
# Targets


def evaluate_targets(b):
    r = b.results
    sc = r.scenarios

    def samples(key, label, init):
        try:
            return sc[key]["metrics"][label]["samples"].get(init, [])
        except KeyError:
            return []

    def within(key, label, what):
        for name in (FLEET, FLEET_TMPFS):
            f, c = med(samples(key, label, name)), med(samples(key, label, "catatonit"))
            if f is None or c is None:
                continue
            ratio = f / c if c else float("inf")
            target(r, f"{what} within 1.2× of catatonit ({name})",
                   f"{fmt(f)} vs {fmt(c)} (×{ratio:.2f})", f <= 1.2 * c)

    if "start" in sc:
        within("start", "overhead over no init (ms)", "start + exit overhead (ms)")
        within("start", "overhead, fastest run − fastest no-init run (ms)",
               "start + exit overhead, fastest runs (ms, informational)")
    if "signal" in sc:
        within("signal", "latency (µs)", "signal forwarding latency (µs)")
    if "shutdown" in sc:
        within("shutdown", "fast child: SIGTERM → init exit (ms)", "fast-child shutdown (ms)")
    if "idle" in sc:
        window = b.p["idle_window_s"]
        for name in (FLEET, FLEET_STATIC):
            woke = samples("idle", f"PID 1 wake-ups over {window:g} s", name)
            if woke:
                target(r, f"zero idle wake-ups ({name}, 1 worker)",
                       f"max {max(woke)} over {window:g} s", max(woke) == 0)
            rss = samples("idle", "VmRSS of PID 1 (KiB)", name)
            anon = samples("idle", "RssAnon of PID 1 (KiB)", name)
            if rss:
                target(r, f"idle VmRSS < 1.5 MiB ({name})", f"{fmt(med(rss))} KiB",
                       med(rss) < 1.5 * 1024)
            if anon:
                target(r, f"idle RssAnon < 200 kB ({name})", f"{fmt(med(anon))} KiB",
                       med(anon) < 200)
    if "zombies" in sc:
        for name in (FLEET, FLEET_STATIC):
            z = samples("zombies", "orphan zombies of PID 1 at the last fork", name)
            if z:
                target(r, f"zero zombies pending at the last fork ({name})",
                       f"{', '.join(map(str, z))} (peak "
                       f"{max(samples('zombies', 'peak orphan zombies of PID 1 (every 1000 forks)', name))})",
                       max(z) == 0)
    if "binary" in sc:
        rows = [x for x in sc["binary"].get("rows", []) if x["init"] == FLEET_STATIC]
        if rows:
            x = rows[0]
            target(r, "binary < 1.5 MiB, static", f"{x['bytes'] / 1024:.0f} KiB, {x['linkage']}",
                   x["bytes"] < 1.5 * 1024 * 1024 and x["linkage"].startswith("static"))
        else:
            target(r, "binary < 1.5 MiB, static", "static build missing", False)
    if "shutdown" in sc:
        killed = samples("shutdown", "TERM-ignoring child: SIGTERM → child SIGKILLed (ms)", FLEET)
        nums = [k for k in killed if k is not None]
        if killed:
            ok = len(nums) == len(killed) and all(abs(k - FLEET_GRACE_MS) <= 5 for k in nums)
            target(r, f"SIGTERM-ignoring child SIGKILLed at grace ± 5 ms (--grace-ms "
                   f"{FLEET_GRACE_MS})",
                   ", ".join(fmt(k) if k is not None else "none" for k in killed) + " ms", ok)
    issue10_targets(r, samples)
    if "fleet" in sc:
        for suffix, where in (("", "state on disk"), (", state on tmpfs", "state on tmpfs")):
            lat = samples("fleet", "clean-exit restart latency, helper clock (µs)" + suffix, FLEET)
            ev = samples("fleet", "clean-exit restart latency, event ts (ms)" + suffix, FLEET)
            if lat:
                target(r, f"clean-exit restart latency < 1 ms median ({where})",
                       f"{fmt(med(lat))} µs (helper clock); events: {fmt(med(ev))} ms",
                       med(lat) < 1000)


def issue10_targets(r, samples):
    """Issue 10's targets for the static build against catatonit, same run, medians."""
    name, cat = FLEET_STATIC, "catatonit"

    def ratio_target(what, key, label, limit, floor=0.0, unit="ms"):
        f, c = med(samples(key, label, name)), med(samples(key, label, cat))
        if f is None or c is None:
            return
        ratio = (f - floor) / (c - floor) if c > floor else float("inf")
        above = f" above the direct kill ({fmt(floor)})" if floor else ""
        target(r, f"issue 10: {what}{above} ≤ {limit}× catatonit's ({name})",
               f"{fmt(f)} vs {fmt(c)} {unit} (×{ratio:.2f})", ratio <= limit)

    ratio_target("start + exit overhead", "start", "overhead over no init (ms)", 1.2)
    direct = med(samples("signal", "latency (µs)", DIRECT_KILL))
    if direct is not None:
        ratio_target("SIGTERM → child", "signal", "latency (µs)", 1.5, floor=direct, unit="µs")
    ratio_target("fast-child shutdown", "shutdown", "fast child: SIGTERM → init exit (ms)", 1.2)
    ratio_target("PID 1 CPU for 10,000 orphans (schedstat)", "zombies",
                 "PID 1 CPU time, schedstat (ms)", 1.2)
    rss = med(samples("idle", "VmRSS of PID 1 (KiB)", name))
    anon = med(samples("idle", "RssAnon of PID 1 (KiB)", name))
    if anon is not None:
        target(r, f"issue 10: idle RssAnon ≤ 100 kB ({name})", f"{fmt(anon)} KiB",
               anon * 1024 <= 100_000)
    if rss is not None:
        target(r, f"issue 10: idle VmRSS ≤ 1 MiB ({name})", f"{fmt(rss)} KiB", rss <= 1024)


# --------------------------------------------------------------------------------------------


def machine_info(inits, fleet_bin):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    model = ""
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {}
    for pkg in ("tini", "dumb-init", "catatonit", "s6", "supervisor"):
        v = out(["dpkg-query", "-W", "-f", "${Version}", pkg])
        if v:
            versions[pkg] = v
    versions["fleet-init"] = out([fleet_bin, "--version"]).removeprefix("fleet-init ")
    versions["rustc"] = out(["rustc", "--version"]).removeprefix("rustc ")
    return {"nproc": os.cpu_count(), "kernel": os.uname().release, "cpu": model,
            "loadavg_at_start": read_text("/proc/loadavg").strip(),
            "python": sys.version.split()[0], "versions": versions,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def find_inits(fleet_bin, static_bin, wanted):
    found, missing = [], {}
    candidates = [
        (FLEET, "fleet", fleet_bin, []),
        (FLEET_STATIC, "fleet", static_bin, []),
        (FLEET_TMPFS, "fleet", fleet_bin, []),
        ("tini", "tini", shutil.which("tini"), []),
        ("dumb-init", "dumb-init", shutil.which("dumb-init"), []),
        ("catatonit", "catatonit", shutil.which("catatonit"), []),
        ("s6", "s6", shutil.which("s6-svscan"),
         [p for p in (shutil.which("s6-supervise"),) if p]),
        ("supervisord", "supervisord", shutil.which("supervisord"), []),
    ]
    for name, kind, binary, extra in candidates:
        if wanted and name not in wanted:
            continue
        if binary and os.path.exists(binary) and (kind != "s6" or shutil.which("s6-svscanctl")):
            found.append(Init(name, kind, binary, extra, state_on_tmpfs=name == FLEET_TMPFS))
        else:
            missing[name] = "not installed" if name != FLEET_STATIC else "static build missing"
    return found, missing


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default=os.path.join(HERE, "results.json"),
                        help="raw samples as JSON (default bench/results.json)")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1",
                        help="fewer repetitions, shorter windows (also QUICK=1)")
    parser.add_argument("--fleet-init", default=os.path.join(ROOT, "target/release/fleet-init"))
    parser.add_argument("--static", default=os.path.join(ROOT, "target/static/fleet-init-static"))
    parser.add_argument("--inits", help="comma-separated subset of inits")
    parser.add_argument("--only", help="comma-separated subset of scenarios: start,idle,binary,"
                        "signal,ignore,zombies,exit,fleet,probes")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set signal_reps=50")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: needs root (unshare --pid --mount-proc)")
    if not os.path.exists(args.fleet_init):
        sys.exit(f"bench.py: {args.fleet_init} missing: cargo build --release first")
    build_helpers()
    wanted = set(args.inits.split(",")) if args.inits else None
    inits, missing = find_inits(args.fleet_init, args.static, wanted)
    for name, why in missing.items():
        print(f"bench.py: skipping {name}: {why}", file=sys.stderr)
    params = dict(QUICK if args.quick else FULL)
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in params:
            sys.exit(f"bench.py: unknown parameter {name}; known: {', '.join(params)}")
        params[name] = type(params[name])(value)
    only = set(args.only.split(",")) if args.only else None
    tmp = tempfile.mkdtemp(prefix="fleet-bench-")
    bench = Bench(inits, params, tmp)
    info = machine_info(inits, args.fleet_init)
    atexit.register(stop_all)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    plan = [("start", bench.start_exit), ("idle", bench.idle),
            ("binary", lambda: bench.binaries(args.static)),
            ("signal", bench.signal_latency), ("ignore", bench.ignore_term),
            ("zombies", bench.zombies), ("exit", bench.exit_codes), ("fleet", bench.fleet_only),
            ("probes", bench.probe_costs)]
    t0 = time.monotonic()
    try:
        for name, step in plan:
            if only is not None and name not in only:
                continue
            load = read_text("/proc/loadavg").split()[:3]
            bench.loads[name] = load
            progress(f"scenario {name} ({'quick' if args.quick else 'full'}), load {load}")
            step()
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t0
    for key, sc in bench.results.scenarios.items():
        for name, why in missing.items():
            if name in sc["columns"]:
                sc["na"].setdefault(name, why)
    # columns of inits that are not installed still show, as n/a
    evaluate_targets(bench)
    md = render_report(bench, info, elapsed, args.quick, missing)
    print(md)
    doc = {"machine": info, "quick": args.quick, "params": params, "elapsed_s": elapsed,
           "skipped": missing, "loadavg_at_scenario_start": bench.loads,
           "scenarios": bench.results.as_json(),
           "binaries": bench.results.scenarios.get("binary", {}).get("rows", []),
           "targets": bench.results.targets}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    print(f"raw samples: {args.out}", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)


def render_report(bench, info, elapsed, quick, missing):
    v = info["versions"]
    lines = [f"## fleet-init bench ({'QUICK' if quick else 'full'} run, {info['date']}, "
             f"{elapsed:.0f} s)\n",
             f"Machine: {info['nproc']} cores, {info['cpu']}, kernel {info['kernel']}; "
             f"load average at start {' '.join(info['loadavg_at_start'].split()[:3])}  ",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + "  "]
    if bench.loads:
        lines.append("1-min load average when each scenario started (the machine may be "
                     "shared; the average lags, and counts this bench's own forks too): " + ", ".join(f"{k} {v[0]}" for k, v in bench.loads.items())
                     + "  ")
    if missing:
        lines.append("Skipped: " + ", ".join(f"{k} ({w})" for k, w in missing.items()) + "  ")
    lines.append("Cells: median (min–max) over the repetitions; ×N = the init's median / "
                 "fleet-init's. fleet-init = target/release/fleet-init (dynamic); "
                 "fleet-init-static = the static build (container/build-static: musl).\n")
    binary = bench.results.scenarios.pop("binary", None)
    lines.append(render(bench.results))
    if binary is not None:
        bench.results.scenarios["binary"] = binary
        lines.append(f"### {binary['title']}\n")
        lines.append("| init | file | size (KiB) | linkage |")
        lines.append("|---|---|---|---|")
        for row in binary.get("rows", []):
            shown = os.path.relpath(row["file"], ROOT) if row["file"].startswith(ROOT + "/") \
                else row["file"]
            lines.append(f"| {row['init']} | `{shown}` | {row['bytes'] / 1024:.0f} | "
                         f"{row['linkage']} |")
        lines.append("")
    lines.append(render_targets(bench.results))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
