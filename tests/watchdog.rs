//! The memory watchdog on real processes, fleet-init as PID 1: anonymous memory and shmem
//! count, file-backed pages do not, the whole process tree counts, and the drain is a
//! watchdog exit (never a crash). Plus the kernel OOM killer told apart from a crash.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// A config with one worker `hog` limited to `limit_mb`, sampled every 100 ms.
fn config(dir: &TempDir, command: &[&str], limit_mb: u64) -> String {
    let config = json!({
        "grace_ms": 2000,
        "workers": [{
            "name": "hog",
            "command": command,
            "restart": "always",
            "max_rss_mb": limit_mb,
            "watchdog_interval_ms": 100,
            "backoff_initial_ms": 50,
        }]
    });
    dir.write("config.json", &config.to_string())
        .display()
        .to_string()
}

/// Python that touches `mib` MiB of heap, says ready, and waits.
fn heap_hog(mib: u64) -> String {
    format!("import time; x = b'a' * ({mib} << 20); print('ready', flush=True); time.sleep(120)")
}

fn assert_watchdog_cycle(fleet: &mut Fleet, min_bytes: u64) -> Value {
    let triggered = fleet.wait_event("watchdog_triggered");
    assert_eq!(triggered["worker"], "hog");
    assert_eq!(triggered["source"], "rss_anon_shmem");
    assert_eq!(triggered["limit_bytes"], 100 * MIB);
    let rss = triggered["rss_bytes"].as_u64().unwrap();
    assert!(rss >= min_bytes, "rss {rss} < {min_bytes}");
    assert!(!triggered["top"].as_array().unwrap().is_empty());
    let exited = fleet.wait_event("worker_exited");
    assert_eq!(exited["likely_cause"], "watchdog");
    assert_eq!(exited["crash_count"], 0, "a drain is never a crash");
    assert_eq!(exited["pid"], triggered["pid"], "{:#?}", fleet.events);
    let restarted = fleet.wait_nth("worker_started", 2, BOUND);
    assert_eq!(restarted["run"], 2);
    triggered
}

fn stop(mut fleet: Fleet) -> Fleet {
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    fleet
}

#[test]
fn touched_heap_over_the_limit_triggers_and_the_worker_restarts_with_no_crash() {
    let dir = TempDir::new();
    let file = config(&dir, &["python3", "-c", &heap_hog(200)], 100);
    let mut fleet = pid1(&["--config", &file]).spawn();
    assert_watchdog_cycle(&mut fleet, 100 * MIB + 1);
    let fleet = stop(fleet);
    assert!(fleet
        .named("worker_exited")
        .iter()
        .all(|e| e["crash_count"] == 0));
}

#[test]
fn a_single_command_over_max_rss_mb_is_stopped_as_a_watchdog_exit() {
    // `--max-rss-mb`: the config key's meaning for a single command (SPEC), sampled at the
    // default interval (5 s). `--restart never` (its default): the child's end is fleet-init's.
    let mut fleet = pid1(&["--max-rss-mb", "100", "--", "python3", "-c", &heap_hog(200)]).spawn();
    let triggered = fleet.wait_event_where(
        "watchdog_triggered",
        |_| true,
        BOUND + Duration::from_secs(5),
    );
    assert_eq!(triggered["worker"], "python3");
    assert_eq!(triggered["limit_bytes"], 100 * MIB);
    assert!(triggered["rss_bytes"].as_u64().unwrap() > 100 * MIB);
    let exited = fleet.wait_event("worker_exited");
    assert_eq!(
        (
            &exited["likely_cause"],
            &exited["crash_count"],
            &exited["signal"]
        ),
        (&json!("watchdog"), &json!(0), &json!("SIGTERM")),
        "{exited}"
    );
    assert_eq!(fleet.wait_exit(BOUND), 128 + libc::SIGTERM);
}

#[test]
fn a_file_read_through_mmap_does_not_trigger() {
    let dir = TempDir::new();
    // On the build's disk, not a tmpfs (whose pages would be shmem).
    let data = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-mmap-300m.bin");
    if std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0) != 300 * MIB {
        let chunk = vec![7u8; MIB as usize];
        let mut bytes = Vec::with_capacity((300 * MIB) as usize);
        for _ in 0..300 {
            bytes.extend_from_slice(&chunk);
        }
        std::fs::write(&data, bytes).unwrap();
    }
    // `mapped` goes to stderr, the stream of fleet-init's debug lines: the samples logged after
    // it measured the whole mapping resident.
    let script = format!(
        "import mmap, sys, time\n\
         f = open('{}', 'rb')\n\
         m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
         total = sum(m[i] for i in range(0, len(m), 4096))\n\
         rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n\
         sys.stderr.write('{MAPPED}\\n'); sys.stderr.flush()\n\
         print('ready vmrss_kb=' + rss, flush=True)\n\
         time.sleep(120)\n",
        data.display()
    );
    let file = config(&dir, &["python3", "-c", &script], 100);
    let mut fleet = pid1(&["--config", &file])
        .env("FLEET_INIT_LOG", "debug")
        .spawn();
    let worker_pid = fleet.wait_event("worker_started")["pid"].clone();
    fleet.wait_output("ready", BOUND);
    let vmrss_kb: u64 = fleet
        .output
        .iter()
        .find_map(|l| l.strip_prefix("ready vmrss_kb="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        vmrss_kb * 1024 > 300 * MIB,
        "the mapping is resident: {vmrss_kb} kB"
    );
    // A negative needs a window: ten sampling ticks (100 ms each), counted as wake-ups of
    // fleet-init, whose only timer now is the watchdog's.
    let before = wake_ups(fleet.pid);
    assert!(eventually(BOUND, || wake_ups(fleet.pid) >= before + 10));
    let mut fleet = stop(fleet);
    assert!(fleet.named("watchdog_triggered").is_empty());
    assert_eq!(fleet.named("worker_started").len(), 1);
    // ...and the watchdog did look, and got a reading without the file's pages, each time.
    let stderr = fleet.stderr();
    let (_, after_mapped) = stderr
        .split_once(MAPPED)
        .unwrap_or_else(|| panic!("no {MAPPED} on stderr: {stderr}"));
    let samples: Vec<&str> = after_mapped
        .lines()
        .filter(|l| l.contains(&format!("watchdog sample of hog (pid {worker_pid})")))
        .collect();
    assert!(
        samples.len() >= 5,
        "{} samples in ten wake-ups: {stderr}",
        samples.len()
    );
    assert!(
        samples.iter().all(|l| l.contains("rss_anon_shmem")),
        "{samples:?}"
    );
}

const MAPPED: &str = "fleet-test-mapped";

#[test]
fn a_child_that_left_the_group_counts_for_its_worker() {
    let dir = TempDir::new();
    let script = format!("setsid python3 -c \"{}\" & wait", heap_hog(200));
    let file = config(&dir, &["sh", "-c", &script], 100);
    let mut fleet = pid1(&["--config", &file]).spawn();
    let triggered = assert_watchdog_cycle(&mut fleet, 100 * MIB + 1);
    let main_pid = triggered["pid"].as_i64().unwrap();
    let top = triggered["top"].as_array().unwrap();
    let largest = top[0]["pid"].as_i64().unwrap();
    assert_ne!(largest, main_pid, "the child's heap is the largest part");
    assert!(triggered["processes"].as_u64().unwrap() >= 2);
    stop(fleet);
}

#[test]
fn shared_memory_written_through_dev_shm_counts() {
    let dir = TempDir::new();
    let name = format!("/dev/shm/fleet-test-{}", std::process::id());
    let script = format!(
        "import mmap, os, time\n\
         fd = os.open('{name}', os.O_CREAT | os.O_RDWR, 0o600)\n\
         os.ftruncate(fd, 200 << 20)\n\
         m = mmap.mmap(fd, 200 << 20)\n\
         os.unlink('{name}')\n\
         for i in range(0, len(m), 4096): m[i] = 1\n\
         print('ready', flush=True)\n\
         time.sleep(120)\n"
    );
    let file = config(&dir, &["python3", "-c", &script], 100);
    let mut fleet = pid1(&["--config", &file]).spawn();
    assert_watchdog_cycle(&mut fleet, 100 * MIB + 1);
    stop(fleet);
    let _ = std::fs::remove_file(&name);
}

/// The reason procfs is not a dependency (README, "Dependency notes"): its
/// `Process::status()` fails on a `Name:` that is not UTF-8, which would give a worker renamed
/// so no reading, and so no action. fleet-init parses status as bytes.
#[test]
fn a_worker_renamed_to_invalid_utf8_is_still_measured() {
    let dir = TempDir::new();
    let script = "import ctypes, time\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        assert libc.prctl(15, b'\\xff\\xfe\\xfd', 0, 0, 0) == 0, ctypes.get_errno()  # PR_SET_NAME\n\
        comm = open('/proc/self/comm', 'rb').read().hex()\n\
        try:\n    open('/proc/self/status', 'rb').read().decode(); utf8 = 'yes'\n\
        except UnicodeDecodeError:\n    utf8 = 'no'\n\
        print('renamed comm=' + comm + ' status_utf8=' + utf8, flush=True)\n\
        x = b'a' * (200 << 20)\n\
        time.sleep(120)\n";
    let file = config(&dir, &["python3", "-c", script], 100);
    let mut fleet = pid1(&["--config", &file]).spawn();
    let started = fleet.wait_event("worker_started");
    fleet.wait_output("renamed", BOUND);
    // The premise: the name is those bytes, and the status file is no longer UTF-8.
    assert!(
        fleet
            .output
            .iter()
            .any(|l| l == "renamed comm=fffefd0a status_utf8=no"),
        "{:?}",
        fleet.output
    );
    let triggered = assert_watchdog_cycle(&mut fleet, 100 * MIB + 1);
    assert_eq!(triggered["pid"], started["pid"]);
    stop(fleet);
}

#[test]
fn no_limit_means_no_sampling_wake_ups() {
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "idle", "command": ["sleep", "30"]}]});
    let file = dir.write("config.json", &config.to_string());
    let mut fleet = pid1(&["--config", file.to_str().unwrap()]).spawn();
    fleet.wait_event("worker_started");
    let switches = || wake_ups(fleet.pid);
    assert!(wait_until_idle(fleet.pid, BOUND), "fleet-init never waited");
    let before = switches();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(switches(), before);
    stop(fleet);
}

/// A memory cgroup of its own with a limit, for the OOM test: a child of this process's cgroup
/// (or of the cgroup2 root) where v2 has the memory controller, else of the v1 memory
/// hierarchy's. Removed on drop, once empty.
struct MemoryCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened before the fork: writing "0" to it in the forked child moves the
    /// child (then unshare and fleet-init, which inherit it) into the cgroup.
    procs: std::fs::File,
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // rmdir(2) fails with EBUSY until the last member has been reaped.
        let removed = eventually(BOUND, || std::fs::remove_dir(&self.dir).is_ok());
        if !removed {
            eprintln!("cgroup {} left behind", self.dir.display());
        }
    }
}

/// One line of /proc/self/mountinfo: (root within the hierarchy, mount point, fs type, super
/// options). See proc(5).
fn mounts() -> Vec<(String, PathBuf, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some((
                left.get(3)?.to_string(),
                PathBuf::from(left.get(4)?),
                right.first()?.to_string(),
                right.get(2)?.to_string(),
            ))
        })
        .collect()
}

/// This process's path in the hierarchy whose /proc/self/cgroup line matches `controllers`
/// ("" is v2's `0::` line), as a directory under the mount point.
fn own_cgroup_dir(controllers: impl Fn(&str) -> bool, root: &str, mount: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers(names).then(|| path.to_string())
    })?;
    let relative = path.strip_prefix(root).unwrap_or(&path);
    Some(mount.join(relative.trim_start_matches('/')))
}

fn has_word(path: &Path, word: &str) -> bool {
    read_to_string(path).split_whitespace().any(|w| w == word)
}

/// Makes `parent/fleet-oom-PID`, writes `limits` into it, and checks that a forked child can
/// move itself in (a delegated or read-only hierarchy refuses).
fn make_cgroup(parent: &Path, limits: &[(&str, u64, bool)]) -> Result<MemoryCgroup, String> {
    let dir = parent.join(format!("fleet-oom-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"));
    let cgroup = match procs {
        Ok(procs) => MemoryCgroup { dir, procs },
        Err(error) => {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("open {}/cgroup.procs: {error}", dir.display()));
        }
    };
    for (file, value, is_required) in limits {
        let written = std::fs::write(cgroup.dir.join(file), value.to_string());
        if let (Err(error), true) = (written, is_required) {
            return Err(format!("{file}: {error}"));
        }
    }
    let mut probe = std::process::Command::new("cat");
    probe.arg("/proc/self/cgroup");
    // SAFETY: the closure only calls write(2).
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut probe, join(&cgroup)) };
    let probe = probe
        .output()
        .map_err(|e| format!("moving a process into {}: {e}", cgroup.dir.display()))?;
    let name = cgroup.dir.file_name().unwrap_or_default().to_string_lossy();
    if !String::from_utf8_lossy(&probe.stdout).contains(name.as_ref()) {
        return Err(format!("a process moved into {name} is not listed there"));
    }
    Ok(cgroup)
}

/// What a forked child runs before exec to move itself into `cgroup`; a refused move fails the
/// spawn.
fn join(cgroup: &MemoryCgroup) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&cgroup.procs);
    move || {
        // SAFETY: write(2) of a constant into a descriptor opened before fork (async-signal-safe);
        // "0" moves the writer.
        match unsafe { libc::write(procs_fd, b"0".as_ptr().cast(), 1) } {
            1 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

/// A v2 memory cgroup limited to `limit_bytes`. Tries this process's own cgroup, then the root of
/// the cgroup2 mount (exempt from the rule that a cgroup with processes cannot enable
/// controllers for its children).
fn v2_memory_cgroup(limit_bytes: u64) -> Result<MemoryCgroup, String> {
    let mounts = mounts();
    let Some((root, mount, _, _)) = mounts.iter().find(|m| m.2 == "cgroup2") else {
        return Err("no cgroup2 mount".into());
    };
    let mut reasons = Vec::new();
    let mut parents: Vec<PathBuf> = own_cgroup_dir(str::is_empty, root, mount)
        .into_iter()
        .chain([mount.clone()])
        .collect();
    parents.dedup(); // in the root cgroup (or a cgroup namespace), both are the mount
    for parent in parents {
        if !has_word(&parent.join("cgroup.controllers"), "memory") {
            reasons.push(format!("{}: no memory controller", parent.display()));
            continue;
        }
        let control = parent.join("cgroup.subtree_control");
        if !has_word(&control, "memory") {
            if let Err(error) = std::fs::write(&control, "+memory") {
                reasons.push(format!("{}: +memory: {error}", control.display()));
                continue;
            }
        }
        let limits = [
            ("memory.max", limit_bytes, true),
            ("memory.swap.max", 0, false),
        ];
        match make_cgroup(&parent, &limits) {
            Ok(cgroup) => return Ok(cgroup),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(reasons.join("; "))
}

/// A v1 memory cgroup limited to `limit_bytes`, a child of this process's.
fn v1_memory_cgroup(limit_bytes: u64) -> Result<MemoryCgroup, String> {
    let mounts = mounts();
    let is_memory = |options: &str| options.split(',').any(|o| o == "memory");
    let Some((root, mount, _, _)) = mounts.iter().find(|m| m.2 == "cgroup" && is_memory(&m.3))
    else {
        return Err("no cgroup v1 memory hierarchy mounted".into());
    };
    let parent = own_cgroup_dir(is_memory, root, mount).ok_or("not in a v1 memory cgroup")?;
    make_cgroup(&parent, &[("memory.limit_in_bytes", limit_bytes, true)])
}

#[test]
fn an_oom_kill_is_told_apart_from_a_crash() {
    let cgroup = match v2_memory_cgroup(128 * MIB) {
        Ok(cgroup) => cgroup,
        Err(v2) => match v1_memory_cgroup(128 * MIB) {
            Ok(cgroup) => cgroup,
            Err(v1) => {
                let reason = format!("no memory cgroup to set a limit in (v2: {v2}; v1: {v1})");
                return skip("an_oom_kill_is_told_apart_from_a_crash", &reason);
            }
        },
    };
    let dir = TempDir::new();
    let config = json!({"workers": [{
        "name": "hog",
        "command": ["python3", "-c", "x = b'a' * (400 << 20)"],
        "restart": "never",
    }]});
    let file = dir.write("config.json", &config.to_string());
    // The harness's child moves itself in; unshare and fleet-init inherit the cgroup.
    let mut fleet = pid1(&["--config", file.to_str().unwrap()])
        .pre_exec(join(&cgroup))
        .spawn();
    let name = cgroup
        .dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let cgroups = read_to_string(Path::new(&format!("/proc/{}/cgroup", fleet.pid)));
    assert!(
        cgroups.contains(&name),
        "fleet-init runs in {name}: {cgroups}"
    );
    let exited = fleet.wait_event("worker_exited");
    let code = fleet.wait_exit(BOUND);
    assert_eq!(exited["signal"], "SIGKILL", "{exited}");
    assert_eq!(exited["oom_killed"], true, "{exited}");
    assert_eq!(exited["likely_cause"], "crash");
    assert_eq!(code, 1);
    drop(cgroup);
}
