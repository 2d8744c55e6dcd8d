"""The plumbing of the end-to-end scenarios: podman calls with deadlines, the registry-free
image, event parsing, a pty driver, and the cleanup of everything a run made.

podman is kept off /etc: its containers.conf and storage.conf live in a scratch directory under
/var/tmp named through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF. Only the standard library.
"""

import atexit
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_ID = "%d" % os.getpid()
LABEL = "fleet-init-e2e=" + RUN_ID
PREFIX = "fie2e-%s-" % RUN_ID
IMAGE_BASE = "localhost/fleet-init-e2e-%s:base" % RUN_ID
IMAGE_CONFIG = "localhost/fleet-init-e2e-%s:config" % RUN_ID
IMAGE_QUIT = "localhost/fleet-init-e2e-%s:quit" % RUN_ID
# Bound of one podman call unless a scenario says otherwise: a hang fails, never blocks CI.
CALL_TIMEOUT_S = 60

WORK = None  # scratch directory: podman config, storage, rootfs, bind-mounted files
# podman 4.3 as root always creates these two (netavark's run dir, the image library's
# blob-info cache) whatever its config says; removed at the end when this run created them.
HOST_DIRS = ("/run/containers", "/var/lib/containers")
HOST_DIRS_BEFORE = {path: os.path.exists(path) for path in HOST_DIRS}


class Failed(Exception):
    """A scenario's check did not hold; the message says what was seen."""


# ---------------------------------------------------------------------------------------------
# podman plumbing


def podman_env():
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = os.path.join(WORK, "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = os.path.join(WORK, "storage.conf")
    return env


def run(args, timeout=CALL_TIMEOUT_S, check=False, input_bytes=None):
    """Runs one command with a deadline; returns (code, stdout, stderr) as text.
    A timeout is code None (the command was killed)."""
    try:
        proc = subprocess.run(
            args,
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=podman_env(),
            # conmon inherits podman's cwd and may drop an `oom` file there after an OOM kill.
            cwd=WORK,
        )
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode(errors="replace")
        err = (expired.stderr or b"").decode(errors="replace")
        if check:
            raise Failed("timed out after %ss: %s" % (timeout, " ".join(args)))
        return None, out, err
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        raise Failed(
            "%s exited %s: %s" % (" ".join(args[:3]), proc.returncode, err.strip()[-400:])
        )
    return proc.returncode, out, err


def podman(*args, timeout=CALL_TIMEOUT_S, check=False, input_bytes=None):
    return run(["podman", *args], timeout=timeout, check=check, input_bytes=input_bytes)


def name(scenario):
    return PREFIX + scenario


def run_detached(cname, *args, image=IMAGE_BASE, cmd=()):
    """podman run -d with our label; returns the container name."""
    podman(
        "run", "-d", "--name", cname, "--label", LABEL, *args, image, *cmd,
        check=True,
    )
    return cname


def logs(cname):
    _, out, err = podman("logs", cname, timeout=30)
    return out, err


def events(text):
    """Every fleet-init JSON event line in text (stdout and stderr both: single-command
    mode's events move from stdout to stderr with the drop-in work, issue 11)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "event" in value:
            found.append(value)
    return found


def events_named(text, event, **fields):
    return [
        e for e in events(text)
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


def output_lines(text):
    """What the worker printed, whether raw (single-command mode, output inherit) or as
    config mode's `output` events."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
            except ValueError:
                lines.append(stripped)
                continue
            if isinstance(value, dict) and value.get("event") == "output":
                lines.append(str(value.get("line", "")).rstrip("\n"))
            continue
        lines.append(stripped)
    return lines


def wait_for(predicate, timeout_s, interval_s=0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


def wait_logs(cname, predicate, timeout_s):
    """Polls `podman logs` until predicate(stdout + stderr) holds; returns the last text."""
    last = [""]

    def probe():
        out, err = logs(cname)
        last[0] = out + "\n" + err
        return predicate(last[0])

    wait_for(probe, timeout_s, 0.2)
    return last[0]


def inspect(cname, fmt):
    _, out, _ = podman("inspect", "--format", fmt, cname, timeout=30)
    return out.strip()


def wait_exit(cname, timeout_s):
    """Waits for the container to end; returns its exit code, or None on timeout."""
    code, out, _ = podman("wait", cname, timeout=timeout_s)
    if code is None:
        return None
    try:
        return int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def is_running(cname):
    return inspect(cname, "{{.State.Running}}") == "true"


def container_ps(cname):
    """(pid, state, cmdline) of every process in the container's PID namespace, read
    through podman exec from /proc (busybox ps does not show the state of every kernel)."""
    script = (
        'for d in /proc/[0-9]*; do p=${d#/proc/}; '
        's=$(sed -n "s/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p" $d/status 2>/dev/null); '
        '[ -n "$s" ] || continue; '
        'c=$(tr "\\0" " " < $d/cmdline 2>/dev/null); echo "$p $s $c"; done'
    )
    code, out, err = podman("exec", cname, "sh", "-c", script, timeout=30)
    if code != 0:
        raise Failed("podman exec ps in %s: %s" % (cname, err.strip()[-300:]))
    rows = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2:
            rows.append((int(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
    return rows


def host_file(rel, text, mode=0o644):
    path = os.path.join(WORK, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def config_file(rel, workers, **top):
    doc = dict(top)
    doc["workers"] = workers
    return host_file(rel, json.dumps(doc, indent=1))


def config_entrypoint(path_in_container):
    return ["--entrypoint", json.dumps(["/fleet-init", "--config", path_in_container])]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def expect(condition, message):
    if not condition:
        raise Failed(message)


def tail(text, n=12):
    lines = [l for l in text.splitlines() if l.strip()]
    return " | ".join(lines[-n:])


# ---------------------------------------------------------------------------------------------
# setup and teardown


CONTAINERS_CONF = """\
# Written by fleet-init's e2e/scenarios.py; CONTAINERS_CONF points here, /etc is untouched.
[containers]
# podman's defaults (nofile 1048576) exceed what this machine's hard limits allow.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
# No network unless a scenario asks: the default bridge (netavark) would add firewall rules to
# the host that outlive the run. The published-port scenario uses slirp4netns.
netns = "none"

[engine]
# crun refuses the hybrid cgroup v1 + unified layout of the test machines.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{work}/libpod-tmp"
volume_path = "{work}/storage/volumes"

[network]
network_config_dir = "{work}/networks"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{work}/storage"
runroot = "{work}/runroot"
"""


def write_podman_config():
    host_file("containers.conf", CONTAINERS_CONF.format(work=WORK))
    host_file("storage.conf", STORAGE_CONF.format(work=WORK))
    os.makedirs(os.path.join(WORK, "networks"), exist_ok=True)


def busybox_deb():
    """Downloads Debian's busybox-static package into WORK (apt as root warns that _apt
    cannot write there; the download still happens)."""
    debs = os.path.join(WORK, "debs")
    os.makedirs(debs, exist_ok=True)
    os.chmod(debs, 0o777)
    for attempt in range(2):
        subprocess.run(
            ["apt-get", "download", "-qq", "busybox-static"],
            cwd=debs, capture_output=True, timeout=300,
        )
        found = [f for f in os.listdir(debs) if f.startswith("busybox-static") and f.endswith(".deb")]
        if found:
            return os.path.join(debs, found[0])
        if attempt == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
    raise SystemExit("e2e: could not download Debian's busybox-static package")


def copy_binary(binary, rootfs):
    """Copies fleet-init to /fleet-init; a dynamically linked build also gets the libraries
    ldd names, so FLEET_INIT_BIN may be any x86_64 build (make static is what ships)."""
    shutil.copy2(binary, os.path.join(rootfs, "fleet-init"))
    probe = subprocess.run(["ldd", binary], capture_output=True, text=True)
    for line in probe.stdout.splitlines():
        match = re.search(r"(/\S+)", line.split("=>")[-1])
        if not match or not os.path.exists(match.group(1)):
            continue
        lib = match.group(1)
        target = os.path.join(rootfs, lib.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.realpath(lib), target)


def build_images(binary):
    rootfs = os.path.join(WORK, "rootfs")
    os.makedirs(rootfs)
    subprocess.run(["dpkg-deb", "-x", busybox_deb(), rootfs], check=True, timeout=120)
    for sub in ("sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "root",
                "tmp", "www", "var/tmp"):
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    os.chmod(os.path.join(rootfs, "var/tmp"), 0o1777)
    subprocess.run(["chroot", rootfs, "/bin/busybox", "--install", "-s"], check=True, timeout=60)
    with open(os.path.join(rootfs, "etc/passwd"), "w") as handle:
        handle.write("root:x:0:0:root:/root:/bin/sh\n"
                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(rootfs, "etc/group"), "w") as handle:
        handle.write("root:x:0:\nnogroup:x:65534:\n")
    with open(os.path.join(rootfs, "www/index.html"), "w") as handle:
        handle.write("hello from fleet-init e2e\n")
    copy_binary(binary, rootfs)

    tar = subprocess.run(["tar", "-C", rootfs, "-c", "."], capture_output=True, check=True,
                         timeout=120).stdout
    podman(
        "import",
        "--change", 'ENTRYPOINT ["/fleet-init", "--"]',
        "--change", 'CMD ["/bin/sh"]',
        "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "-", IMAGE_BASE,
        input_bytes=tar, timeout=120, check=True,
    )

    context = os.path.join(WORK, "context")
    os.makedirs(context)
    shutil.copy2(os.path.join(HERE, "fleet-init.json"), context)
    with open(os.path.join(context, "Containerfile"), "w") as handle:
        handle.write(
            "FROM %s\n"
            "COPY fleet-init.json /etc/fleet-init.json\n"
            'ENTRYPOINT ["/fleet-init", "--config", "/etc/fleet-init.json"]\n'
            "CMD []\n" % IMAGE_BASE
        )
    podman("build", "--pull=never", "-q", "-t", IMAGE_CONFIG, context, timeout=180, check=True)
    # nginx-derived images carry STOPSIGNAL SIGQUIT: podman stop sends it instead of SIGTERM.
    with open(os.path.join(context, "Containerfile.quit"), "w") as handle:
        handle.write("FROM %s\nSTOPSIGNAL SIGQUIT\n" % IMAGE_CONFIG)
    podman("build", "--pull=never", "-q", "-f", os.path.join(context, "Containerfile.quit"),
           "-t", IMAGE_QUIT, context, timeout=180, check=True)


def cleanup():
    """Removes every container, volume and image this run made, then the scratch dir.
    Registered with atexit and reached on SIGINT/SIGTERM too."""
    if WORK is None or not os.path.isdir(WORK):
        return
    # A second Ctrl-C must not leave half a cleanup behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _, out, _ = podman("ps", "-aq", "--filter", "label=" + LABEL, timeout=60)
    ids = out.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, timeout=120)
    _, out, _ = podman("volume", "ls", "-q", "--filter", "label=" + LABEL, timeout=60)
    if out.split():
        podman("volume", "rm", "-f", *out.split(), timeout=60)
    for image in (IMAGE_QUIT, IMAGE_CONFIG, IMAGE_BASE):
        podman("rmi", "-f", image, timeout=60)
    # The storage is ours alone: reset it so that no overlay mount is left, then delete it.
    podman("system", "reset", "-f", timeout=120)
    subprocess.run(["umount", "-R", os.path.join(WORK, "storage", "overlay")],
                   capture_output=True)
    shutil.rmtree(WORK, ignore_errors=True)
    for path in HOST_DIRS:
        if not HOST_DIRS_BEFORE[path]:
            shutil.rmtree(path, ignore_errors=True)


def on_signal(signum, _frame):
    print("e2e: interrupted by signal %d; removing what this run made" % signum, flush=True)
    raise SystemExit(128 + signum)


def setup(binary):
    """Makes the scratch directory and podman's config, arranges the cleanup on every exit,
    builds the images."""
    global WORK
    WORK = tempfile.mkdtemp(prefix="fleet-init-e2e.", dir="/var/tmp")
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    write_podman_config()
    print("e2e: fleet-init %s; podman %s, runtime runc, scratch %s" % (
        binary, run(["podman", "--version"])[1].split()[-1], WORK), flush=True)
    build_images(binary)


def work_path(rel):
    """A path in the scratch directory (bind-mounted files, output of exec'd processes)."""
    return os.path.join(WORK, rel)


class Pty:
    """A podman run -it driven through a pseudo-terminal, as a person at a terminal."""

    def __init__(self, args, timeout_s):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ.update(podman_env())
            os.chdir(WORK)
            os.environ["TERM"] = "dumb"
            os.execvp("timeout", ["timeout", "-s", "KILL", str(timeout_s), *args])
        self.text = ""
        self.status = None

    def read_until(self, pattern, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if re.search(pattern, self.text):
                return True
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.text += data.decode(errors="replace")
        return bool(re.search(pattern, self.text))

    def send(self, data):
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def wait(self, timeout_s):
        """The exit code of podman run, or None when it had to be killed."""
        if self.status is not None:
            return self.status
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            self.read_until(r"(?!)", 0.1)
        return None

    def close(self):
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        os.close(self.fd)
