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
