//! Shutdown in config mode (issue 3): cooperative workers stop at once, stubborn ones and
//! setsid'd escapees are SIGKILLed when the grace ends, a grandchild still running its TERM
//! handler is waited for (tini #180), and 200 randomly timed SIGTERMs leave nothing behind.
//! Every wait has a bound; workers announce readiness on stdout or in files.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn mode(as_pid1: bool) -> &'static str {
    if as_pid1 {
        "as PID 1"
    } else {
        "as subreaper"
    }
}

/// Checks, without panicking (the stress test reports the run), that every `worker_started`
/// has exactly one later `worker_exited` for the same worker and pid, and every
/// `worker_exited` its `worker_started`.
fn pairing_errors(events: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let same = |a: &Value, b: &Value| a["pid"] == b["pid"] && a["worker"] == b["worker"];
    for (index, started) in events.iter().enumerate() {
        if started["event"] != "worker_started" {
            continue;
        }
        let exits = |slice: &[Value]| {
            slice
                .iter()
                .filter(|e| e["event"] == "worker_exited" && same(e, started))
                .count()
        };
        let (before, after) = (exits(&events[..index]), exits(&events[index..]));
        if (before, after) != (0, 1) {
            errors.push(format!(
                "{started}: {before} worker_exited before, {after} after"
            ));
        }
    }
    for exited in events.iter().filter(|e| e["event"] == "worker_exited") {
        let has_start = events
            .iter()
            .any(|e| e["event"] == "worker_started" && same(e, exited));
        if !has_start {
            errors.push(format!("{exited}: no worker_started"));
        }
    }
    errors
}

fn assert_paired(fleet: &Fleet) {
    let errors = pairing_errors(&fleet.events);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The host pid of the process whose pid is `ns_pid` in the PID namespace of `init_pid`
/// (a host pid), from the `NSpid:` lines of the host's /proc.
fn host_pid_in_namespace_of(init_pid: i32, ns_pid: i32) -> Option<i32> {
    let namespace = std::fs::read_link(format!("/proc/{init_pid}/ns/pid")).ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(nspid) = status_field(pid, "NSpid") else {
            continue;
        };
        let ids: Vec<i32> = nspid
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if ids.len() >= 2
            && ids.last() == Some(&ns_pid)
            && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == Some(namespace.clone())
        {
            return ids.first().copied();
        }
    }
    None
}

fn pid_from_file(path: &std::path::Path) -> i32 {
    read_to_string(path)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {}", path.display()))
}

#[test]
fn five_cooperative_workers_stop_long_before_the_grace() {
    let dir = TempDir::new();
    // The child says ready itself, once it runs with SIGTERM's default action: a SIGTERM that
    // reached it between fork and exec would go to the shell's trap it still had, and the
    // sleep would wait out the grace.
    let script = "trap 'echo bye-$FLEET_INIT_WORKER; exit 0' TERM; \
                  sh -c 'echo ready-$FLEET_INIT_WORKER; exec sleep 1000' & wait";
    let names = ["w1", "w2", "w3", "w4", "w5"];
    let workers: Vec<Value> = names
        .iter()
        .map(|name| json!({"name": name, "command": sh(script)}))
        .collect();
    let mut fleet = start_config(&dir, &json!({"grace_ms": 8000, "workers": workers}), true);
    for name in names {
        fleet.wait_output(&format!("ready-{name}"), BOUND);
    }
    let signalled = Instant::now();
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let elapsed = signalled.elapsed();
    for name in names {
        assert!(fleet.output.contains(&format!("bye-{name}")), "{name}");
        let exited = fleet.wait_event_where("worker_exited", |e| e["worker"] == name, BOUND);
        assert_eq!(exited["code"], 0, "{exited}");
        assert_eq!(exited["likely_cause"], "shutdown", "{exited}");
        assert_eq!(exited["crash_count"], 0, "{exited}");
    }
    assert_eq!(fleet.named("worker_started").len(), 5);
    assert_paired(&fleet);
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["reason"], "SIGTERM");
    assert_eq!(complete["exit_code"], 0);
    assert_eq!(complete["killed"], 0, "{:#?}", fleet.events);
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!(duration < 2000, "duration {duration} ms with grace 8000");
    assert!(
        elapsed < Duration::from_secs(3),
        "exited {elapsed:?} after SIGTERM"
    );
}

/// `deaf` ignores SIGTERM (its children inherit that); `runaway` starts a setsid'd escapee that
/// ignores it too, writes its pid, and then stops politely itself.
fn stubborn_and_escapee_are_killed_when_the_grace_ends(as_pid1: bool) {
    let dir = TempDir::new();
    let escapee_file = dir.path("escapee.pid");
    let deaf = "trap '' TERM; echo ready-deaf; while :; do sleep 0.05; done";
    let runaway = format!(
        "setsid sh -c 'trap \"\" TERM; echo $$ > {f}.tmp; mv {f}.tmp {f}; exec sleep 1000' &\n\
         while [ ! -s {f} ]; do sleep 0.01; done\n\
         echo ready-runaway\n\
         exec sleep 1000\n",
        f = escapee_file.display()
    );
    let config = json!({
        "grace_ms": 500,
        "workers": [
            {"name": "deaf", "command": sh(deaf)},
            {"name": "runaway", "command": sh(&runaway)},
        ]
    });
    let mut fleet = start_config(&dir, &config, as_pid1);
    fleet.wait_output("ready-deaf", BOUND);
    fleet.wait_output("ready-runaway", BOUND);
    let escapee = pid_from_file(&escapee_file);
    let escapee_host = if as_pid1 {
        host_pid_in_namespace_of(fleet.pid, escapee)
            .unwrap_or_else(|| panic!("escapee {escapee} not found in the namespace"))
    } else {
        escapee
    };
    assert!(is_alive(escapee_host));
    let session = std::fs::read_to_string(format!("/proc/{escapee_host}/stat")).unwrap();
    let fields: Vec<&str> = session
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        escapee_host.to_string(),
        "the escapee leads its own session"
    );

    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0, "{}", mode(as_pid1));
    assert!(
        !is_alive(escapee_host),
        "escapee survived {}",
        mode(as_pid1)
    );
    let complete = &fleet.named("shutdown_complete")[0];
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!(
        (500..3000).contains(&duration),
        "duration {duration} {}",
        mode(as_pid1)
    );
    // The deaf shell and the escapee at least.
    let killed = complete["killed"].as_u64().unwrap();
    assert!(killed >= 2, "killed {killed} {}", mode(as_pid1));
    assert_eq!(complete["exit_code"], 0);
    let deaf_exit = fleet.wait_event_where("worker_exited", |e| e["worker"] == "deaf", BOUND);
    assert_eq!(deaf_exit["signal"], "SIGKILL");
    assert_eq!(deaf_exit["likely_cause"], "shutdown");
    let runaway_exit = fleet.wait_event_where("worker_exited", |e| e["worker"] == "runaway", BOUND);
    assert_eq!(runaway_exit["signal"], "SIGTERM");
    assert_eq!(runaway_exit["likely_cause"], "shutdown");
    assert_paired(&fleet);
    if !as_pid1 {
        for started in fleet.named("worker_started") {
            let pid = started["pid"].as_i64().unwrap() as i32;
            assert!(!is_alive(pid), "{started} outlived fleet-init");
        }
    }
}

#[test]
fn stubborn_worker_and_setsid_escapee_are_killed_when_the_grace_ends_as_pid1() {
    stubborn_and_escapee_are_killed_when_the_grace_ends(true);
}

#[test]
fn stubborn_worker_and_setsid_escapee_are_killed_when_the_grace_ends_as_subreaper() {
    stubborn_and_escapee_are_killed_when_the_grace_ends(false);
}

/// A grandchild whose TERM handler takes a second, then writes `done` to its file.
const SLOW_HANDLER: &str = r#"
trap 'sleep 1; echo done > "$1"; exit 0' TERM
touch "$1.ready"
while :; do sleep 0.05; done
"#;

/// tini #180: the worker's main process dies at once on SIGTERM, but its grandchildren (one
/// in its group, one setsid'd) are still running their handlers: fleet-init waits for them.
fn grandchildren_finish_their_term_handlers(as_pid1: bool) {
    let dir = TempDir::new();
    let handler = dir.write("handler.sh", SLOW_HANDLER);
    let (near, far) = (dir.path("near.done"), dir.path("far.done"));
    let main = format!(
        "sh {h} {near} &\n\
         setsid sh {h} {far} &\n\
         while [ ! -e {near}.ready ] || [ ! -e {far}.ready ]; do sleep 0.01; done\n\
         echo ready\n\
         wait\n",
        h = handler.display(),
        near = near.display(),
        far = far.display(),
    );
    let config = json!({
        "grace_ms": 5000,
        "workers": [{"name": "parent", "command": sh(&main)}]
    });
    let mut fleet = start_config(&dir, &config, as_pid1);
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0, "{}", mode(as_pid1));
    // Read right after fleet-init exited: the handlers must have finished before that.
    assert_eq!(read_to_string(&near), "done\n", "{}", mode(as_pid1));
    assert_eq!(read_to_string(&far), "done\n", "{}", mode(as_pid1));
    let complete = &fleet.named("shutdown_complete")[0];
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!(
        (1000..4000).contains(&duration),
        "duration {duration} {}",
        mode(as_pid1)
    );
    assert_eq!(complete["killed"], 0, "nothing needed SIGKILL");
    assert_eq!(complete["exit_code"], 0);
    let exited = fleet.wait_event("worker_exited");
    assert_eq!(exited["signal"], "SIGTERM", "the main process went at once");
    assert!(
        exited["uptime_ms"].as_u64().is_some(),
        "uptime_ms in {exited}"
    );
    assert_paired(&fleet);
}

#[test]
fn tini_180_grandchildren_finish_their_term_handlers_as_pid1() {
    grandchildren_finish_their_term_handlers(true);
}

#[test]
fn tini_180_grandchildren_finish_their_term_handlers_as_subreaper() {
    grandchildren_finish_their_term_handlers(false);
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants): jitter without a crate.
struct Lcg(u64);

impl Lcg {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn stress_200_random_sigterms_leave_nothing_behind() {
    const RUNS: usize = 200;
    const WORKERS: usize = 10;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let dir = TempDir::new();
    let workers: Vec<Value> = (0..WORKERS)
        .map(|n| {
            let command = if n % 2 == 0 {
                json!(["sleep", "1000"])
            } else {
                // A shell with a child in its group.
                sh("sleep 1000 & wait")
            };
            json!({"name": format!("w{n}"), "command": command})
        })
        .collect();
    let path = dir.write(
        "config.json",
        &json!({"grace_ms": 5000, "workers": workers}).to_string(),
    );
    let path = path.to_str().unwrap();
    let began = Instant::now();
    let mut started_total = 0;
    let mut before_all_started = 0;
    for run in 0..RUNS {
        let as_pid1 = run % 2 == 0;
        // 0-50 ms, skewed towards 0 (cubed) so that some SIGTERMs land before the first
        // worker is started, while others arrive with every worker running.
        let unit = random.next_below(1_000_000) as f64 / 1_000_000.0;
        let jitter_us = (50_000.0 * unit * unit * unit) as u64;
        assert!(jitter_us < 50_000);
        let context = format!(
            "run {run} {} jitter {jitter_us} us seed {seed}",
            mode(as_pid1)
        );
        let mut fleet = start_config_file(path, as_pid1);
        // Handlers are installed before init_started; a SIGTERM before that would be the
        // kernel's business (PID 1 ignores signals it has no handler for), not fleet-init's.
        fleet.wait_event("init_started");
        std::thread::sleep(Duration::from_micros(jitter_us));
        fleet.signal(libc::SIGTERM);
        let code = fleet.wait_exit(BOUND);
        assert_eq!(code, 0, "{context}");
        let errors = pairing_errors(&fleet.events);
        assert!(errors.is_empty(), "{context}:\n{}", errors.join("\n"));
        let started = fleet.named("worker_started");
        assert!(started.len() <= WORKERS, "{context}: a worker restarted");
        started_total += started.len();
        if started.len() < WORKERS {
            // SIGTERM came first: those workers never start, and the others are stopped.
            before_all_started += 1;
        }
        for exited in fleet.named("worker_exited") {
            assert_eq!(exited["likely_cause"], "shutdown", "{context}: {exited}");
        }
        let complete = fleet.named("shutdown_complete");
        assert_eq!(complete.len(), 1, "{context}");
        assert_eq!(complete[0]["exit_code"], 0, "{context}");
        assert_eq!(complete[0]["killed"], 0, "{context}: SIGTERM was enough");
        if !as_pid1 {
            for started in &started {
                let pid = started["pid"].as_i64().unwrap() as i32;
                assert!(!is_alive(pid), "{context}: {started} outlived fleet-init");
            }
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "{context}: too slow"
        );
    }
    eprintln!(
        "{RUNS} runs in {:?}: {started_total} workers started, {before_all_started} runs \
         stopped before all {WORKERS} had started (seed {seed})",
        began.elapsed()
    );
}

#[test]
fn stop_signal_is_what_workers_get_and_sigint_shuts_down_too() {
    // `polite` stops only on SIGUSR1 (its stop_signal) and ignores SIGTERM.
    let dir = TempDir::new();
    let polite = "trap '' TERM; trap 'echo usr1-$FLEET_INIT_WORKER; exit 0' USR1; \
                  echo ready-$FLEET_INIT_WORKER; while :; do sleep 0.05; done";
    let config = json!({"grace_ms": 8000, "workers": [
        {"name": "polite", "command": sh(polite), "stop_signal": "SIGUSR1"},
        {"name": "plain", "command": sh("echo ready-plain; exec sleep 1000")},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("ready-polite", BOUND);
    fleet.wait_output("ready-plain", BOUND);
    fleet.signal(libc::SIGINT);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert!(fleet.output.contains(&"usr1-polite".to_string()));
    let polite_exit = fleet.wait_event_where("worker_exited", |e| e["worker"] == "polite", BOUND);
    assert_eq!(polite_exit["code"], 0);
    assert_eq!(polite_exit["likely_cause"], "shutdown");
    let plain_exit = fleet.wait_event_where("worker_exited", |e| e["worker"] == "plain", BOUND);
    assert_eq!(plain_exit["signal"], "SIGTERM");
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["reason"], "SIGINT");
    assert_eq!(complete["killed"], 0);
    assert!(
        complete["duration_ms"].as_u64().unwrap() < 2000,
        "{complete}"
    );
    assert_paired(&fleet);
}

#[test]
fn a_second_sigterm_skips_the_rest_of_the_grace_and_the_env_overrides_the_file() {
    let dir = TempDir::new();
    let deaf = "trap '' TERM; echo ready; while :; do sleep 0.05; done";
    let path = dir.write(
        "config.json",
        &json!({"grace_ms": 60000, "workers": [{"name": "deaf", "command": sh(deaf)}]}).to_string(),
    );
    let path = path.to_str().unwrap();

    // FLEET_INIT_GRACE_MS (like --grace-ms) wins over the file's grace_ms.
    let mut fleet = pid1(&["--config", path])
        .env("FLEET_INIT_GRACE_MS", "300")
        .spawn();
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let complete = &fleet.named("shutdown_complete")[0];
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!((300..3000).contains(&duration), "duration {duration}");
    assert!(complete["killed"].as_u64().unwrap() >= 1);

    // The file's 60 s grace, cut short by a second SIGTERM.
    let mut fleet = pid1(&["--config", path]).spawn();
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGTERM);
    fleet.wait_event("shutdown_started");
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let complete = &fleet.named("shutdown_complete")[0];
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!(duration < 5000, "duration {duration} of a 60 s grace");
    assert!(complete["killed"].as_u64().unwrap() >= 1);
    let exited = fleet.wait_event("worker_exited");
    assert_eq!(exited["signal"], "SIGKILL");
    assert_paired(&fleet);
}

#[test]
fn a_process_entered_from_outside_is_signalled_and_waited_for() {
    // What `docker exec` does: a process joins the namespace with a parent outside it, so it
    // is nobody's child inside. The shutdown sends it SIGTERM and waits for its handler.
    let dir = TempDir::new();
    let done = dir.path("done");
    let ready = dir.path("ready");
    let mut fleet = pid1(&["--grace-ms", "5000", "--", "sleep", "1000"]).spawn();
    fleet.wait_event("worker_started");
    let handler = format!(
        "trap 'sleep 1; echo finished > {done}; exit 0' TERM; touch {ready}; while :; do sleep 0.05; done",
        done = done.display(),
        ready = ready.display()
    );
    let mut entered = std::process::Command::new("nsenter")
        .args([
            "-t",
            &fleet.pid.to_string(),
            "-p",
            "-m",
            "sh",
            "-c",
            &handler,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(BOUND, || ready.exists()));
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 143);
    assert_eq!(
        read_to_string(&done).trim(),
        "finished",
        "fleet-init exited before the entered process's TERM handler finished"
    );
    let complete = &fleet.named("shutdown_complete")[0];
    assert!(
        complete["duration_ms"].as_u64().unwrap() >= 1000,
        "{complete}"
    );
    entered.wait().unwrap();
}

/// The state letter of a process (host view).
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

#[test]
fn a_stopped_worker_is_continued_and_runs_its_term_handler() {
    let dir = TempDir::new();
    let handled = dir.path("handled");
    let script = format!(
        "trap 'echo handled > {}; exit 0' TERM; kill -STOP $$; sleep 1000 & wait",
        handled.display()
    );
    let config = json!({"grace_ms": 5000, "workers": [{"name": "paused", "command": sh(&script)}]});
    for as_pid1 in [true, false] {
        let _ = std::fs::remove_file(&handled);
        let mut fleet = start_config(&dir, &config, as_pid1);
        let started = fleet.wait_event("worker_started");
        let pid = started["pid"].as_i64().unwrap() as i32;
        let host_pid = if as_pid1 {
            host_pid_in_namespace_of(fleet.pid, pid).unwrap()
        } else {
            pid
        };
        assert!(
            eventually(BOUND, || state_of(host_pid) == Some('T')),
            "{}: the premise: stopped",
            mode(as_pid1)
        );
        fleet.signal(libc::SIGTERM);
        assert_eq!(fleet.wait_exit(BOUND), 0, "{}", mode(as_pid1));
        assert_eq!(
            read_to_string(&handled).trim(),
            "handled",
            "{}",
            mode(as_pid1)
        );
        let complete = &fleet.named("shutdown_complete")[0];
        assert!(
            complete["duration_ms"].as_u64().unwrap() < 5000,
            "{}: {complete}",
            mode(as_pid1)
        );
        assert_eq!(complete["killed"], 0);
    }
}

#[test]
fn a_process_of_the_worker_s_group_gets_one_stop_signal_per_stop() {
    // The main process exits 0 and leaves a child in its group. Two SIGTERMs sent within one
    // loop turn would merge in the kernel before the child could count them, so fleet-init's
    // own system calls are counted instead (strace): the child's group and the child itself
    // together get one SIGTERM.
    let dir = TempDir::new();
    let child_file = dir.path("child.pid");
    let script = format!(
        "sh -c 'echo $$ > {f}; trap \"\" TERM; sleep 0.5' & sleep 0.2; exit 0",
        f = child_file.display()
    );
    let config = json!({"workers": [{"name": "parent", "command": sh(&script),
        "restart": "never", "stop_grace_ms": 5000}]});
    let file = dir.write("parent.json", &config.to_string());
    let trace = dir.path("trace");
    let trace_arg = trace.display().to_string();
    let mut fleet = wrapped(
        &[
            "strace",
            "-qq",
            "-o",
            &trace_arg,
            "-e",
            "trace=kill,pidfd_send_signal",
            "-e",
            "signal=none",
        ],
        &["--config", file.to_str().unwrap()],
    )
    .spawn();
    let main = fleet.wait_event("worker_started")["pid"].as_i64().unwrap();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let child: i64 = read_to_string(&child_file).trim().parse().unwrap();
    let calls = read_to_string(&trace);
    let to_child = calls
        .lines()
        .filter(|l| {
            l.contains("SIGTERM")
                && (l.starts_with(&format!("kill({child}, "))
                    || l.starts_with(&format!("kill(-{main}, ")))
        })
        .count();
    assert_eq!(to_child, 1, "{calls}");
}

#[test]
fn a_leftover_killed_when_its_drain_ends_counts_in_killed() {
    // The worker's main process exits and leaves a setsid'd escapee that ignores SIGTERM; a
    // shutdown comes while it drains, and the drain's own grace ends first: the escapee's
    // SIGKILL is in `shutdown_complete.killed`.
    let dir = TempDir::new();
    let ready = dir.path("ready");
    let script = format!(
        "setsid sh -c 'trap \"\" TERM; touch {r}; exec sleep 1000' & \
         i=0; while [ ! -e {r} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit 0",
        r = ready.display()
    );
    let config = json!({"grace_ms": 8000, "workers": [{"name": "leaver", "command": sh(&script),
        "restart": "always", "stop_grace_ms": 500}]});
    let mut fleet = start_config(&dir, &config, false);
    fleet.wait_event("worker_exited");
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["killed"], 1, "{complete}");
    assert!(
        complete["duration_ms"].as_u64().unwrap() < 8000,
        "{complete}"
    );
}
