//! Config mode (issue 3): `fleet-init --config FILE` with several workers — restart policies,
//! crash limits, forwarded signals, per-worker environment, cwd and user, leftovers of a dead
//! worker, and `--check-config`. Run as PID 1 of its own PID namespace unless a test says
//! otherwise; every wait has a bound, and workers announce readiness on stdout.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// `["sh", file]` for a script written to `dir`.
fn sh_file(dir: &TempDir, name: &str, script: &str) -> Value {
    let path = dir.write(name, script);
    json!(["sh", path.to_str().unwrap()])
}

/// A worker's life as compact lines in event order: `started 1`, `exited code=3 crash 1`,
/// `backoff 10`, `max_crashes_exceeded 3/3`, ...
fn trace(fleet: &Fleet, worker: &str) -> Vec<String> {
    fleet
        .events
        .iter()
        .filter(|e| e["worker"] == worker)
        // Readiness has its own tests (tests/order.rs): a worker without `ready` is ready
        // once exec succeeded, after each `worker_started`.
        .filter(|e| e["event"] != "worker_ready")
        // Worker output lines are the worker's too, but not its life story.
        .filter(|e| e["event"] != "output")
        .map(describe)
        .collect()
}

fn describe(event: &Value) -> String {
    let text = |key: &str| event[key].as_str().unwrap_or("?").to_string();
    match event["event"].as_str().unwrap_or("?") {
        "worker_started" => format!("started {}", event["run"]),
        "worker_exited" => {
            let how = match event.get("code") {
                Some(code) => format!("code={code}"),
                None => format!("signal={}", text("signal")),
            };
            assert!(event["uptime_ms"].is_u64(), "uptime_ms in {event}");
            format!(
                "exited {how} {} {}",
                text("likely_cause"),
                event["crash_count"]
            )
        }
        "backoff" => format!("backoff {}", event["ms"]),
        "max_crashes_exceeded" => format!(
            "max_crashes_exceeded {}/{}",
            event["crash_count"], event["max_crashes"]
        ),
        "spawn_failed" => format!("spawn_failed {}", text("error")),
        "health_warn" => format!("health_warn {}", text("reason")),
        other => other.to_string(),
    }
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every `worker_started` has exactly one later `worker_exited` for the same worker and pid,
/// and every `worker_exited` has its `worker_started`.
fn assert_paired(fleet: &Fleet) {
    let events = &fleet.events;
    for (index, started) in events.iter().enumerate() {
        if started["event"] != "worker_started" {
            continue;
        }
        let same = |e: &&Value| {
            e["event"] == "worker_exited"
                && e["pid"] == started["pid"]
                && e["worker"] == started["worker"]
        };
        let before = events[..index].iter().filter(same).count();
        let after = events[index..].iter().filter(same).count();
        assert_eq!(
            (before, after),
            (0, 1),
            "worker_exited events for {started}"
        );
    }
    for exited in fleet.named("worker_exited") {
        let found = fleet
            .named("worker_started")
            .iter()
            .any(|s| s["pid"] == exited["pid"] && s["worker"] == exited["worker"]);
        assert!(found, "no worker_started for {exited}");
    }
}

/// Milliseconds since the epoch of an event's `ts` (`2026-11-22T02:28:10.123Z`).
fn ts_ms(event: &Value) -> i64 {
    let ts = event["ts"].as_str().expect("ts");
    let number = |range: std::ops::Range<usize>| -> i64 { ts[range].parse().expect("ts digits") };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = number(11..13) * 3600 + number(14..16) * 60 + number(17..19);
    (days * 86_400 + seconds) * 1000 + number(20..23)
}

fn count_output(fleet: &Fleet, line: &str) -> usize {
    fleet.output.iter().filter(|l| *l == line).count()
}

#[test]
fn five_workers_restart_by_their_policies_and_a_failed_one_makes_exit_1() {
    let dir = TempDir::new();
    let counter = dir.path("flaky.count");
    // Exits 0, 0, then 1 from the third run on.
    let flaky = format!(
        "n=$(( $(cat {c} 2>/dev/null || echo 0) + 1 )); echo $n > {c}; \
         if [ $n -le 2 ]; then exit 0; fi; exit 1",
        c = counter.display()
    );
    let config = json!({
        "grace_ms": 2000,
        "workers": [
            {"name": "always-flaky", "command": sh(&flaky), "restart": "always",
             "max_crashes": 1, "backoff_initial_ms": 10, "on_max_crashes": "stop"},
            {"name": "always-crash", "command": sh("exit 3"), "restart": "always",
             "max_crashes": 4, "backoff_initial_ms": 10, "backoff_max_ms": 25,
             "on_max_crashes": "stop"},
            {"name": "on-failure-crash", "command": sh("kill -USR1 $$"), "restart": "on-failure",
             "max_crashes": 2, "backoff_initial_ms": 10, "on_max_crashes": "stop"},
            {"name": "on-failure-clean", "command": sh("exit 0"), "restart": "on-failure",
             "backoff_initial_ms": 10},
            {"name": "never-crash", "command": sh("exit 5"), "restart": "never",
             "backoff_initial_ms": 10},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 1, "a worker finished failed");

    let init = &fleet.named("init_started")[0];
    assert_eq!(
        (init["pid"].clone(), init["mode"].clone()),
        (json!(1), json!("config"))
    );
    assert_eq!(
        trace(&fleet, "always-flaky"),
        lines(&[
            "started 1",
            "exited code=0 clean_exit 0",
            "backoff 0",
            "started 2",
            "exited code=0 clean_exit 0",
            "backoff 0",
            "started 3",
            "exited code=1 crash 1",
            "max_crashes_exceeded 1/1",
        ])
    );
    assert_eq!(
        trace(&fleet, "always-crash"),
        lines(&[
            "started 1",
            "exited code=3 crash 1",
            "backoff 10",
            "started 2",
            "exited code=3 crash 2",
            "backoff 20",
            "started 3",
            "exited code=3 crash 3",
            "backoff 25",
            "started 4",
            "exited code=3 crash 4",
            "max_crashes_exceeded 4/4",
        ])
    );
    assert_eq!(
        trace(&fleet, "on-failure-crash"),
        lines(&[
            "started 1",
            "exited signal=SIGUSR1 crash 1",
            "backoff 10",
            "started 2",
            "exited signal=SIGUSR1 crash 2",
            "max_crashes_exceeded 2/2",
        ])
    );
    assert_eq!(
        trace(&fleet, "on-failure-clean"),
        lines(&["started 1", "exited code=0 clean_exit 0"])
    );
    assert_eq!(
        trace(&fleet, "never-crash"),
        lines(&["started 1", "exited code=5 crash 1"])
    );
    assert_paired(&fleet);
    let started = fleet.named("worker_started");
    let mut pids: Vec<i64> = started.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), started.len(), "every run has its own pid");

    let shutdown = &fleet.named("shutdown_started");
    assert_eq!(shutdown.len(), 1);
    assert_eq!(shutdown[0]["reason"], "workers_finished");
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["exit_code"], 1);
    assert_eq!(complete["killed"], 0);
}

#[test]
fn sigttin_and_sigttou_are_forwarded_like_any_other_signal() {
    // SPEC: every signal but the shutdown ones is forwarded. tini ignores these two; fleet-init
    // blocks them (its own terminal writes from the background still go through) and reads
    // them like the rest. `process`: the trap runs in sh, and its `sleep` is not stopped.
    let dir = TempDir::new();
    let script = "trap 'echo got-TTIN' TTIN; trap 'echo got-TTOU' TTOU; echo ready; \
                  while :; do sleep 0.05; done";
    let worker =
        json!({"name": "tty", "signal_target": "process", "command": ["sh", "-c", script]});
    let mut fleet = start_config(&dir, &json!({"workers": [worker]}), true);
    fleet.wait_output("ready", BOUND);
    for (signal, name) in [(libc::SIGTTIN, "TTIN"), (libc::SIGTTOU, "TTOU")] {
        fleet.signal(signal);
        let forwarded = fleet.wait_event_where(
            "signal_forwarded",
            |e| e["signal"] == format!("SIG{name}"),
            BOUND,
        );
        assert_eq!(forwarded["workers"], json!(["tty"]));
        fleet.wait_output(&format!("got-{name}"), BOUND);
    }
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(
        trace(&fleet, "tty"),
        lines(&["started 1", "exited signal=SIGTERM shutdown 0"])
    );
}

#[test]
fn a_death_by_a_signal_fleet_init_forwarded_is_no_crash() {
    // SPEC: a crash is a death by a signal fleet-init did not send. `docker kill -s HUP` ends
    // a worker that has no handler for it: restarted at once, its crash count untouched. The
    // second run ends itself with the same signal, which fleet-init did not send: a crash.
    let dir = TempDir::new();
    let marker = dir.path("ran-once");
    let script = format!(
        "if [ -e {m} ]; then kill -HUP $$; fi; touch {m}; echo ready; exec sleep 30",
        m = marker.display()
    );
    let worker = json!({"name": "w", "restart": "always", "command": ["sh", "-c", script]});
    let mut fleet = start_config(&dir, &json!({"workers": [worker]}), true);
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGHUP);
    let first = fleet.wait_nth("worker_exited", 1, BOUND);
    assert_eq!(first["signal"], "SIGHUP", "{first}");
    assert_eq!(first["likely_cause"], "clean_exit", "{first}");
    assert_eq!(first["crash_count"], 0);
    assert_eq!(fleet.wait_nth("backoff", 1, BOUND)["ms"], 0);
    let second = fleet.wait_nth("worker_exited", 2, BOUND);
    assert_eq!(second["signal"], "SIGHUP", "{second}");
    assert_eq!(second["likely_cause"], "crash", "{second}");
    assert_eq!(second["crash_count"], 1);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn fleet_init_config_in_the_environment_is_config_mode_and_a_command_wins_over_it() {
    // SPEC: FLEET_INIT_CONFIG, the image's `ENV` for `ENTRYPOINT ["fleet-init"]` with no
    // arguments; a command given to `docker run` wins over it.
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "from-env", "restart": "never",
                                      "command": ["sh", "-c", "echo env-config-ran"]}]});
    let path = dir.write("env.json", &config.to_string());
    let path = path.to_str().unwrap();
    let mut fleet = pid1(&[]).env("FLEET_INIT_CONFIG", path).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(fleet.named("init_started")[0]["mode"], "config");
    assert_eq!(count_output(&fleet, "env-config-ran"), 1);
    assert_eq!(fleet.named("worker_started")[0]["worker"], "from-env");
    let mut fleet = pid1(&["--", "sh", "-c", "exit 5"])
        .env("FLEET_INIT_CONFIG", path)
        .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 5);
    assert_eq!(count_output(&fleet, "env-config-ran"), 0);
}

#[test]
fn workers_that_all_finish_cleanly_make_exit_0() {
    let dir = TempDir::new();
    let counter = dir.path("recovers.count");
    // Crashes once, then exits 0.
    let recovers = format!(
        "n=$(( $(cat {c} 2>/dev/null || echo 0) + 1 )); echo $n > {c}; \
         if [ $n -eq 1 ]; then exit 1; fi; exit 0",
        c = counter.display()
    );
    let config = json!({
        "workers": [
            {"name": "never-clean", "command": sh("exit 0"), "restart": "never"},
            {"name": "on-failure-recovers", "command": sh(&recovers), "restart": "on-failure",
             "backoff_initial_ms": 10},
            {"name": "on-failure-clean", "command": ["true"], "restart": "on-failure"},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(
        trace(&fleet, "never-clean"),
        lines(&["started 1", "exited code=0 clean_exit 0"])
    );
    assert_eq!(
        trace(&fleet, "on-failure-recovers"),
        lines(&[
            "started 1",
            "exited code=1 crash 1",
            "backoff 10",
            "started 2",
            // Exit 0 leaves the crash count alone.
            "exited code=0 clean_exit 1",
        ])
    );
    assert_eq!(
        trace(&fleet, "on-failure-clean"),
        lines(&["started 1", "exited code=0 clean_exit 0"])
    );
    assert_paired(&fleet);
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["reason"], "workers_finished");
    assert_eq!(complete["exit_code"], 0);
}

const HUP_CHILD: &str = r#"
trap 'echo hup-child-$FLEET_INIT_WORKER' HUP
echo ready-child-$FLEET_INIT_WORKER
while :; do sleep 0.05; done
"#;

#[test]
fn sighup_reaches_every_workers_process_group() {
    let dir = TempDir::new();
    let child = dir.write("child.sh", HUP_CHILD);
    let main = format!(
        "trap 'echo hup-main-$FLEET_INIT_WORKER' HUP\n\
         sh {} &\n\
         echo ready-main-$FLEET_INIT_WORKER\n\
         while :; do sleep 0.05; done\n",
        child.display()
    );
    let command = sh_file(&dir, "main.sh", &main);
    let names = ["w1", "w2", "w3", "w4", "w5"];
    let workers: Vec<Value> = names
        .iter()
        .map(|name| json!({"name": name, "command": command}))
        .collect();
    let mut fleet = start_config(&dir, &json!({"grace_ms": 5000, "workers": workers}), true);
    for name in names {
        fleet.wait_output(&format!("ready-main-{name}"), BOUND);
        fleet.wait_output(&format!("ready-child-{name}"), BOUND);
    }
    fleet.signal(libc::SIGHUP);
    let forwarded = fleet.wait_event_where("signal_forwarded", |e| e["signal"] == "SIGHUP", BOUND);
    assert_eq!(forwarded["workers"], json!(names));
    for name in names {
        fleet.wait_output(&format!("hup-main-{name}"), BOUND);
        fleet.wait_output(&format!("hup-child-{name}"), BOUND);
    }
    assert!(
        fleet.named("worker_exited").is_empty(),
        "HUP stopped nobody"
    );

    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0, "signal-initiated shutdown");
    for name in names {
        assert_eq!(count_output(&fleet, &format!("hup-main-{name}")), 1);
        assert_eq!(count_output(&fleet, &format!("hup-child-{name}")), 1);
        assert_eq!(
            trace(&fleet, name),
            lines(&["started 1", "exited signal=SIGTERM shutdown 0"]),
            "{name}"
        );
    }
    assert_eq!(
        fleet.named("signal_forwarded").len(),
        1,
        "SIGTERM is not forwarded"
    );
    assert_paired(&fleet);
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["reason"], "SIGTERM");
    assert_eq!(complete["exit_code"], 0);
}

/// The child records whether it saw SIGHUP; the main process answers SIGHUP by sending the
/// child SIGUSR2, and the child reports. A HUP sent to the group is pending in the child before
/// the USR2 is, and dash runs traps in signal-number order, so `hup=0` proves it never came.
const TARGET_CHILD: &str = r#"
hup=0
trap 'hup=1' HUP
trap 'echo usr2-$FLEET_INIT_WORKER-hup=$hup' USR2
echo ready-child-$FLEET_INIT_WORKER
while :; do sleep 0.05; done
"#;

#[test]
fn signal_target_process_spares_the_workers_children() {
    let dir = TempDir::new();
    let child = dir.write("child.sh", TARGET_CHILD);
    let main = format!(
        "trap 'kill -USR2 $child' HUP\n\
         sh {} &\n\
         child=$!\n\
         echo ready-main-$FLEET_INIT_WORKER\n\
         while :; do sleep 0.05; done\n",
        child.display()
    );
    let command = sh_file(&dir, "main.sh", &main);
    let config = json!({
        "grace_ms": 5000,
        "workers": [
            {"name": "process", "command": command, "signal_target": "process"},
            {"name": "group", "command": command},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    for name in ["process", "group"] {
        fleet.wait_output(&format!("ready-main-{name}"), BOUND);
        fleet.wait_output(&format!("ready-child-{name}"), BOUND);
    }
    fleet.signal(libc::SIGHUP);
    fleet.wait_output("usr2-process-", BOUND);
    fleet.wait_output("usr2-group-", BOUND);
    assert_eq!(
        count_output(&fleet, "usr2-process-hup=0"),
        1,
        "{:?}",
        fleet.output
    );
    assert_eq!(
        count_output(&fleet, "usr2-group-hup=1"),
        1,
        "{:?}",
        fleet.output
    );
    let forwarded = fleet.wait_event("signal_forwarded");
    assert_eq!(forwarded["signal"], "SIGHUP");
    assert_eq!(forwarded["workers"], json!(["process", "group"]));
    assert!(fleet.named("worker_exited").is_empty());

    // At shutdown the process-target worker's main process gets SIGTERM alone; once it is
    // gone, what is left of its group is stopped too, long before the grace ends.
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    for name in ["process", "group"] {
        assert_eq!(
            trace(&fleet, name),
            lines(&["started 1", "exited signal=SIGTERM shutdown 0"])
        );
    }
    let complete = &fleet.named("shutdown_complete")[0];
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!(duration < 2000, "duration {duration} (grace 5000)");
    assert_eq!(complete["killed"], 0);
}

#[test]
fn a_missing_binary_is_spawn_failed_and_trips_max_crashes() {
    let dir = TempDir::new();
    let config = json!({
        "workers": [
            {"name": "ghost", "command": ["/nonexistent/ghost", "--flag"], "max_crashes": 3,
             "backoff_initial_ms": 10},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 1);
    let failed = "spawn_failed exec /nonexistent/ghost: No such file or directory";
    assert_eq!(
        trace(&fleet, "ghost"),
        lines(&[
            "started 1",
            failed,
            "exited code=127 spawn_failed 1",
            "backoff 10",
            "started 2",
            failed,
            "exited code=127 spawn_failed 2",
            "backoff 20",
            "started 3",
            failed,
            "exited code=127 spawn_failed 3",
            "max_crashes_exceeded 3/3",
        ])
    );
    assert_paired(&fleet);
    assert_eq!(
        fleet.named("shutdown_started")[0]["reason"],
        "max_crashes_exceeded"
    );
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["exit_code"], 1);
}

/// `crasher` waits until the others are up (their child pid files exist), then exits 1 twice;
/// `steady` stops on SIGTERM, `stubborn` ignores it (and so do its children).
fn on_max_crashes_shutdown_stops_everything(as_pid1: bool) {
    let dir = TempDir::new();
    let steady_child = dir.path("steady.child");
    let stubborn_child = dir.path("stubborn.child");
    let steady = format!(
        "sleep 1000 & echo $! > {}; echo ready-steady; wait",
        steady_child.display()
    );
    let stubborn = format!(
        "trap '' TERM; sleep 1000 & echo $! > {}; echo ready-stubborn; \
         while :; do sleep 0.05; done",
        stubborn_child.display()
    );
    let crasher = format!(
        "while [ ! -s {} ] || [ ! -s {} ]; do sleep 0.01; done; exit 1",
        steady_child.display(),
        stubborn_child.display()
    );
    let config = json!({
        "grace_ms": 400,
        "workers": [
            {"name": "steady", "command": sh(&steady)},
            {"name": "stubborn", "command": sh(&stubborn)},
            {"name": "crasher", "command": sh(&crasher), "max_crashes": 2,
             "backoff_initial_ms": 10, "on_max_crashes": "shutdown"},
        ]
    });
    let mut fleet = start_config(&dir, &config, as_pid1);
    assert_eq!(fleet.wait_exit(BOUND), 1, "as_pid1={as_pid1}");
    assert_eq!(
        trace(&fleet, "crasher"),
        lines(&[
            "started 1",
            "exited code=1 crash 1",
            "backoff 10",
            "started 2",
            "exited code=1 crash 2",
            "max_crashes_exceeded 2/2",
        ])
    );
    assert_eq!(
        trace(&fleet, "steady"),
        lines(&["started 1", "exited signal=SIGTERM shutdown 0"])
    );
    assert_eq!(
        trace(&fleet, "stubborn"),
        lines(&["started 1", "exited signal=SIGKILL shutdown 0"])
    );
    assert_paired(&fleet);
    assert_eq!(
        fleet.named("shutdown_started")[0]["reason"],
        "max_crashes_exceeded"
    );
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["exit_code"], 1);
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!((400..3000).contains(&duration), "duration {duration}");
    // The stubborn shell and its sleep 1000 at least.
    assert!(complete["killed"].as_u64().unwrap() >= 2, "{complete}");
    if !as_pid1 {
        // Host pids: nothing fleet-init started may outlive it.
        let mut pids: Vec<i32> = fleet
            .named("worker_started")
            .iter()
            .map(|e| e["pid"].as_i64().unwrap() as i32)
            .collect();
        for file in [&steady_child, &stubborn_child] {
            pids.push(read_to_string(file).trim().parse().unwrap());
        }
        for pid in pids {
            assert!(!is_alive(pid), "pid {pid} outlived fleet-init");
        }
    }
}

#[test]
fn on_max_crashes_shutdown_stops_everything_and_exits_1_as_pid1() {
    on_max_crashes_shutdown_stops_everything(true);
}

#[test]
fn on_max_crashes_shutdown_stops_everything_and_exits_1_as_subreaper() {
    on_max_crashes_shutdown_stops_everything(false);
}

/// `(fd, target)` of a process's open descriptors.
fn fd_table(pid: &str) -> Vec<(String, String)> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    fds.sort();
    fds
}

/// fleet-init's descriptors beyond stdio and what it inherited from this test process.
fn own_fds(pid: i32) -> Vec<(String, String)> {
    let inherited = fd_table("self");
    fd_table(&pid.to_string())
        .into_iter()
        .filter(|(fd, _)| !["0", "1", "2"].contains(&fd.as_str()))
        .filter(|entry| !inherited.contains(entry))
        .collect()
}

#[test]
fn on_max_crashes_stop_keeps_the_other_workers_running() {
    let dir = TempDir::new();
    let steady = "n=0; trap 'n=$((n+1)); echo pong-$n' USR1; echo ready-steady; \
                  while :; do sleep 0.05; done";
    let config = json!({
        "grace_ms": 5000,
        "workers": [
            {"name": "crasher", "command": ["/nonexistent/crasher"], "max_crashes": 10,
             "backoff_initial_ms": 10, "backoff_max_ms": 20, "on_max_crashes": "stop"},
            // Its output pipes would be descriptors of fleet-init's: this test counts them.
            {"name": "steady", "command": sh(steady), "output": "inherit"},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    let tripped = fleet.wait_event("max_crashes_exceeded");
    assert_eq!(
        (
            tripped["worker"].clone(),
            tripped["crash_count"].clone(),
            tripped["max_crashes"].clone()
        ),
        (json!("crasher"), json!(10), json!(10))
    );
    fleet.wait_output("ready-steady", BOUND);
    // Ten failed spawns left no descriptor behind: the signalfd, the private non-blocking
    // descriptors of stdout (the events) and stderr (the spawn failures' diagnostics; both are
    // pipes here), the state dir (the registry's and the control socket's, each used through
    // its descriptor) and the control socket only.
    let state_dir = fleet.state_dir.path("state").display().to_string();
    let only_the_wake_pipe = |fds: &[(String, String)]| {
        fds.len() <= 6
            && fds.iter().filter(|(_, t)| t.starts_with("socket:")).count() <= 1
            && fds.iter().all(|(_, target)| {
                target.starts_with("pipe:")
                    || target.starts_with("socket:")
                    || target == "anon_inode:[signalfd]"
                    || *target == state_dir
            })
    };
    assert!(
        eventually(BOUND, || only_the_wake_pipe(&own_fds(fleet.pid))),
        "fleet-init's descriptors: {:?}",
        own_fds(fleet.pid)
    );

    fleet.signal(libc::SIGUSR1);
    fleet.wait_output("pong-1", BOUND);
    let forwarded = fleet.wait_event_where("signal_forwarded", |e| e["signal"] == "SIGUSR1", BOUND);
    assert_eq!(
        forwarded["workers"],
        json!(["steady"]),
        "crasher stays down"
    );
    assert!(fleet.named("shutdown_started").is_empty());

    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let crasher = trace(&fleet, "crasher");
    assert_eq!(
        crasher.iter().filter(|l| l.starts_with("started")).count(),
        10
    );
    assert_eq!(crasher.last().unwrap(), "max_crashes_exceeded 10/10");
    let backoffs: Vec<&String> = crasher
        .iter()
        .filter(|l| l.starts_with("backoff"))
        .collect();
    assert_eq!(backoffs.len(), 9);
    assert_eq!(backoffs[0], "backoff 10");
    assert!(
        backoffs[1..].iter().all(|l| *l == "backoff 20"),
        "{backoffs:?}"
    );
    assert_eq!(
        trace(&fleet, "steady"),
        lines(&["started 1", "exited signal=SIGTERM shutdown 0"])
    );
    assert_paired(&fleet);
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["reason"], "SIGTERM");
    assert_eq!(complete["exit_code"], 0);
}

/// uid, gid and home of a user from /etc/passwd.
fn passwd_ids(user: &str) -> (String, String, String) {
    let passwd = read_to_string(Path::new("/etc/passwd"));
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("no {user} in /etc/passwd"));
    let fields: Vec<&str> = line.split(':').collect();
    (
        fields[2].to_string(),
        fields[3].to_string(),
        fields[5].to_string(),
    )
}

#[test]
fn worker_name_env_cwd_and_user_are_applied() {
    let dir = TempDir::new();
    let work = dir.path("work");
    std::fs::create_dir(&work).unwrap();
    let report = r#"echo "$FLEET_INIT_WORKER: worker=$FLEET_INIT_WORKER greeting=${GREETING-unset} inherited=${FLEET_TEST_INHERITED-unset} pwd=$(pwd) uid=$(id -u) gid=$(id -g) groups=$(id -G) user=${USER-unset} home=${HOME-unset}""#;
    let config = json!({
        "workers": [
            {"name": "plain", "command": sh(report), "restart": "never"},
            {"name": "configured", "command": sh(report), "restart": "never",
             "env": {"GREETING": "hello world"}, "cwd": work.to_str().unwrap()},
            {"name": "dropped", "command": sh(report), "restart": "never",
             "env": {"GREETING": "hi"}, "cwd": work.to_str().unwrap(), "user": "nobody"},
        ]
    });
    let path = dir.write("config.json", &config.to_string());
    let mut fleet = pid1(&["--config", path.to_str().unwrap()])
        .env("GREETING", "outer")
        .env("FLEET_TEST_INHERITED", "yes")
        .env("USER", "root")
        .env("HOME", "/root")
        .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let line = |name: &str| {
        fleet
            .output
            .iter()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .cloned()
            .unwrap_or_else(|| panic!("no line from {name}: {:?}", fleet.output))
    };
    // A worker without `cwd` runs in fleet-init's own directory, not the configured one.
    let plain = line("plain");
    assert!(
        plain.starts_with("plain: worker=plain greeting=outer inherited=yes pwd="),
        "{plain}"
    );
    assert!(!plain.contains(work.to_str().unwrap()), "{plain}");
    assert!(
        plain.ends_with(" uid=0 gid=0 groups=0 user=root home=/root"),
        "{plain}"
    );
    assert_eq!(
        line("configured"),
        format!(
            "configured: worker=configured greeting=hello world inherited=yes pwd={} uid=0 gid=0 groups=0 user=root home=/root",
            work.display()
        )
    );
    let (uid, gid, home) = passwd_ids("nobody");
    assert_eq!(
        line("dropped"),
        format!(
            "dropped: worker=dropped greeting=hi inherited=yes pwd={} uid={uid} gid={gid} groups={gid} user=nobody home={home}",
            work.display()
        )
    );
    for name in ["plain", "configured", "dropped"] {
        assert_eq!(
            trace(&fleet, name),
            lines(&["started 1", "exited code=0 clean_exit 0"])
        );
    }
}

/// First run: leaves a child in its group (one that ignores SIGTERM when `ignore_term`) and
/// exits 3. Later runs: report whether that child still exists, then stay up.
fn leaves_a_child(dir: &TempDir, name: &str, ignore_term: bool) -> Value {
    let pid_file = dir.path(&format!("{name}.child"));
    let up_file = dir.path(&format!("{name}.up"));
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    let script = format!(
        r#"f={pid}
if [ -s $f ]; then
  old=$(cat $f)
  if [ -e /proc/$old ]; then echo {name}-old-child=alive; else echo {name}-old-child=gone; fi
  exec sleep 1000
fi
({trap}touch {up}; exec sleep 1000) &
while [ ! -e {up} ]; do sleep 0.01; done
echo $! > $f.tmp && mv $f.tmp $f
exit 3
"#,
        pid = pid_file.display(),
        up = up_file.display(),
    );
    sh_file(dir, &format!("{name}.sh"), &script)
}

#[test]
fn a_dead_workers_leftover_child_is_stopped_before_the_restart() {
    let dir = TempDir::new();
    let config = json!({
        "grace_ms": 5000,
        "workers": [
            {"name": "deaf", "command": leaves_a_child(&dir, "deaf", true),
             "backoff_initial_ms": 10, "stop_grace_ms": 300},
            {"name": "polite", "command": leaves_a_child(&dir, "polite", false),
             "backoff_initial_ms": 10},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("deaf-old-child=", BOUND);
    fleet.wait_output("polite-old-child=", BOUND);
    assert_eq!(
        count_output(&fleet, "deaf-old-child=gone"),
        1,
        "{:?}",
        fleet.output
    );
    assert_eq!(
        count_output(&fleet, "polite-old-child=gone"),
        1,
        "{:?}",
        fleet.output
    );
    for name in ["deaf", "polite"] {
        fleet.wait_event_where(
            "worker_started",
            |e| e["worker"] == name && e["run"] == 2,
            BOUND,
        );
        assert_eq!(
            trace(&fleet, name),
            lines(&[
                "started 1",
                "exited code=3 crash 1",
                "backoff 10",
                "started 2"
            ])
        );
    }
    let gap = |name: &str| {
        let find = |event: &str, run: Option<i64>| -> i64 {
            fleet
                .events
                .iter()
                .find(|e| {
                    e["event"] == event
                        && e["worker"] == name
                        && run.is_none_or(|run| e["run"] == run)
                })
                .map(ts_ms)
                .unwrap_or_else(|| panic!("no {event} of {name}"))
        };
        find("worker_started", Some(2)) - find("worker_exited", None)
    };
    // The deaf child held the restart until its stop_grace_ms (300) ran out and it got
    // SIGKILL; the polite one went at the stop signal (SIGTERM).
    let deaf_gap = gap("deaf");
    assert!(
        (300..3000).contains(&deaf_gap),
        "deaf restart after {deaf_gap} ms"
    );
    // Its stop_grace_ms is the global 5000: well under it means the stop signal did it.
    let polite_gap = gap("polite");
    assert!(polite_gap < 2000, "polite restart after {polite_gap} ms");

    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_paired(&fleet);
}

fn check_config(path: &Path) -> (i32, String, String) {
    let mut fleet = subreaper(&["--check-config", path.to_str().unwrap()]).spawn();
    let code = fleet.wait_exit(BOUND);
    let stderr = fleet.stderr();
    (code, fleet.output.join("\n"), stderr)
}

fn bad_config(dir: &TempDir) -> std::path::PathBuf {
    let marker = dir.path("started.marker");
    let config = json!({
        "workers": [
            {"name": "fine", "command": ["touch", marker.to_str().unwrap()]},
            {"name": "api", "command": ["true"], "restart": "sometimes"},
            {"name": "web", "command": ["true"], "max_crash": 3},
        ]
    });
    dir.write("bad.json", &config.to_string())
}

#[test]
fn check_config_accepts_a_good_file_and_names_worker_and_key_in_a_bad_one() {
    let dir = TempDir::new();
    let good = dir.write(
        "good.json",
        &json!({"grace_ms": 100, "workers": [
            {"name": "api", "command": ["true"], "restart": "on-failure", "user": "nobody"},
            {"name": "web", "command": ["true"], "signal_target": "process"},
        ]})
        .to_string(),
    );
    let (code, stdout, stderr) = check_config(&good);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "config OK: 2 workers (api, web)");
    assert_eq!(stderr, "");

    let bad = bad_config(&dir);
    let (code, stdout, stderr) = check_config(&bad);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        errors[0].contains(r#"worker "api": key "restart": "#) && errors[0].contains("sometimes"),
        "{stderr}"
    );
    assert!(
        errors[1].contains(r#"worker "web": key "max_crash": unknown key"#),
        "{stderr}"
    );
    assert!(!dir.path("started.marker").exists());
}

#[test]
fn a_bad_config_exits_2_and_starts_nothing() {
    let dir = TempDir::new();
    let bad = bad_config(&dir);
    let mut fleet = pid1(&["--config", bad.to_str().unwrap()]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 2);
    assert!(fleet.events.is_empty(), "events: {:?}", fleet.events);
    assert!(fleet.output.is_empty(), "output: {:?}", fleet.output);
    let stderr = fleet.stderr();
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    for line in &errors {
        assert!(
            line.starts_with(&format!("fleet-init: {}: worker ", bad.display())),
            "{line}"
        );
    }
    assert!(
        errors[0].contains(r#"worker "api": key "restart""#),
        "{stderr}"
    );
    assert!(
        errors[1].contains(r#"worker "web": key "max_crash""#),
        "{stderr}"
    );
    assert!(!dir.path("started.marker").exists(), "a worker ran");
}

#[test]
fn a_config_that_is_not_a_file_is_refused_at_once_and_a_piped_one_is_read() {
    // A FIFO nobody writes once hung PID 1 in open(2), with every signal blocked and none yet
    // served (only SIGKILL ended it); `/dev/zero` was read until memory ran out.
    let dir = TempDir::new();
    let fifo = dir.path("config.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, reason) in [
        (fifo.to_str().unwrap(), "invalid JSON"),
        ("/dev/zero", "not a regular file (a character device)"),
        (dir.0.to_str().unwrap(), "not a regular file (a directory)"),
    ] {
        let mut fleet = pid1(&["--config", path]).spawn();
        assert_eq!(fleet.wait_exit(BOUND), 2, "{path}");
        let stderr = fleet.stderr();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("fleet-init: {path}: ")) && stderr.contains(reason),
            "{path}: {stderr}"
        );
        assert!(fleet.events.is_empty(), "{:?}", fleet.events);
    }
    // `--check-config /dev/stdin` from a pipe whose writer takes its time.
    let mut check = std::process::Command::new("sh")
        .args([
            "-c",
            r#"(sleep 0.3; echo '{"workers":[{"name":"a","command":["true"]}]}') | "$0" --check-config /dev/stdin"#,
            common::bin(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(common::wait_child(&mut check, BOUND).is_some_and(|status| status.success()));
    let mut said = String::new();
    std::io::Read::read_to_string(check.stdout.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(said.trim(), "config OK: 1 worker (a)");
}

#[test]
fn config_mode_runs_as_a_subreaper_too() {
    let dir = TempDir::new();
    let mut fleet = start_config(
        &dir,
        &json!({"workers": [{"name": "once", "command": ["true"], "restart": "never"}]}),
        false,
    );
    assert_eq!(fleet.wait_exit(Duration::from_secs(5)), 0);
    assert_eq!(
        trace(&fleet, "once"),
        lines(&["started 1", "exited code=0 clean_exit 0"])
    );
    assert_ne!(fleet.named("init_started")[0]["pid"], 1);
}

/// A script that exits with the n-th code of `codes` (1-based run count kept in a file), and
/// with the last code after that; `sleep_on` runs sleep `sleep_s` seconds first.
fn by_run(dir: &TempDir, name: &str, codes: &[i32], sleep_on: &[usize], sleep_s: &str) -> Value {
    let counter = dir.path(&format!("{name}.count"));
    let mut script = format!(
        "n=$(( $(cat {c} 2>/dev/null || echo 0) + 1 )); echo $n > {c}\ncase $n in\n",
        c = counter.display()
    );
    for (index, code) in codes.iter().enumerate() {
        let run = index + 1;
        let pause = if sleep_on.contains(&run) {
            format!("sleep {sleep_s}; ")
        } else {
            String::new()
        };
        script.push_str(&format!("  {run}) {pause}exit {code} ;;\n"));
    }
    script.push_str(&format!("  *) exit {} ;;\nesac\n", codes.last().unwrap()));
    sh_file(dir, &format!("{name}.sh"), &script)
}

#[test]
fn the_specs_max_crashes_example_trips_at_the_ninth_exit() {
    // SPEC: max_crashes 5, exits 1,0,1,0,1,0,1,0,1 trip it at the 9th.
    let dir = TempDir::new();
    let command = by_run(&dir, "alternating", &[1, 0, 1, 0, 1, 0, 1, 0, 1], &[], "0");
    let config = json!({"workers": [
        {"name": "alternating", "command": command, "max_crashes": 5,
         "backoff_initial_ms": 1, "backoff_max_ms": 100},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 1);
    let mut want = Vec::new();
    for run in 1..=9u32 {
        want.push(format!("started {run}"));
        let crashes = run.div_ceil(2);
        if run % 2 == 1 {
            want.push(format!("exited code=1 crash {crashes}"));
            if run == 9 {
                want.push("max_crashes_exceeded 5/5".to_string());
            } else {
                want.push(format!("backoff {}", 1 << (crashes - 1)));
            }
        } else {
            want.push(format!("exited code=0 clean_exit {crashes}"));
            want.push("backoff 0".to_string());
        }
    }
    assert_eq!(trace(&fleet, "alternating"), want);
    assert_paired(&fleet);
}

#[test]
fn a_stable_run_resets_the_crash_count() {
    // Runs 1, 2 crash at once; run 3 lasts past stable_run_ms (300) and crashes: its crash
    // counts from zero again; runs 4, 5 crash at once and trip max_crashes 3.
    let dir = TempDir::new();
    let command = by_run(&dir, "resets", &[1, 1, 1, 1, 1], &[3], "0.5");
    let config = json!({"workers": [
        {"name": "resets", "command": command, "max_crashes": 3, "stable_run_ms": 300,
         "backoff_initial_ms": 10},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 1);
    assert_eq!(
        trace(&fleet, "resets"),
        lines(&[
            "started 1",
            "exited code=1 crash 1",
            "backoff 10",
            "started 2",
            "exited code=1 crash 2",
            "backoff 20",
            "started 3",
            "exited code=1 crash 1",
            "backoff 10",
            "started 4",
            "exited code=1 crash 2",
            "backoff 20",
            "started 5",
            "exited code=1 crash 3",
            "max_crashes_exceeded 3/3",
        ])
    );
    let third = fleet.named("worker_exited")[2].clone();
    assert!(third["uptime_ms"].as_u64().unwrap() >= 300, "{third}");
}

#[test]
fn clean_restarts_past_the_budget_warn_once_and_back_off_but_never_trip() {
    let dir = TempDir::new();
    let config = json!({"workers": [
        {"name": "eager", "command": ["true"], "max_crashes": 1, "clean_restart_budget": 2,
         "clean_restart_window_ms": 60000, "backoff_initial_ms": 10, "backoff_max_ms": 40},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event_where("worker_started", |e| e["run"] == 7, BOUND);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let got = trace(&fleet, "eager");
    let mut want = Vec::new();
    for (run, backoff) in [(1, 0), (2, 0), (3, 10), (4, 20), (5, 40), (6, 40)] {
        want.push(format!("started {run}"));
        want.push("exited code=0 clean_exit 0".to_string());
        if run == 3 {
            want.push("health_warn clean_restart_budget_exceeded".to_string());
        }
        want.push(format!("backoff {backoff}"));
    }
    want.push("started 7".to_string());
    assert_eq!(got[..want.len()], want[..], "{got:#?}");
    let warns = fleet.named("health_warn");
    assert_eq!(warns.len(), 1);
    assert_eq!(warns[0]["clean_restarts"], 3);
    assert_eq!(warns[0]["clean_restart_budget"], 2);
    assert_eq!(warns[0]["clean_restart_window_ms"], 60000);
    assert!(fleet.named("max_crashes_exceeded").is_empty());
    assert_paired(&fleet);
}

#[test]
fn a_dead_workers_setsid_descendant_is_stopped_before_the_restart() {
    // SPEC: "whatever is left of its process group or of its tracked descendants is stopped
    // before the worker is started again": a descendant that left the group with setsid too.
    let dir = TempDir::new();
    let pid_file = dir.path("escapee.pid");
    let script = format!(
        r#"f={pid}
if [ -s $f ]; then
  old=$(cat $f)
  if [ -e /proc/$old ]; then echo old-escapee=alive; else echo old-escapee=gone; fi
  exec sleep 1000
fi
setsid sh -c 'echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; exec sleep 1000' &
while [ ! -s $f ]; do sleep 0.01; done
exit 3
"#,
        pid = pid_file.display()
    );
    let config = json!({"grace_ms": 5000, "workers": [
        {"name": "leaky", "command": sh_file(&dir, "leaky.sh", &script),
         "backoff_initial_ms": 10},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("old-escapee=", BOUND);
    let verdict = fleet
        .output
        .iter()
        .find(|l| l.starts_with("old-escapee="))
        .cloned();
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(
        verdict.as_deref(),
        Some("old-escapee=gone"),
        "{:?}",
        fleet.events
    );
}

#[test]
fn a_death_by_a_real_time_signal_is_an_exit_like_any_other() {
    // nix's waitpid turned a death by SIGRTMIN+N into EINVAL after the kernel had reaped the
    // child: no worker_exited, no restart, and `ctl status` said the dead worker was ready.
    let dir = TempDir::new();
    let counter = dir.path("runs");
    let script = format!(
        "n=$(( $(cat {c} 2>/dev/null || echo 0) + 1 )); echo $n > {c}; \
         if [ $n -eq 1 ]; then kill -37 $$; fi; echo second; exec sleep 1000",
        c = counter.display()
    );
    let config =
        json!({"workers": [{"name": "rt", "command": sh(&script), "backoff_initial_ms": 10}]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("second", BOUND);
    // 37 is SIGRTMIN+3 to glibc and SIGRTMIN+2 to musl (the static build): its libc names it.
    let life = trace(&fleet, "rt");
    assert_eq!(
        (&life[0], &life[2], &life[3]),
        (
            &"started 1".to_string(),
            &"backoff 10".to_string(),
            &"started 2".to_string()
        )
    );
    assert!(
        life[1].starts_with("exited signal=SIGRTMIN+") && life[1].ends_with(" crash 1"),
        "{life:?}"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_paired(&fleet);
}
