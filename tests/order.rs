//! Start order, oneshots, readiness and health on real processes, fleet-init as PID 1: a
//! migration before the api, the api ready when its port answers, a client after it; each
//! readiness kind; a readiness timeout and failing health checks as `unhealthy` crashes; a
//! hanging probe killed at its timeout without delaying signals; the shutdown in reverse
//! start order; no wake-ups once everything is ready; and the config errors.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A TCP server on `port` that starts listening after `delay` seconds and exits 0 on SIGTERM.
fn listener_script(dir: &TempDir) -> String {
    let script = r#"
import signal, socket, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(delay)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(64)
while True:
    connection, _ = server.accept()
    connection.close()
"#;
    dir.write("listener.py", script).display().to_string()
}

/// Connects to `port` every 50 ms for `seconds`; exits 1 at the first refusal.
fn drain_script(dir: &TempDir) -> String {
    let script = r#"
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + seconds
while time.time() < end:
    socket.create_connection(("127.0.0.1", port), 2).close()
    time.sleep(0.05)
"#;
    dir.write("drain.py", script).display().to_string()
}

fn has_python() -> bool {
    std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|status| status.success())
}

fn index_of(fleet: &Fleet, matches: impl Fn(&Value) -> bool) -> usize {
    fleet
        .events
        .iter()
        .position(matches)
        .unwrap_or_else(|| panic!("no such event in {:?}", fleet.events))
}

fn is(event: &Value, name: &str, worker: &str) -> bool {
    event["event"] == name && event["worker"] == worker
}

#[test]
fn migrate_then_api_when_its_port_answers_then_client_and_shutdown_in_reverse() {
    if !has_python() {
        return skip("migrate_then_api", "no python3");
    }
    let dir = TempDir::new();
    let port = free_port();
    let migrated = dir.path("migrated");
    let client_log = dir.path("client.log");
    let (migrated, client_log) = (migrated.display(), client_log.display());
    let drain = drain_script(&dir);
    let client = format!(
        "trap 'python3 {drain} {port} 0.5 && echo drained >> {client_log}; exit 0' TERM
         test -f {migrated} || {{ echo no-migration > {client_log}; exit 1; }}
         python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' \
            || {{ echo no-api > {client_log}; exit 1; }}
         echo started > {client_log}
         while :; do sleep 30 & wait; done"
    );
    let config = json!({
        "grace_ms": 5000,
        "workers": [
            {"name": "client", "command": sh(&client), "after": ["api"]},
            {"name": "api", "command": ["python3", listener_script(&dir), port.to_string(), "1"],
             "after": ["migrate"],
             "ready": {"tcp": format!("127.0.0.1:{port}"), "interval_ms": 50, "timeout_ms": 8000}},
            {"name": "migrate", "oneshot": true,
             "command": sh(&format!("sleep 0.5; touch {migrated}"))},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    let ready = fleet.wait_event_where("worker_ready", |e| e["worker"] == "api", BOUND);
    assert!(ready["after_ms"].as_u64().unwrap() >= 900, "{ready}");
    fleet.wait_event_where("worker_started", |e| e["worker"] == "client", BOUND);
    assert!(
        eventually(BOUND, || read_to_string(Path::new(&client_log.to_string()))
            .contains("started")),
        "client: {}",
        read_to_string(Path::new(&client_log.to_string()))
    );
    let migrate_done = index_of(&fleet, |e| {
        is(e, "worker_exited", "migrate") && e["likely_cause"] == "clean_exit"
    });
    let api_started = index_of(&fleet, |e| is(e, "worker_started", "api"));
    let api_ready = index_of(&fleet, |e| is(e, "worker_ready", "api"));
    let client_started = index_of(&fleet, |e| is(e, "worker_started", "client"));
    assert!(migrate_done < api_started && api_ready < client_started);
    assert_eq!(
        fleet.named("worker_waiting").len(),
        2,
        "api and client, once each"
    );
    assert_eq!(fleet.named("worker_started").len(), 3, "migrate ran once");

    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let log = read_to_string(Path::new(&client_log.to_string()));
    assert!(
        log.contains("drained"),
        "the api went away under the client: {log}"
    );
    let client_exit = index_of(&fleet, |e| is(e, "worker_exited", "client"));
    let api_exit = index_of(&fleet, |e| is(e, "worker_exited", "api"));
    assert!(client_exit < api_exit);
    let uptime = |i: usize| fleet.events[i]["likely_cause"].clone();
    assert_eq!(
        (uptime(client_exit), uptime(api_exit)),
        ("shutdown".into(), "shutdown".into())
    );
}

#[test]
fn notify_fd_file_and_command_readiness() {
    let dir = TempDir::new();
    let flag = dir.path("flag");
    let other = dir.path("other");
    let config = json!({
        "workers": [
            {"name": "notifier", "command": sh("sleep 0.3; echo >&3; exec sleep 30"),
             "ready": {"notify_fd": 3}},
            {"name": "filer", "command": sh(&format!("sleep 0.3; touch {}; exec sleep 30", flag.display())),
             "ready": {"file": flag, "interval_ms": 50}},
            {"name": "commander", "command": sh(&format!("sleep 0.3; touch {}; exec sleep 30", other.display())),
             "ready": {"command": ["test", "-f", other], "interval_ms": 50}},
            {"name": "last", "command": ["sleep", "30"],
             "after": ["notifier", "filer", "commander"]},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event_where("worker_started", |e| e["worker"] == "last", BOUND);
    for name in ["notifier", "filer", "commander"] {
        let ready = fleet.named("worker_ready");
        let ready = ready
            .iter()
            .find(|e| e["worker"] == name)
            .unwrap_or_else(|| panic!("{name} not ready"));
        assert!(ready["after_ms"].as_u64().unwrap() >= 250, "{ready}");
    }
    let waiting = fleet.named("worker_waiting");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["worker"], "last");
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn a_readiness_timeout_is_an_unhealthy_crash_and_restarts_with_backoff() {
    let dir = TempDir::new();
    let config = json!({
        "workers": [{"name": "slow", "command": ["sleep", "30"], "backoff_initial_ms": 200,
            "ready": {"file": dir.path("never"), "interval_ms": 50, "timeout_ms": 500}}]
    });
    let mut fleet = start_config(&dir, &config, true);
    let failed = fleet.wait_event("health_failed");
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("not ready within 500 ms"));
    let exited = fleet.wait_event("worker_exited");
    assert_eq!(exited["likely_cause"], "unhealthy");
    assert_eq!(exited["crash_count"], 1);
    assert_eq!(fleet.wait_event("backoff")["ms"], 200);
    fleet.wait_nth("worker_started", 2, BOUND);
    assert!(fleet.named("worker_ready").is_empty());
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn tcp_and_file_health_checks_fail_once_what_they_check_is_gone() {
    // SPEC's other two health kinds on real workers: a server that stops listening while its
    // process lives on, and a worker whose file goes away (health is checked once each is
    // ready: under load python takes a while to bind, and sh to touch). Each: health_failed, then an `unhealthy` exit counted as
    // a crash.
    let dir = TempDir::new();
    let port = free_port();
    let server = format!(
        "import socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen(8)\n\
         time.sleep(1); s.close(); time.sleep(60)"
    );
    let alive = dir.path("alive");
    let alive_text = alive.display().to_string();
    let config = json!({"workers": [
        {"name": "web", "command": ["python3", "-c", server], "restart": "never",
         "ready": {"tcp": port, "interval_ms": 20, "timeout_ms": 8000},
         "health": {"tcp": port, "interval_ms": 100, "failures": 2}},
        {"name": "batch", "restart": "never",
         "command": sh(&format!("touch {alive_text}; sleep 1; rm {alive_text}; exec sleep 60")),
         "ready": {"file": alive_text, "interval_ms": 20, "timeout_ms": 8000},
         "health": {"file": alive_text, "interval_ms": 100, "failures": 2}},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    for (name, error) in [
        ("web", format!("connect 127.0.0.1:{port}: ")),
        ("batch", format!("{alive_text}: ")),
    ] {
        let failed = fleet.wait_event_where("health_failed", |e| e["worker"] == name, BOUND);
        assert_eq!(failed["failures"], 2, "{failed}");
        assert!(
            failed["error"].as_str().unwrap().starts_with(&error),
            "{failed}"
        );
        let exited = fleet.wait_event_where("worker_exited", |e| e["worker"] == name, BOUND);
        assert_eq!(
            (&exited["likely_cause"], &exited["crash_count"]),
            (&json!("unhealthy"), &json!(1)),
            "{exited}"
        );
        let uptime = exited["uptime_ms"].as_u64().unwrap();
        assert!(uptime >= 1000, "healthy for its first second: {exited}");
    }
    // Both ended unhealthy and neither restarts: not a clean finish.
    assert_eq!(fleet.wait_exit(BOUND), 1);
}

#[test]
fn failing_health_checks_stop_the_worker_as_unhealthy_and_it_restarts() {
    let dir = TempDir::new();
    let config = json!({
        "workers": [{"name": "sick", "command": ["sleep", "30"], "backoff_initial_ms": 300,
            "health": {"command": ["sh", "-c", "echo probe-noise; exit 1"],
                       "interval_ms": 100, "failures": 2}}]
    });
    let mut fleet = start_config(&dir, &config, true);
    let ready = fleet.wait_event("worker_ready");
    let failed = fleet.wait_event("health_failed");
    assert_eq!(failed["failures"], 2);
    assert_eq!(failed["pid"], ready["pid"]);
    assert_eq!(failed["error"], "exited with code 1");
    let exited = fleet.wait_event("worker_exited");
    assert_eq!(exited["likely_cause"], "unhealthy");
    assert_eq!(exited["signal"], "SIGTERM");
    assert_eq!(exited["crash_count"], 1);
    assert_eq!(fleet.wait_event("backoff")["ms"], 300);
    fleet.wait_nth("worker_started", 2, BOUND);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    // A probe's stdout never reaches fleet-init's (JSON lines in config mode).
    assert!(
        !fleet.output.iter().any(|line| line.contains("probe-noise")),
        "{:?}",
        fleet.output
    );
}

#[test]
fn a_hanging_probe_is_killed_at_its_timeout_and_signals_still_go_through() {
    let dir = TempDir::new();
    let config = json!({
        "workers": [{"name": "api",
            "command": sh("trap 'echo got-usr1' USR1; echo up; while :; do sleep 30 & wait; done"),
            "health": {"command": ["sleep", "30"], "interval_ms": 100, "timeout_ms": 1000,
                       "failures": 2}}]
    });
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("up", BOUND);
    fleet.wait_event("worker_ready");
    // The first probe is in flight (started 100 ms after ready, hanging for 1 s).
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    fleet.signal(libc::SIGUSR1);
    fleet.wait_output("got-usr1", BOUND);
    let latency = sent.elapsed();
    assert!(
        latency < Duration::from_millis(500),
        "signal took {latency:?}"
    );
    let failed = fleet.wait_event("health_failed");
    assert_eq!(failed["error"], "timed out after 1000 ms");
    assert_eq!(failed["failures"], 2);
    assert_eq!(
        fleet.wait_event("worker_exited")["likely_cause"],
        "unhealthy"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn no_wake_ups_once_everything_is_ready() {
    let dir = TempDir::new();
    let flag = dir.path("flag");
    let config = json!({
        "workers": [
            {"name": "db", "command": sh(&format!("touch {}; exec sleep 30", flag.display())),
             "ready": {"file": flag, "interval_ms": 50}},
            {"name": "api", "command": ["sleep", "30"], "after": ["db"]},
            {"name": "once", "command": ["true"], "oneshot": true},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event_where("worker_ready", |e| e["worker"] == "api", BOUND);
    fleet.wait_event_where("worker_exited", |e| e["worker"] == "once", BOUND);
    assert!(wait_until_idle(fleet.pid, BOUND), "fleet-init never waited");
    let before = wake_ups(fleet.pid);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        wake_ups(fleet.pid),
        before,
        "woke up while everything was ready"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn a_failed_dependency_fails_its_dependents_out_loud() {
    let dir = TempDir::new();
    let config = json!({
        "workers": [
            {"name": "migrate", "command": ["false"], "oneshot": true, "max_crashes": 2,
             "backoff_initial_ms": 50, "on_max_crashes": "stop"},
            {"name": "api", "command": ["sleep", "30"], "after": ["migrate"]},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    let warn = fleet.wait_event("health_warn");
    assert_eq!(
        (
            &warn["worker"],
            &warn["reason"],
            &warn["dependency"],
            &warn["level"]
        ),
        (
            &json!("api"),
            &json!("dependency_failed"),
            &json!("migrate"),
            &json!("warn")
        )
    );
    // Nothing is left to run: the container ends, failed.
    assert_eq!(fleet.wait_exit(BOUND), 1);
    assert!(fleet
        .named("worker_started")
        .iter()
        .all(|e| e["worker"] == "migrate"));
}

fn check_config(dir: &TempDir, workers: Value) -> (i32, String) {
    let path = dir.write("check.json", &json!({ "workers": workers }).to_string());
    let mut fleet = subreaper(&["--check-config", path.to_str().unwrap()]).spawn();
    let code = fleet.wait_exit(BOUND);
    (code, fleet.stderr())
}

#[test]
fn bad_order_readiness_and_health_keys_are_config_errors() {
    let dir = TempDir::new();
    let cases = [
        (
            json!([{"name": "a", "command": ["true"], "after": ["ghost"]}]),
            r#"worker "a": key "after": no worker is named "ghost""#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "after": ["b"]},
                {"name": "b", "command": ["true"], "after": ["a"]}]),
            r#"worker "a": key "after": the start order has a cycle: "a" -> "b" -> "a""#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "ready": {"tcp": 80, "file": "/x"}}]),
            r#"worker "a": key "ready": needs exactly one check, got "tcp" and "file""#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "ready": {"interval_ms": 100}}]),
            r#"worker "a": key "ready": needs one of"#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "ready": {"notify_fd": 2}}]),
            r#"worker "a": key "ready": "notify_fd" must be a descriptor number from 3"#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "oneshot": true,
                 "health": {"command": ["true"]}}]),
            r#"worker "a": key "health": a oneshot runs to completion"#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "oneshot": "yes"}]),
            r#"worker "a": key "oneshot": must be true or false, got "yes""#,
        ),
        (
            json!([{"name": "a", "command": ["true"], "after": "b"}]),
            r#"worker "a": key "after": must be an array of worker names, got "b""#,
        ),
    ];
    for (workers, want) in cases {
        let (code, stderr) = check_config(&dir, workers.clone());
        assert_eq!(code, 2, "{workers}: {stderr}");
        assert!(stderr.contains(want), "{workers}:\n{stderr}\nwant: {want}");
    }
    // And with --config nothing starts.
    let marker = dir.path("started");
    let path = dir.write(
        "bad.json",
        &json!({"workers": [
            {"name": "a", "command": ["touch", marker], "after": ["a"]}]})
        .to_string(),
    );
    let mut fleet = pid1(&["--config", path.to_str().unwrap()]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 2);
    assert!(fleet.events.is_empty());
    assert!(!marker.exists());
}

#[test]
fn a_health_command_that_cannot_exec_is_named_in_health_failed() {
    let dir = TempDir::new();
    let config = json!({
        "workers": [{"name": "api", "command": ["sleep", "30"],
            "health": {"command": ["/no/such/healthz"], "interval_ms": 50, "failures": 1}}]
    });
    let mut fleet = start_config(&dir, &config, true);
    let failed = fleet.wait_event("health_failed");
    assert_eq!(
        failed["error"],
        "exec /no/such/healthz: No such file or directory"
    );
    assert_eq!(
        fleet.wait_event("worker_exited")["likely_cause"],
        "unhealthy"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn what_a_command_check_leaves_in_its_group_goes_when_it_exits() {
    // `sleep 8881 &` in a readiness check and `sleep 8882 &` in a health check stayed until
    // the shutdown: one more for every try, every interval.
    let dir = TempDir::new();
    let config = json!({
        "workers": [{"name": "api", "command": ["sleep", "30"],
            "ready": {"command": ["sh", "-c", "sleep 8881 & exit 0"], "interval_ms": 50},
            "health": {"command": ["sh", "-c", "sleep 8882 & exit 0"], "interval_ms": 50}}]
    });
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event("worker_ready");
    let left = || processes_running(&["sleep", "8881"]) + processes_running(&["sleep", "8882"]);
    // Health checks every 50 ms: without the kill, the sleeps pile up (8 after 400 ms); with
    // it, only a check in flight has one (2: one may be dying of its SIGKILL as we look).
    std::thread::sleep(Duration::from_millis(400));
    assert!(left() <= 2, "{} sleeps left by the checks", left());
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn a_tcp_check_beside_a_flood_into_a_fast_stdout_is_still_seen() {
    // A worker flooding short lines into a stdout that takes everything (here /dev/null) left
    // a backlog every turn, and the loop went round without its poll: the readiness check's
    // connect was never seen to complete, and timed out.
    let dir = TempDir::new();
    let port = free_port();
    let config = dir.write(
        "config.json",
        &json!({"state_dir": dir.path("state"), "workers": [
            {"name": "flood", "command": ["yes"]},
            {"name": "svc", "command": ["python3", listener_script(&dir), port.to_string(), "0.2"],
             "ready": {"tcp": port, "interval_ms": 50, "timeout_ms": 8000}}]})
        .to_string(),
    );
    let events = dir.path("events.jsonl");
    let _child = Guarded(
        pid1_command(&["--events", "stderr", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&events).unwrap())
            .spawn()
            .unwrap(),
    );
    let outcome = || {
        read_to_string(&events)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| {
                e["worker"] == "svc"
                    && (e["event"] == "worker_ready" || e["event"] == "health_failed")
            })
    };
    assert!(
        eventually(BOUND, || outcome().is_some()),
        "neither ready nor failed"
    );
    assert_eq!(
        outcome().unwrap()["event"],
        "worker_ready",
        "{}",
        outcome().unwrap()
    );
}
