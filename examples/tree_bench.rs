//! Benchmark helper (not a test): builds a process tree of N processes and measures
//! `sample`: one watchdog sample (a /proc scan plus the tree's memory) over it, or
//! `reap`: `fleet-init --reap` of it as a recorded orphan tree, end to end; or, without a tree,
//! `registry`: the bytes and writes fleet-init spends on its registry while starting N workers.
//! Prints one JSON line; `make bench` collects it.
//!
//! cargo run --release --example tree_bench -- sample 1000 50
//! cargo run --release --example tree_bench -- reap 1000 /path/to/fleet-init
//! cargo run --release --example tree_bench -- registry 1000 /path/to/fleet-init

use fleet_init::procscan;
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("sample");
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    if mode == "registry" {
        let bin = args
            .get(2)
            .cloned()
            .unwrap_or_else(|| "target/release/fleet-init".into());
        registry(size, &bin);
        return;
    }
    let root = spawn_tree(size);
    wait_for_tree(root, size);
    match mode {
        "sample" => {
            let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50);
            sample(root, size, rounds);
            kill_tree(root);
        }
        "reap" => {
            let bin = args
                .get(2)
                .cloned()
                .unwrap_or_else(|| "target/release/fleet-init".into());
            reap(root, size, &bin);
        }
        other => panic!("unknown mode {other}"),
    }
    // Collect what is ours to collect.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
}

/// A root that forks `size - 1` children (in ten subtrees), every one paused.
fn spawn_tree(size: usize) -> i32 {
    match unsafe { libc::fork() } {
        0 => {
            let per_subtree = (size - 1) / 10;
            let mut made = 0;
            for subtree in 0..10 {
                let count = if subtree == 9 {
                    size - 1 - made
                } else {
                    per_subtree
                };
                made += count;
                if unsafe { libc::fork() } == 0 {
                    for _ in 1..count {
                        if unsafe { libc::fork() } == 0 {
                            loop {
                                unsafe { libc::pause() };
                            }
                        }
                    }
                    loop {
                        unsafe { libc::pause() };
                    }
                }
            }
            loop {
                unsafe { libc::pause() };
            }
        }
        pid if pid > 0 => pid,
        _ => panic!("fork failed"),
    }
}

fn wait_for_tree(root: i32, size: usize) {
    let started = Instant::now();
    loop {
        let table = procscan::scan(Path::new("/proc"));
        if procscan::descendants(&table, root).len() + 1 >= size {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "tree never reached {size}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn sample(root: i32, size: usize, rounds: usize) {
    let mut micros: Vec<u128> = Vec::with_capacity(rounds);
    let mut processes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let table = procscan::scan(Path::new("/proc"));
        let memory = procscan::tree_memory(Path::new("/proc"), &table, root);
        micros.push(start.elapsed().as_micros());
        processes = memory.processes;
    }
    micros.sort_unstable();
    println!(
        "{{\"bench\":\"watchdog_sample\",\"tree\":{size},\"processes_read\":{processes},\"median_us\":{},\"min_us\":{},\"max_us\":{},\"samples_us\":{:?}}}",
        micros[micros.len() / 2],
        micros[0],
        micros[micros.len() - 1],
        micros
    );
}

fn kill_tree(root: i32) {
    let table = procscan::scan(Path::new("/proc"));
    for pid in procscan::descendants(&table, root) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    unsafe { libc::kill(root, libc::SIGKILL) };
}

fn reap(root: i32, size: usize, bin: &str) {
    let state = std::env::temp_dir().join(format!("fleet-bench-reap-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let stat = procscan::read_stat(Path::new("/proc"), root)
        .found()
        .unwrap();
    let cmdline = procscan::read_cmdline(Path::new("/proc"), root)
        .found()
        .unwrap();
    let generation = "be".repeat(16);
    let handoff = serde_json::json!({
        "version": 2,
        "generation": generation,
        "boot_id": procscan::read_boot_id(Path::new("/proc")).unwrap(),
        "pid_ns": procscan::read_pid_ns(Path::new("/proc")).unwrap(),
        "owner": {"pid": 999_999, "start_time": 1},
        "entries": [{"worker": "bench", "run": 1, "pid": root, "start_time": stat.start_time, "cmdline": cmdline}],
    });
    let file = state.join(format!("handoff-{generation}.json"));
    std::fs::write(&file, handoff.to_string()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let start = Instant::now();
    let output = std::process::Command::new(bin)
        .args(["--reap", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let table = procscan::scan(Path::new("/proc"));
    let survivors = procscan::descendants(&table, root)
        .into_iter()
        .chain(std::iter::once(root))
        .filter(|pid| procscan::find(&table, *pid).is_some_and(|p| !p.is_zombie()))
        .count();
    // The count reap_complete gives: a pipe read slower than 1,000 lines arrive drops some
    // `reaped` lines (PID 1 never blocks on its events), never the summary.
    let reaped = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "reap_complete")
        .and_then(|e| e["reaped"].as_u64())
        .unwrap_or(0);
    println!(
        "{{\"bench\":\"reap_tree\",\"tree\":{size},\"reaped\":{reaped},\"survivors\":{survivors},\"exit_code\":{},\"ms\":{:.3}}}",
        output.status.code().unwrap_or(-1),
        elapsed.as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// Starts `size` sleeping workers under `bin` and reads, from fleet-init's /proc/PID/io once
/// all of them are recorded, what it wrote: everything (`wchar`, `syscw`) less its events
/// (the bytes and lines of its stdout) is the registry's.
fn registry(size: usize, bin: &str) {
    let dir = std::env::temp_dir().join(format!("fleet-bench-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let workers: Vec<serde_json::Value> = (0..size)
        .map(|i| serde_json::json!({"name": format!("w{i}"), "command": ["sleep", "1000"]}))
        .collect();
    let config = dir.join("fleet.json");
    std::fs::write(&config, serde_json::json!({"workers": workers}).to_string()).unwrap();
    let events = dir.join("events.jsonl");
    let state = dir.join("state");
    let started = Instant::now();
    let mut child = std::process::Command::new(bin)
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(&config)
        .stdout(std::fs::File::create(&events).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let recorded = || -> usize {
        let Ok(names) = std::fs::read_dir(&state) else {
            return 0;
        };
        names
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("handoff-"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|h| h["entries"].as_array().map_or(0, Vec::len))
            .sum()
    };
    while recorded() < size {
        assert!(
            started.elapsed().as_secs() < 60,
            "never recorded {size} workers"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let start_ms = started.elapsed().as_secs_f64() * 1000.0;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let field = |key: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap()
    };
    let event_bytes = std::fs::metadata(&events).unwrap().len();
    let event_lines = std::fs::read(&events)
        .unwrap()
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
    let registry_bytes = field("wchar:") - event_bytes;
    let registry_writes = field("syscw:") - event_lines;
    let file_bytes = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    println!(
        "{{\"bench\":\"registry_writes\",\"workers\":{size},\"registry_bytes\":{registry_bytes},\"registry_writes\":{registry_writes},\"file_bytes\":{file_bytes},\"bytes_per_worker\":{:.1},\"start_all_ms\":{start_ms:.1}}}",
        registry_bytes as f64 / size as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
