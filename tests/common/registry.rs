//! Helpers for the tests of the handoff registry and `--reap`: the files in a state dir, the
//! processes a worker name or a generation marks, planted handoff files, a small tmpfs.
#![allow(dead_code)]

use super::{is_alive, read_to_string, subreaper, Fleet, Start, TempDir, BOUND};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn handoff_files(state: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        name.starts_with("handoff-") && name.ends_with(".json")
    });
    files.sort();
    files
}

pub fn recorded_pids(state: &Path) -> Vec<i64> {
    handoff_files(state)
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(&read_to_string(f)).ok())
        .flat_map(|h| h["entries"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["pid"].as_i64())
        .collect()
}

/// Live processes whose environment names them a worker of `worker`.
pub fn processes_of(worker: &str) -> Vec<i32> {
    processes_with("FLEET_INIT_WORKER", worker)
}

pub fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

pub fn reap(state: &Path) -> (i32, Fleet) {
    let mut fleet = subreaper(&[
        "--reap",
        "--state-dir",
        state.to_str().unwrap(),
        "--grace-ms",
        "2000",
    ])
    .spawn();
    let code = fleet.wait_exit(BOUND);
    (code, fleet)
}

pub fn write_handoff(state: &Path, name: &str, handoff: &Value) -> PathBuf {
    std::fs::create_dir_all(state).unwrap();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = state.join(name);
    std::fs::write(&path, handoff.to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub fn boot_id() -> String {
    read_to_string(Path::new("/proc/sys/kernel/random/boot_id"))
        .trim()
        .to_string()
}

/// The inode of this PID namespace, as fleet-init records it.
pub fn pid_ns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").unwrap().ino()
}

/// A generation id no live process carries.
pub const DEAD_GENERATION: &str = "deadbeefdeadbeefdeadbeefdeadbeef";

/// A format-2 handoff of a dead owner (pid 999999) that started at boot.
pub fn handoff_of(entries: Value, boot: &str) -> Value {
    json!({"version": 2, "generation": DEAD_GENERATION, "boot_id": boot, "pid_ns": pid_ns(),
           "owner": {"pid": 999_999, "start_time": 1}, "entries": entries})
}

pub fn sleeper(env: &[(&str, &str)]) -> Child {
    let mut command = Command::new("sleep");
    command.arg("1000").stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// A worker name no other test (running concurrently in this binary) uses.
pub fn unique(name: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{name}-{}-{n}", std::process::id())
}

/// A small tmpfs mounted for the test, unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Writes a file until the file system is full.
    pub fn fill(&self) {
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    }

    pub fn mount(path: PathBuf, options: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs (needs root)");
        Tmpfs(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Live processes whose environment holds `key=value`.
pub fn processes_with(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// The generation id in the one handoff file of `state`.
pub fn generation_of(state: &Path) -> String {
    let files = handoff_files(state);
    assert_eq!(files.len(), 1, "{files:?}");
    let handoff: Value = serde_json::from_str(&read_to_string(&files[0])).unwrap();
    handoff["generation"].as_str().unwrap().to_string()
}

/// fleet-init as a subreaper on `config` (written to a file in `dir`) with `state` as its state
/// dir; the caller adds what else it needs (stdin, environment) and spawns it.
pub fn config_start(dir: &TempDir, state: &Path, config: &Value) -> Start {
    let file = dir.write(&format!("{}.json", unique("config")), &config.to_string());
    subreaper(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ])
}
