//! The memory watchdog on real processes, fleet-init as PID 1: anonymous memory and shmem
//! count, file-backed pages do not, the whole process tree counts, and the drain is a
//! watchdog exit (never a crash). Plus the kernel OOM killer told apart from a crash.

mod common;

use common::*;
use serde_json::{json, Value};
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
    assert_eq!(exited["pid"], triggered["pid"]);
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
    let script = format!(
        "import mmap, time\n\
         f = open('{}', 'rb')\n\
         m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
         total = sum(m[i] for i in range(0, len(m), 4096))\n\
         rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n\
         print('ready vmrss_kb=' + rss, flush=True)\n\
         time.sleep(120)\n",
        data.display()
    );
    let file = config(&dir, &["python3", "-c", &script], 100);
    let mut fleet = pid1(&["--config", &file]).spawn();
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
    // A negative needs a window: ten sampling intervals.
    std::thread::sleep(Duration::from_millis(1000));
    let fleet = stop(fleet);
    assert!(fleet.named("watchdog_triggered").is_empty());
    assert_eq!(fleet.named("worker_started").len(), 1);
}

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

#[test]
fn no_limit_means_no_sampling_wake_ups() {
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "idle", "command": ["sleep", "30"]}]});
    let file = dir.write("config.json", &config.to_string());
    let mut fleet = pid1(&["--config", file.to_str().unwrap()]).spawn();
    fleet.wait_event("worker_started");
    let switches = || wake_ups(fleet.pid);
    std::thread::sleep(Duration::from_millis(200));
    let before = switches();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(switches(), before);
    stop(fleet);
}

/// The memory cgroup (v1) this test runs in, if the controller is mounted and writable.
fn memory_cgroup_dir() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    let dir = std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
    dir.join("memory.oom_control").exists().then_some(dir)
}

#[test]
fn an_oom_kill_is_told_apart_from_a_crash() {
    let Some(parent) = memory_cgroup_dir() else {
        eprintln!("no writable cgroup v1 memory controller here: OOM case not exercised");
        return;
    };
    let cgroup = parent.join(format!("fleet-oom-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    std::fs::write(
        cgroup.join("memory.limit_in_bytes"),
        (128 * MIB).to_string(),
    )
    .unwrap();
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .unwrap();
    let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    let dir = TempDir::new();
    let config = json!({"workers": [{
        "name": "hog",
        "command": ["python3", "-c", "x = b'a' * (400 << 20)"],
        "restart": "never",
    }]});
    let file = dir.write("config.json", &config.to_string());
    let mut fleet = pid1(&["--config", file.to_str().unwrap()])
        .pre_exec(move || {
            // SAFETY: write(2) of a constant into a descriptor opened before fork; "0" moves
            // the writer (this child, then unshare and fleet-init) into the cgroup.
            unsafe { libc::write(procs_fd, b"0".as_ptr().cast(), 1) };
            Ok(())
        })
        .spawn();
    let exited = fleet.wait_event("worker_exited");
    let code = fleet.wait_exit(BOUND);
    drop(procs);
    let _ = std::fs::remove_dir(&cgroup);
    assert_eq!(exited["signal"], "SIGKILL", "{exited}");
    assert_eq!(exited["oom_killed"], true, "{exited}");
    assert_eq!(exited["likely_cause"], "crash");
    assert_eq!(code, 1);
}
