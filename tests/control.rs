//! The control socket and `fleet-init ctl` (issue 13), with fleet-init as PID 1 of its own PID
//! namespace and `fleet-init ctl` run as a real client process: status, stop/start/restart,
//! signal, shutdown, ready, the peer-uid check, hostile and stalled clients, stale and planted
//! socket files, idle cost, and the client's usage errors and "nothing answers".

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Ctl {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ctl_in(state_dir: &Path, args: &[&str]) -> Ctl {
    ctl_command(state_dir, args)
        .output()
        .map(ctl_result)
        .unwrap()
}

fn ctl_command(state_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command
        .arg("ctl")
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("FLEET_INIT_STATE_DIR")
        .stdin(Stdio::null());
    command
}

fn ctl_result(output: Output) -> Ctl {
    Ctl {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn state_of(fleet: &Fleet) -> PathBuf {
    fleet.state_dir.path("state")
}

fn ctl(fleet: &Fleet, args: &[&str]) -> Ctl {
    ctl_in(&state_of(fleet), args)
}

/// `ctl status --json` as a value; asserts it succeeded.
fn status(fleet: &Fleet) -> Value {
    let out = ctl(fleet, &["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap()
}

fn worker<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// Waits (bounded) until `ctl status` shows `name` in `state`: a worker_exited event comes
/// before its group is found empty, and only then is it `stopped` or `completed`.
fn wait_state(fleet: &Fleet, name: &str, state: &str) {
    let deadline = Instant::now() + BOUND;
    loop {
        let now = status(fleet);
        if worker(&now, name)["state"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never {state}: {now}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(workers: Value) -> (TempDir, Fleet) {
    let dir = TempDir::new();
    let mut fleet = start_config(&dir, &json!({ "workers": workers }), true);
    fleet.wait_event("worker_started");
    // The socket is opened once the first workers are forked, a moment after their start.
    assert!(eventually(BOUND, || ctl(&fleet, &["status"]).code == 0));
    (dir, fleet)
}

fn service(name: &str) -> Value {
    json!({"name": name, "command": ["sleep", "1000"]})
}

fn exited_of(fleet: &Fleet, name: &str) -> Vec<Value> {
    fleet
        .named("worker_exited")
        .into_iter()
        .filter(|e| e["worker"] == name)
        .cloned()
        .collect()
}

#[test]
fn status_is_a_table_for_people_and_one_object_with_json() {
    let (_dir, mut fleet) = start(json!([
        service("api"),
        {"name": "job", "command": ["true"], "restart": "never"},
    ]));
    fleet.wait_event_where("worker_exited", |e| e["worker"] == "job", BOUND);
    let table = ctl(&fleet, &["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    for column in [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RUNS",
        "CRASHES",
        "LAST EXIT",
        "MEMORY",
    ] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    let state_at = lines[0].find("STATE").unwrap();
    assert!(lines[1].starts_with("api "), "{}", table.stdout);
    assert_eq!(lines[1].find("ready"), Some(state_at), "{}", table.stdout);
    assert_eq!(
        lines[2].find("completed"),
        Some(state_at),
        "{}",
        table.stdout
    );
    assert!(lines[2].contains("0 (clean_exit)"), "{}", table.stdout);

    let all = status(&fleet);
    assert_eq!(all["ok"], true);
    let api = worker(&all, "api");
    // api's own start: the two workers' exec reports may come in either order, api's even
    // after job's exit (waited for, not looked up among the lines read so far).
    let started = fleet.wait_event_where("worker_started", |e| e["worker"] == "api", BOUND);
    assert_eq!(api["pid"], started["pid"]);
    assert_eq!(api["state"], "ready");
    assert_eq!((&api["runs"], &api["crashes"]), (&json!(1), &json!(0)));
    assert!(api["uptime_ms"].is_u64());
    assert_eq!(api["last_exit"], Value::Null);
    assert_eq!(api["memory_bytes"], Value::Null);
    let job = worker(&all, "job");
    assert_eq!(
        (&job["state"], &job["pid"]),
        (&json!("completed"), &Value::Null)
    );
    assert_eq!(job["last_exit"], json!({"code": 0}));
    assert_eq!(job["likely_cause"], "clean_exit");

    let one = ctl(&fleet, &["status", "--json", "job"]);
    let one: Value = serde_json::from_str(one.stdout.trim()).unwrap();
    assert_eq!(one["workers"].as_array().unwrap().len(), 1);
    let unknown = ctl(&fleet, &["status", "nope"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no worker named \"nope\""),
        "{}",
        unknown.stderr
    );
    let event = fleet.wait_event_where("control", |e| e["ok"] == false, BOUND);
    assert_eq!(
        (&event["verb"], &event["peer_uid"]),
        (&json!("status"), &json!(0))
    );
}

#[test]
fn a_stopped_worker_is_no_crash_and_stays_down_across_its_backoff() {
    let dir = TempDir::new();
    let flag = dir.path("crashed");
    // The first run crashes (backoff 400 ms); later runs serve.
    let script = format!(
        "if [ ! -e {f} ]; then touch {f}; exit 3; fi; exec sleep 1000",
        f = flag.display()
    );
    let config = json!({"workers": [
        {"name": "api", "command": ["sh", "-c", script], "backoff_initial_ms": 400},
        service("db"),
    ]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event_where("backoff", |e| e["worker"] == "api", BOUND);
    // Stopped during its backoff: the pending restart is cancelled.
    let stop = ctl(&fleet, &["stop", "api"]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    // Stopped in its backoff, or while what is left of its crashed run is stopped.
    let said = stop.stdout.trim();
    assert!(["api: stopped", "api: stopping"].contains(&said), "{said}");
    wait_state(&fleet, "api", "stopped");
    std::thread::sleep(Duration::from_millis(1200)); // three backoffs: a restart would show
    assert_eq!(worker(&status(&fleet), "api")["state"], "stopped");
    let api_started = |f: &Fleet| {
        f.named("worker_started")
            .iter()
            .filter(|e| e["worker"] == "api")
            .count()
    };
    assert_eq!(api_started(&fleet), 1);

    // start: a new run, the history kept.
    assert_eq!(ctl(&fleet, &["start", "api"]).code, 0);
    let second = fleet.wait_event_where(
        "worker_started",
        |e| e["worker"] == "api" && e["run"] == 2,
        BOUND,
    );
    let api = worker(&status(&fleet), "api").clone();
    assert_eq!((&api["runs"], &api["crashes"]), (&json!(2), &json!(1)));
    assert_eq!(
        (&api["last_exit"], &api["likely_cause"]),
        (&json!({"code": 3}), &json!("crash"))
    );
    assert_eq!(api["pid"], second["pid"]);

    // A running worker: stop signal, `stopped`, crash count untouched.
    assert_eq!(ctl(&fleet, &["stop", "api", "db"]).code, 0);
    for name in ["api", "db"] {
        let exited = fleet.wait_event_where(
            "worker_exited",
            |e| e["worker"] == name && e["likely_cause"] == "stopped",
            BOUND,
        );
        assert_eq!(exited["signal"], "SIGTERM");
    }
    assert_eq!(exited_of(&fleet, "api").last().unwrap()["crash_count"], 1);
    wait_state(&fleet, "api", "stopped");
    wait_state(&fleet, "db", "stopped");
    let all = status(&fleet);
    assert_eq!(worker(&all, "api")["state"], "stopped");
    assert_eq!(worker(&all, "db")["state"], "stopped");
    assert_eq!(worker(&all, "api")["likely_cause"], "stopped");
    // Every worker stopped on request: fleet-init stays up, as supervisord does.
    assert!(wait_until_idle(fleet.pid, BOUND));
    assert!(is_alive(fleet.pid));
    assert!(fleet.named("shutdown_started").is_empty());
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn restart_stops_and_starts_at_once_without_a_crash() {
    let (_dir, mut fleet) = start(json!([service("api")]));
    let out = ctl(&fleet, &["restart", "api"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "api: restarting"),
        "{}",
        out.stderr
    );
    fleet.wait_event_where("worker_started", |e| e["run"] == 2, BOUND);
    let exited = &exited_of(&fleet, "api")[0];
    assert_eq!(
        (&exited["likely_cause"], &exited["crash_count"]),
        (&json!("stopped"), &json!(0))
    );
    let backoff = fleet.wait_event("backoff");
    assert_eq!(backoff["ms"], 0);
    assert_eq!(worker(&status(&fleet), "api")["runs"], 2);
}

#[test]
fn signal_reaches_the_worker_by_its_signal_target() {
    let dir = TempDir::new();
    let armed = dir.path("armed");
    let script = format!(
        "trap 'exit 42' HUP; touch {}; while :; do sleep 0.1; done",
        armed.display()
    );
    let config = json!({"workers": [
        {"name": "api", "command": ["sh", "-c", script]},
        service("db"),
        service("web"),
    ]});
    let mut fleet = start_config(&dir, &config, true);
    assert!(
        eventually(BOUND, || armed.exists()),
        "the trap was never set"
    );
    // The socket is opened once the first workers are forked: a worker can be up before it
    // (CI saw exit 3, "no control socket", three workers in).
    assert!(eventually(BOUND, || ctl(&fleet, &["status"]).code == 0));
    let out = ctl(&fleet, &["signal", "SIGHUP", "api"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "api: signalled"),
        "{}",
        out.stderr
    );
    let exited = fleet.wait_event_where("worker_exited", |e| e["worker"] == "api", BOUND);
    assert_eq!(exited["code"], 42);
    assert!(exited_of(&fleet, "db").is_empty(), "only the named worker");
    let event = fleet.wait_event_where("control", |e| e["verb"] == "signal", BOUND);
    assert_eq!(
        (&event["worker"], &event["ok"]),
        (&json!("api"), &json!(true))
    );
    // A worker that is not running: refused, exit 1.
    assert_eq!(ctl(&fleet, &["stop", "db"]).code, 0);
    wait_state(&fleet, "db", "stopped");
    let refused = ctl(&fleet, &["signal", "USR1", "db"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("db: not running (stopped)"),
        "{}",
        refused.stderr
    );
    // One delivered and one refused: exit 1, and the one delivered is said too (it was
    // signalled, and only the refusal was printed).
    let partial = ctl(&fleet, &["signal", "CONT", "web", "db"]);
    assert_eq!(
        (partial.code, partial.stdout.trim()),
        (1, "web: signalled"),
        "{}",
        partial.stderr
    );
    assert!(partial.stderr.contains("db: not running (stopped)"));
}

#[test]
fn shutdown_stops_everything_like_sigterm_and_removes_the_socket() {
    let (_dir, mut fleet) = start(json!([service("api"), service("db")]));
    let socket = state_of(&fleet).join("control.sock");
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());
    let mode = std::fs::symlink_metadata(&socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = ctl(&fleet, &["shutdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(fleet.named("shutdown_started")[0]["reason"], "ctl_shutdown");
    assert_eq!(fleet.named("shutdown_complete")[0]["exit_code"], 0);
    assert_eq!(exited_of(&fleet, "api")[0]["likely_cause"], "shutdown");
    assert!(!socket.exists(), "the socket goes with fleet-init");
    assert_eq!(ctl(&fleet, &["status"]).code, 3);
}

#[test]
fn ready_is_0_only_when_every_worker_is_ready_or_completed() {
    let (_dir, mut fleet) = start(json!([
        service("api"),
        {"name": "flaky", "command": ["sh", "-c", "exit 1"], "backoff_initial_ms": 60000},
    ]));
    fleet.wait_event_where("backoff", |e| e["worker"] == "flaky", BOUND);
    let backoff = ctl(&fleet, &["ready"]);
    assert_eq!(backoff.code, 1);
    assert!(
        backoff.stderr.contains("flaky (backoff)"),
        "{}",
        backoff.stderr
    );
    assert_eq!(ctl(&fleet, &["stop", "flaky"]).code, 0);
    wait_state(&fleet, "flaky", "stopped");
    let stopped = ctl(&fleet, &["ready"]);
    assert_eq!(stopped.code, 1, "a stopped worker is not ready");
    assert!(
        stopped.stderr.contains("flaky (stopped)"),
        "{}",
        stopped.stderr
    );
    let dir = TempDir::new();
    let mut fleet2 = start_config(
        &dir,
        &json!({"workers": [service("api"), {"name": "once", "command": ["true"], "restart": "never"}]}),
        true,
    );
    fleet2.wait_event_where("worker_exited", |e| e["worker"] == "once", BOUND);
    wait_state(&fleet2, "once", "completed");
    let ready = ctl(&fleet2, &["ready"]);
    assert_eq!(
        (ready.code, ready.stdout.trim()),
        (0, "ready"),
        "{}",
        ready.stderr
    );
    assert_eq!(ctl(&fleet2, &["stop", "api"]).code, 0);
    wait_state(&fleet2, "api", "stopped");
    assert_eq!(ctl(&fleet2, &["ready"]).code, 1);
    assert_eq!(ctl(&fleet2, &["start", "api"]).code, 0);
    assert_eq!(ctl(&fleet2, &["ready"]).code, 0);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

/// `fleet-init ctl` run as nobody (uid and gid 65534).
fn ctl_as_nobody(state_dir: &Path, args: &[&str]) -> Ctl {
    let mut command = ctl_command(state_dir, args);
    // SAFETY: plain syscalls in the forked child before exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().map(ctl_result).unwrap()
}

#[test]
fn a_client_of_another_uid_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        skip(
            "a_client_of_another_uid_is_refused",
            "needs root to become nobody",
        );
        return;
    }
    let (_dir, mut fleet) = start(json!([service("api")]));
    let state = state_of(&fleet);
    // The dir (0700) and the socket (0600) keep nobody out already...
    let out = ctl_as_nobody(&state, &["stop", "api"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    // ...and with both opened up, SO_PEERCRED still does.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o711)).unwrap();
    let socket = state.join("control.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ctl_as_nobody(&state, &["stop", "api"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("uid 65534 is neither root nor fleet-init's uid 0"),
        "{}",
        out.stderr
    );
    let event = fleet.wait_event_where("control", |e| e["peer_uid"] == 65534, BOUND);
    assert_eq!(event["ok"], false);
    assert_eq!(
        worker(&status(&fleet), "api")["state"],
        "ready",
        "nothing done"
    );
}

/// Sends SIGUSR1 to fleet-init and returns how long until its `signal_forwarded`.
fn forwarding_latency(fleet: &mut Fleet, nth: usize) -> Duration {
    let sent = Instant::now();
    fleet.signal(libc::SIGUSR1);
    fleet.wait_nth("signal_forwarded", nth, BOUND);
    sent.elapsed()
}

#[test]
fn stalled_and_hostile_clients_never_stall_pid1() {
    let (_dir, mut fleet) = start(json!([
        {"name": "api", "command": ["sh", "-c", "trap '' USR1; exec sleep 1000"]},
    ]));
    let socket = state_of(&fleet).join("control.sock");
    let quiet = forwarding_latency(&mut fleet, 1);
    // One that connects and sends nothing; one that sends a request and never reads.
    let silent = UnixStream::connect(&socket).unwrap();
    let mut deaf = UnixStream::connect(&socket).unwrap();
    deaf.write_all(b"{\"verb\":\"status\"}\n").unwrap();
    // One that sends 10 MB.
    let flood_path = socket.clone();
    let flood = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(flood_path).unwrap();
        stream.set_write_timeout(Some(BOUND)).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0;
        for _ in 0..10 {
            match stream.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        (sent, reply)
    });
    // 100 concurrent status calls.
    let state = state_of(&fleet);
    let callers: Vec<std::process::Child> = (0..100)
        .map(|_| {
            ctl_command(&state, &["status", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut latencies = Vec::new();
    for n in 2..=6 {
        latencies.push(forwarding_latency(&mut fleet, n));
    }
    let results: Vec<Ctl> = callers
        .into_iter()
        .map(|c| ctl_result(c.wait_with_output().unwrap()))
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.code != 0)
        .map(|r| format!("{}: {}", r.code, r.stderr))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 100 failed: {failed:?}",
        failed.len()
    );
    for result in &results {
        let reply: Value = serde_json::from_str(result.stdout.trim()).unwrap();
        assert_eq!(reply["workers"][0]["name"], "api");
    }
    let (sent, reply) = flood.join().unwrap();
    assert!(
        sent < 10 << 20,
        "the 10 MB were not all read: {sent} bytes went in"
    );
    assert!(
        reply.contains("larger than 65536 bytes") || reply.is_empty(),
        "{reply}"
    );
    let worst = latencies.iter().max().unwrap();
    println!("signal forwarding: quiet {quiet:?}, under load {latencies:?}");
    assert!(*worst < Duration::from_secs(2), "forwarding took {worst:?}");
    // Still answering, and the stalled ones are dropped at their deadline.
    assert_eq!(ctl(&fleet, &["status"]).code, 0);
    let mut buffer = [0u8; 16];
    silent
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let started = Instant::now();
    let dropped = loop {
        match (&silent).read(&mut buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    assert!(matches!(dropped, Ok(0)), "{dropped:?}");
    assert!(started.elapsed() < Duration::from_secs(7));
    drop(deaf);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn ctl_reaches_a_socket_whose_path_is_longer_than_sun_path() {
    // sun_path holds 108 bytes. The server binds through /proc/self/fd/N/control.sock; the
    // client once connected by the plain path and said "File name too long" (exit 3), so a
    // `ctl ready` probe on such a state dir always failed.
    let dir = TempDir::new();
    let state = dir.path(&format!("{}/{}", "d".repeat(60), "e".repeat(60)));
    assert!(state.join("control.sock").as_os_str().len() > 108);
    let config = dir.write(
        "config.json",
        &json!({"workers": [service("api")]}).to_string(),
    );
    let mut fleet = pid1(&[
        "--state-dir",
        state.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
    .spawn();
    fleet.wait_event("worker_started");
    assert!(eventually(BOUND, || state.join("control.sock").exists()));
    let out = ctl_in(&state, &["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(worker(&status, "api")["state"], "ready");
    // And a long path where nothing listens is the usual "no control socket" (exit 3).
    let missing = dir.path(&format!("{}/{}", "x".repeat(60), "y".repeat(60)));
    let out = ctl_in(&missing, &["status"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("no control socket at"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stale_socket_of_a_sigkilled_generation_is_replaced() {
    let dir = TempDir::new();
    let state = dir.path("state");
    let config = dir.write(
        "config.json",
        &json!({"workers": [service("api")]}).to_string(),
    );
    let args = ["--config", config.to_str().unwrap()];
    let state_text = state.to_str().unwrap();
    let mut first = pid1(&args).env("FLEET_INIT_STATE_DIR", state_text).spawn();
    first.wait_event("worker_started");
    first.signal(libc::SIGKILL);
    first.wait_exit(BOUND);
    let socket = state.join("control.sock");
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());
    let refused = ctl_in(&state, &["status"]);
    assert_eq!(refused.code, 3);
    assert!(
        refused.stderr.contains("connection refused"),
        "{}",
        refused.stderr
    );
    let mut second = pid1(&args).env("FLEET_INIT_STATE_DIR", state_text).spawn();
    second.wait_event("worker_started");
    assert!(second.named("control_unavailable").is_empty());
    let out = ctl_in(&state, &["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(BOUND), 0);
}

#[test]
fn a_live_socket_is_left_alone_and_a_planted_link_never_followed() {
    let dir = TempDir::new();
    let state = dir.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let outside = dir.write("outside", "precious");
    std::os::unix::fs::symlink(&outside, state.join("control.sock")).unwrap();
    let config = dir.write(
        "config.json",
        &json!({"workers": [service("api")]}).to_string(),
    );
    let args = ["--config", config.to_str().unwrap()];
    let state_text = state.to_str().unwrap();
    let mut first = pid1(&args).env("FLEET_INIT_STATE_DIR", state_text).spawn();
    first.wait_event("worker_started");
    let meta = std::fs::symlink_metadata(state.join("control.sock")).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "the link replaced by the socket"
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    // A second fleet-init on the same state dir finds a live socket: left alone, reported.
    let mut second = pid1(&args).env("FLEET_INIT_STATE_DIR", state_text).spawn();
    let unavailable = second.wait_event("control_unavailable");
    assert!(
        unavailable["error"]
            .as_str()
            .unwrap()
            .contains("another fleet-init is listening"),
        "{unavailable}"
    );
    second.wait_event("worker_started");
    let first_pid = first.named("worker_started")[0]["pid"].clone();
    let out = ctl_in(&state, &["status", "--json"]);
    let reply: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        reply["workers"][0]["pid"], first_pid,
        "the first one answers"
    );
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(BOUND), 0);
    assert!(
        state.join("control.sock").exists(),
        "not the second one's to remove"
    );
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(BOUND), 0);
}

#[test]
fn a_state_dir_that_cannot_be_made_says_why_for_the_socket_too() {
    // `docker run --user nobody` with the default state dir: the registry said "Permission
    // denied", and the control socket then "No such file or directory" (it only opened the
    // dir the registry had failed to make). Both give the cause now.
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.write(
        "config.json",
        &json!({"workers": [{"name": "a", "command": ["true"], "restart": "never"}]}).to_string(),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = dir.path("root-only/state");
    std::fs::create_dir(dir.path("root-only")).unwrap();
    std::fs::set_permissions(
        dir.path("root-only"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut fleet = common::wrapped(
        &[
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let persist = &fleet.named("handoff_persist_failed")[0];
    assert!(
        persist["error"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{persist}"
    );
    let control = &fleet.named("control_unavailable")[0];
    assert!(
        control["error"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{control}"
    );
}

#[test]
fn an_unusable_state_dir_means_no_socket_but_the_container_runs() {
    let dir = TempDir::new();
    let state = dir.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.write(
        "config.json",
        &json!({"workers": [service("api")]}).to_string(),
    );
    let args = ["--config", config.to_str().unwrap()];
    let mut fleet = pid1(&args)
        .env("FLEET_INIT_STATE_DIR", state.to_str().unwrap())
        .spawn();
    fleet.wait_event("worker_started");
    assert_eq!(fleet.named("control_unavailable").len(), 1);
    assert_eq!(ctl_in(&state, &["status"]).code, 3);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn idle_with_the_socket_open_costs_no_wake_ups() {
    let (_dir, fleet) = start(json!([service("api")]));
    assert_eq!(ctl(&fleet, &["status"]).code, 0);
    assert!(wait_until_idle(fleet.pid, BOUND), "fleet-init never waited");
    let before = wake_ups(fleet.pid);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wake_ups(fleet.pid), before, "fleet-init woke up while idle");
}

/// Idle with nothing to poll, the loop sleeps in one sigtimedwait, and a connection reaches it
/// as the kernel's SIGIO (O_ASYNC on the listener). That SIGIO is a wake-up, never forwarded:
/// a worker trapping SIGIO sees none for ten requests, and one a user sends with kill(2) still
/// goes through, as before.
#[test]
fn a_request_to_an_idle_fleet_init_wakes_it_and_its_sigio_reaches_no_worker() {
    let dir = TempDir::new();
    let got = dir.path("got-io");
    let ready = dir.path("ready");
    let script = format!(
        "trap 'echo io >> {got}' IO; touch {ready}; while :; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    // `inherit`: a jsonl worker's pipes would be polled, and the loop would not be signal-only.
    let trap = json!({"name": "trap", "output": "inherit", "command": ["sh", "-c", script]});
    let (_dir, mut fleet) = start(json!([trap]));
    assert!(eventually(BOUND, || ready.exists()), "the trap never set");
    assert!(wait_until_idle(fleet.pid, BOUND), "fleet-init never waited");
    assert!(
        is_waiting_for_signals_only(fleet.pid),
        "idle with only signals to wait for, the loop is not in sigtimedwait: {}",
        read_to_string(Path::new(&format!("/proc/{}/syscall", fleet.pid)))
    );
    for round in 0..10 {
        let out = ctl(&fleet, &["status", "--json"]);
        assert_eq!(out.code, 0, "request {round}: {}", out.stderr);
        assert!(wait_until_idle(fleet.pid, BOUND), "no sleep after {round}");
    }
    fleet.wait_nth("control", 10, BOUND);
    // The worker's loop runs 20 times a second: a SIGIO sent to it would be trapped by now.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!got.exists(), "the kernel's SIGIO was forwarded");
    fleet.signal(libc::SIGIO);
    assert!(
        eventually(BOUND, || std::fs::read_to_string(&got)
            .is_ok_and(|text| text.lines().count() == 1)),
        "a SIGIO sent with kill(2) did not reach the worker"
    );
    fleet.wait_event_where("signal_forwarded", |e| e["signal"] == "SIGIO", BOUND);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn ctl_usage_errors_exit_2() {
    let dir = TempDir::new();
    for (args, want) in [
        (&[][..], "no verb"),
        (&["frobnicate"][..], "unknown verb"),
        (&["stop"][..], "name at least one worker"),
        (&["signal", "NOSUCH", "api"][..], "unknown signal"),
        (&["signal", "HUP"][..], "name at least one worker"),
        (&["ready", "api"][..], "takes no worker names"),
        (&["status", "--yaml"][..], "unknown option"),
        (&["--timeout-ms", "-5", "status"][..], "--timeout-ms"),
    ] {
        let out = ctl_in(&dir.0, args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("fleet-init ctl --help"),
            "{}",
            out.stderr
        );
    }
    let help = ctl_in(&dir.0, &["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("status [--json] [WORKER...]"));
    let bad_env = Command::new(bin())
        .args(["ctl", "status"])
        .env("FLEET_INIT_STATE_DIR", "")
        .output()
        .unwrap();
    assert_eq!(bad_env.status.code(), Some(2));
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = read_to_string(Path::new(&format!("/proc/{pid}/stat")));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_accepting_rests_instead_of_spinning() {
    // accept(2) failing with EMFILE leaves the connection in the backlog and the listener
    // readable: polled again at once, fleet-init spun at ~0.8 CPU and wrote ~65,000 warnings a
    // second (the robustness audit). It now rests 250 ms between tries and says so once.
    let dir = TempDir::new();
    let config = dir.write(
        "config.json",
        &json!({"workers": [service("api")]}).to_string(),
    );
    let mut fleet = pid1(&["--config", config.to_str().unwrap()])
        .pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 24,
                rlim_max: 24,
            };
            // SAFETY: setrlimit in the forked test child, before exec.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
            Ok(())
        })
        .spawn();
    fleet.wait_event("worker_started");
    let socket = state_of(&fleet).join("control.sock");
    assert!(eventually(BOUND, || socket.exists()));
    let clients: Vec<std::os::unix::net::UnixStream> = (0..40)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    // Some of them were accepted, then the descriptors ran out (the precondition).
    let fds = format!("/proc/{}/fd", fleet.pid);
    assert!(
        eventually(BOUND, || std::fs::read_dir(&fds).map_or(0, |d| d.count())
            >= 24),
        "fleet-init never used up its 24 descriptors"
    );
    let before = cpu_ticks(fleet.pid);
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(fleet.pid) - before;
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    assert!(
        spent * 10 <= ticks_per_second,
        "{spent} ticks of CPU in 1 s with its descriptors used up"
    );
    drop(clients);
    // Descriptors free again: the next try accepts, and ctl is answered.
    assert!(eventually(BOUND, || ctl(&fleet, &["status"]).code == 0));
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let stderr = fleet.stderr();
    let warnings = stderr.matches("accept failed").count();
    assert_eq!(
        warnings, 1,
        "said once for the whole stretch: {stderr:.500}"
    );
}

#[test]
fn ctl_exits_3_when_nothing_answers() {
    let dir = TempDir::new();
    let missing = ctl_in(&dir.0, &["status"]);
    assert_eq!(missing.code, 3);
    assert!(
        missing.stderr.contains("no control socket at"),
        "{}",
        missing.stderr
    );
    // The state dir from the environment.
    let from_env = Command::new(bin())
        .args(["ctl", "ready"])
        .env("FLEET_INIT_STATE_DIR", &dir.0)
        .output()
        .unwrap();
    assert_eq!(from_env.status.code(), Some(3));
    let stale = dir.path("stale");
    std::fs::create_dir(&stale).unwrap();
    drop(UnixListener::bind(stale.join("control.sock")).unwrap());
    let refused = ctl_in(&stale, &["status"]);
    assert_eq!(refused.code, 3);
    assert!(
        refused.stderr.contains("connection refused"),
        "{}",
        refused.stderr
    );
    // A listener that never answers: the client's deadline.
    let mute = dir.path("mute");
    std::fs::create_dir(&mute).unwrap();
    let _listener = UnixListener::bind(mute.join("control.sock")).unwrap();
    let started = Instant::now();
    let silent = ctl_in(&mute, &["--timeout-ms", "300", "status"]);
    assert_eq!(silent.code, 3);
    assert!(silent.stderr.contains("no answer"), "{}", silent.stderr);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_single_command_answers_too_under_its_program_name() {
    let mut fleet = pid1(&["--", "sleep", "1000"]).spawn();
    fleet.wait_event("worker_started");
    let all = status(&fleet);
    assert_eq!(worker(&all, "sleep")["state"], "ready");
    let out = ctl(&fleet, &["signal", "TERM", "sleep"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // tini semantics: the child's death by the signal ends fleet-init with 128+15.
    assert_eq!(fleet.wait_exit(BOUND), 143);
    // A death by a signal fleet-init sent (here by request) is no crash (SPEC).
    let exited = &fleet.named("worker_exited")[0];
    assert_eq!(
        (&exited["likely_cause"], &exited["crash_count"]),
        (&json!("clean_exit"), &json!(0)),
        "{exited}"
    );
}

#[test]
fn an_escapee_that_ignores_the_stop_signal_gets_the_sigkill_its_group_got() {
    // The main process needed the SIGKILL at the end of the grace, while its setsid'd child
    // (ignoring SIGTERM) was still its child, out of reach; reparented to fleet-init, that
    // child was sent the stop signal only, and the worker was never started again.
    let escapee = ["sleep", "7013"];
    let script = "setsid sh -c 'trap \"\" TERM; echo escapee; exec sleep 7013' & \
                  trap '' TERM; sleep 1000";
    let (_dir, mut fleet) = start(json!([
        {"name": "both", "command": ["sh", "-c", script], "stop_grace_ms": 300}
    ]));
    fleet.wait_output("escapee", BOUND);
    // It says so just before its exec: its command line is the sleep's a moment later.
    assert!(eventually(BOUND, || pids_running(&escapee).len() == 1));
    let first = pids_running(&escapee)[0];
    assert_eq!(ctl(&fleet, &["restart", "both"]).code, 0);
    fleet.wait_event_where("worker_started", |e| e["run"] == 2, BOUND);
    let exited = &exited_of(&fleet, "both")[0];
    assert_eq!(
        (&exited["signal"], &exited["likely_cause"]),
        (&json!("SIGKILL"), &json!("stopped"))
    );
    assert!(!is_alive(first), "the first run's escapee is gone");
}
