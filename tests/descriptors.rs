//! What fleet-init does with descriptors it did not open: socket activation's LISTEN_PID names
//! the worker, and a single command's inherited descriptors are not kept open by fleet-init
//! once the command runs (as catatonit does), unless it will be started again.

mod common;

use common::*;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// A pipe whose write end the started command gets as descriptor 7.
fn pipe_as_fd7(start: Start) -> (Start, OwnedFd, OwnedFd) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    let raw = write.as_raw_fd();
    let start = start.pre_exec(move || {
        // SAFETY: dup2 between fork and exec, on a descriptor the parent keeps open.
        if unsafe { libc::dup2(raw, 7) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    });
    (start, read, write)
}

fn has_fd(pid: i32, fd: i32) -> bool {
    Path::new(&format!("/proc/{pid}/fd/{fd}")).exists()
}

#[test]
fn socket_activation_s_listen_pid_names_the_worker_when_it_named_fleet_init() {
    // As PID 1 of its namespace, fleet-init is pid 1: LISTEN_PID=1 is addressed to it.
    let script = "echo \"pid=$$ listen=$LISTEN_PID fds=$LISTEN_FDS\"; \
                  [ -e /proc/self/fd/7 ] && echo has-7; exit 0";
    let (start, _read, _write) = pipe_as_fd7(pid1(&["--", "sh", "-c", script]));
    let mut fleet = start.env("LISTEN_PID", "1").env("LISTEN_FDS", "1").spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let line = fleet
        .output
        .iter()
        .find(|l| l.starts_with("pid="))
        .cloned()
        .unwrap_or_default();
    let pid = line.split_whitespace().next().unwrap_or_default();
    let pid = pid.strip_prefix("pid=").unwrap_or_default();
    assert_ne!(pid, "1", "{line}");
    assert_eq!(line, format!("pid={pid} listen={pid} fds=1"));
    assert!(
        fleet.output.iter().any(|l| l == "has-7"),
        "{:?}",
        fleet.output
    );
}

#[test]
fn a_listen_pid_naming_another_process_reaches_the_worker_unchanged() {
    let script = "echo \"listen=$LISTEN_PID\"";
    let mut fleet = pid1(&["--", "sh", "-c", script])
        .env("LISTEN_PID", "4242")
        .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert!(
        fleet.output.iter().any(|l| l == "listen=4242"),
        "{:?}",
        fleet.output
    );
}

#[test]
fn a_single_command_s_inherited_descriptors_are_dropped_by_fleet_init_once_it_runs() {
    let (start, _read, _write) = pipe_as_fd7(pid1(&["--", "sh", "-c", "echo ready; sleep 30"]));
    let mut fleet = start.spawn();
    fleet.wait_output("ready", BOUND);
    assert!(
        eventually(BOUND, || !has_fd(fleet.pid, 7)),
        "fleet-init still holds descriptor 7"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 143);
}

#[test]
fn a_restarted_command_gets_its_inherited_descriptors_at_every_run() {
    let script = "[ -e /proc/self/fd/7 ] && echo has-7; exit 1";
    let (start, _read, _write) = pipe_as_fd7(pid1(&[
        "--restart",
        "on-failure",
        "--max-crashes",
        "2",
        "--",
        "sh",
        "-c",
        script,
    ]));
    let mut fleet = start.spawn();
    assert_eq!(fleet.wait_exit(BOUND), 1, "the last run's code");
    let runs = fleet.output.iter().filter(|l| *l == "has-7").count();
    assert_eq!(runs, 2, "{:?}", fleet.output);
}

#[test]
fn a_closed_standard_descriptor_is_opened_on_dev_null_before_anything_else() {
    // Rust's runtime did this before `main`; fleet-init starts without it. Without the check,
    // the first descriptor fleet-init opens (close-on-exec) would take number 0, and the
    // worker would start with no stdin at all.
    let mut fleet = pid1(&[
        "--",
        "sh",
        "-c",
        "echo \"stdin=$(readlink /proc/self/fd/0)\"",
    ])
    .pre_exec(|| {
        // SAFETY: close between fork and exec, in the test's child.
        unsafe { libc::close(0) };
        Ok(())
    })
    .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert!(
        fleet.output.iter().any(|l| l == "stdin=/dev/null"),
        "{:?}",
        fleet.output
    );
}

/// Whether `/proc/PID/fdinfo/FD` says close-on-exec (`flags:` is octal; O_CLOEXEC 02000000).
fn is_cloexec(pid: i32, fd: &str) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o2000000 != 0)
}

#[test]
fn every_descriptor_fleet_init_opens_is_close_on_exec() {
    // How fleet-init tells the descriptors it inherited (closed once a single command runs)
    // from its own: an inherited one cannot be close-on-exec, so every one of fleet-init's own
    // must be. Its descriptors while it holds the most kinds at once: the signalfd, the events'
    // private descriptor, the state dir, the control socket and a client's connection, a
    // worker's output pipes and another's readiness pipe.
    let dir = TempDir::new();
    let config = serde_json::json!({
        "workers": [
            {"name": "talker", "command": sh("echo up; exec sleep 30")},
            {"name": "waiter", "command": sh("exec sleep 30"), "output": "inherit",
             "ready": {"notify_fd": 3}},
        ]
    });
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event_where("output", |e| e["line"] == "up", BOUND);
    // A control client that sends nothing keeps its connection open on fleet-init's side.
    let state = fleet.state_dir.path("state");
    let _client = std::os::unix::net::UnixStream::connect(state.join("control.sock"))
        .expect("connect to the control socket");
    let fds = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", fleet.pid))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|fd| fd.parse::<i32>().is_ok_and(|fd| fd > 2))
                    .collect()
            })
            .unwrap_or_default()
    };
    let counts = |fds: &[String]| -> (usize, usize) {
        let targets: Vec<String> = fds
            .iter()
            .filter_map(|fd| std::fs::read_link(format!("/proc/{}/fd/{fd}", fleet.pid)).ok())
            .map(|t| t.display().to_string())
            .collect();
        let count = |kind: &str| targets.iter().filter(|t| t.starts_with(kind)).count();
        (count("socket:"), count("pipe:"))
    };
    // Two sockets (the listener, the client's accepted connection), and at least three pipes
    // of fleet-init's own (2 output, 1 readiness) besides the inherited ones.
    assert!(
        eventually(BOUND, || {
            let (sockets, pipes) = counts(&fds());
            sockets >= 2 && pipes >= 3
        }),
        "fleet-init's descriptors: {:?}",
        fds()
    );
    // What this test process passes on (cargo's jobserver pipe, the caller's leaks) fleet-init
    // inherited and keeps, workers being restartable: not its own.
    let target = |pid: &str, fd: &str| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok();
    let own_pid = std::process::id();
    let is_inherited = |fd: &String| {
        !is_cloexec(i32::try_from(own_pid).unwrap(), fd)
            && target("self", fd).is_some()
            && target("self", fd) == target(&fleet.pid.to_string(), fd)
    };
    let open: Vec<String> = fds().into_iter().filter(|fd| !is_inherited(fd)).collect();
    let leaking: Vec<&String> = open
        .iter()
        .filter(|fd| !is_cloexec(fleet.pid, fd))
        .collect();
    assert!(
        leaking.is_empty(),
        "not close-on-exec: {leaking:?} of {open:?}"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}
