//! Single-command mode (issue 2): fleet-init as a drop-in for `tini --`, run as PID 1 of its
//! own PID namespace unless a test says otherwise.

mod common;

use common::*;
use std::time::Duration;

fn run_pid1(args: &[&str]) -> (i32, Fleet) {
    let mut fleet = pid1(args).spawn();
    let code = fleet.wait_exit(BOUND);
    (code, fleet)
}

#[test]
fn exit_codes_follow_the_shell() {
    for (args, want) in [
        (vec!["--", "sh", "-c", "exit 0"], 0),
        (vec!["--", "sh", "-c", "exit 3"], 3),
        (vec!["--", "sh", "-c", "kill -SEGV $$"], 139),
        (vec!["--", "sh", "-c", "kill -TERM $$"], 143),
        (vec!["--", "/nonexistent/command"], 127),
        (vec!["--", "no-such-command-anywhere"], 127),
        (vec!["--", "/etc/passwd"], 126),
        (
            vec!["--remap-exit", "143", "--", "sh", "-c", "kill -TERM $$"],
            0,
        ),
        (vec!["--remap-exit", "3", "--", "sh", "-c", "exit 4"], 4),
    ] {
        let (code, fleet) = run_pid1(&args);
        assert_eq!(code, want, "{args:?}");
        let started = fleet.named("init_started");
        assert_eq!(started.len(), 1);
        assert_eq!(started[0]["pid"], 1, "runs as PID 1");
        assert_eq!(started[0]["mode"], "single");
        let exited = fleet.named("worker_exited");
        assert_eq!(exited.len(), 1, "{args:?}");
        assert_eq!(fleet.named("worker_started").len(), 1);
        assert_eq!(exited[0]["pid"], fleet.named("worker_started")[0]["pid"]);
    }
}

#[test]
fn exec_failures_are_reported_as_spawn_failed() {
    let (code, fleet) = run_pid1(&["--", "/nonexistent/command"]);
    assert_eq!(code, 127);
    let failed = fleet.named("spawn_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["error"],
        "exec /nonexistent/command: No such file or directory"
    );
    assert_eq!(
        fleet.named("worker_exited")[0]["likely_cause"],
        "spawn_failed"
    );
}

#[test]
fn a_thousand_orphans_are_reaped_as_pid1() {
    // The child double-forks 1,000 grandchildren that exit at once, waits (bounded) until it
    // is PID 1's only child again (orphans, zombie or not, are PID 1's children until reaped),
    // counts the zombies in the namespace, and exits 42.
    let script = r#"
        i=0
        while [ $i -lt 1000 ]; do ( true & ) ; i=$((i+1)); done
        i=0
        while [ $(grep -l '^PPid:[[:space:]]*1$' /proc/[0-9]*/status 2>/dev/null | wc -l) -gt 1 ] \
          && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done
        zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
        echo "zombies=$zombies"
        exit 42
    "#;
    let (code, fleet) = run_pid1(&["--", "sh", "-c", script]);
    assert_eq!(code, 42);
    assert!(
        fleet.output.iter().any(|l| l == "zombies=0"),
        "{:?}",
        fleet.output
    );
    let exited = fleet.named("worker_exited");
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["code"], 42);
}

#[test]
fn not_pid1_an_orphaned_grandchild_is_reaped_and_nothing_is_warned() {
    let dir = TempDir::new();
    let pid_file = dir.path("orphan.pid");
    let script = format!(
        r#"sh -c 'sleep 0.2 & echo $! > {file}'
           pid=$(cat {file});
           i=0; while [ -e /proc/$pid ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
           if [ -e /proc/$pid ]; then echo "orphan=$(cut -d' ' -f3 /proc/$pid/stat)"; else echo orphan=gone; fi"#,
        file = pid_file.display()
    );
    let mut fleet = subreaper(&["--", "sh", "-c", &script]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert!(
        fleet.output.iter().any(|l| l == "orphan=gone"),
        "{:?}",
        fleet.output
    );
    assert_eq!(fleet.stderr(), "", "no warning when not PID 1");
    assert_ne!(fleet.named("init_started")[0]["pid"], 1);
}

const TRAPS: &str = r#"
    for s in HUP USR1 USR2 WINCH; do trap "echo got-$s" $s; done
    trap 'echo got-TERM; exit 7' TERM
    echo ready
    while :; do sleep 0.05; done
"#;

#[test]
fn forwarded_signals_reach_the_child() {
    let mut fleet = pid1(&["--", "sh", "-c", TRAPS]).spawn();
    fleet.wait_output("ready", BOUND);
    for (signal, name) in [
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGWINCH, "WINCH"),
    ] {
        fleet.signal(signal);
        fleet.wait_output(&format!("got-{name}"), BOUND);
        let forwarded = fleet.wait_event_where(
            "signal_forwarded",
            |e| e["signal"] == format!("SIG{name}"),
            BOUND,
        );
        assert_eq!(forwarded["workers"], serde_json::json!(["sh"]));
    }
    fleet.signal(libc::SIGTERM);
    assert_eq!(
        fleet.wait_exit(BOUND),
        7,
        "the handler's exit code comes back"
    );
    assert!(fleet.output.iter().any(|l| l == "got-TERM"));
    let exited = fleet.named("worker_exited");
    assert_eq!(exited[0]["likely_cause"], "shutdown");
    assert_eq!(fleet.named("shutdown_complete")[0]["exit_code"], 7);
}

/// fleet-init as PID 1 over a child that ignores SIGTERM, once the child is ready.
fn stubborn_child(grace_ms: &str) -> Fleet {
    let script = "trap '' TERM; echo ready; while :; do sleep 0.05; done";
    let mut fleet = pid1(&["--grace-ms", grace_ms, "--", "sh", "-c", script]).spawn();
    fleet.wait_output("ready", BOUND);
    fleet
}

/// The host pid of fleet-init's only child (fleet-init being PID 1 of its own namespace).
fn only_child(fleet_pid: i32) -> i32 {
    let path = format!("/proc/{fleet_pid}/task/{fleet_pid}/children");
    let read = || -> Option<i32> {
        let text = std::fs::read_to_string(&path).ok()?;
        text.split_whitespace().next()?.parse().ok()
    };
    assert!(common::eventually(BOUND, || read().is_some()));
    read().unwrap()
}

#[test]
fn a_stopped_child_is_continued_so_that_it_acts_on_the_forwarded_sigterm() {
    // SPEC: each worker gets its stop signal, then SIGCONT so that a stopped process can act
    // on it. tini forwards SIGTERM alone (a stopped child then sits out the grace and is
    // killed); fleet-init adds SIGCONT for a child it saw stop, and only then, so that a
    // running child still sees exactly the signals it was sent.
    let script = "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    let mut fleet = pid1(&["--grace-ms", "60000", "--", "sh", "-c", script]).spawn();
    fleet.wait_output("ready", BOUND);
    let child = only_child(fleet.pid);
    let wake_ups = common::wake_ups(fleet.pid);
    // SAFETY: signalling the child of the fleet-init this test started.
    unsafe { libc::kill(child, libc::SIGSTOP) };
    let is_stopped = || {
        common::status_field(child, "State")
            .unwrap_or_default()
            .starts_with('T')
    };
    assert!(common::eventually(BOUND, is_stopped));
    // fleet-init was woken by the stop (SIGCHLD) and has gone back to sleep: it saw it.
    assert!(common::eventually(BOUND, || {
        common::wake_ups(fleet.pid) > wake_ups && common::wait_until_idle(fleet.pid, BOUND)
    }));
    assert!(is_stopped(), "nothing but the stop woke fleet-init");
    fleet.signal(libc::SIGTERM);
    assert_eq!(
        fleet.wait_exit(BOUND),
        7,
        "the handler ran: the child was continued"
    );
    assert!(fleet.output.iter().any(|l| l == "got-TERM"));
    let complete = &fleet.named("shutdown_complete")[0];
    assert_eq!(complete["killed"], 0);
    assert!(
        complete["duration_ms"].as_u64().unwrap() < 5000,
        "{complete}"
    );
}

#[test]
fn a_stop_and_a_sigterm_in_the_same_wake_up_still_get_the_child_continued() {
    // The same as above, with the child's stop and the SIGTERM arriving while fleet-init
    // cannot run (frozen), so that both wait for it in one wake-up: the SIGTERM is acted on
    // before the reap reports the stop. fleet-init looks at the child's state (waitid with
    // WNOWAIT) before it forwards a signal; it once forwarded SIGTERM alone here, and the
    // stopped child sat out the grace and was killed.
    let script = "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    let mut fleet = pid1(&["--grace-ms", "60000", "--", "sh", "-c", script]).spawn();
    fleet.wait_output("ready", BOUND);
    let child = only_child(fleet.pid);
    assert!(common::wait_until_idle(fleet.pid, BOUND));
    let frozen = match common::Frozen::freeze(fleet.pid) {
        Ok(frozen) => frozen,
        Err(reason) => {
            common::skip(
                "a_stop_and_a_sigterm_in_the_same_wake_up_still_get_the_child_continued",
                &reason,
            );
            return;
        }
    };
    let wake_ups = common::wake_ups(fleet.pid);
    // SAFETY: signalling the child of the fleet-init this test started.
    unsafe { libc::kill(child, libc::SIGSTOP) };
    assert!(common::eventually(BOUND, || {
        common::status_field(child, "State")
            .unwrap_or_default()
            .starts_with('T')
    }));
    fleet.signal(libc::SIGTERM);
    let pending = common::status_field(fleet.pid, "ShdPnd").unwrap_or_default();
    let pending = u64::from_str_radix(&pending, 16).unwrap_or(0)
        | u64::from_str_radix(
            &common::status_field(fleet.pid, "SigPnd").unwrap_or_default(),
            16,
        )
        .unwrap_or(0);
    let bit = |signal: i32| 1u64 << (signal - 1);
    assert_eq!(
        pending & (bit(libc::SIGCHLD) | bit(libc::SIGTERM)),
        bit(libc::SIGCHLD) | bit(libc::SIGTERM),
        "both wait for fleet-init (pending {pending:#x})"
    );
    assert_eq!(
        common::wake_ups(fleet.pid),
        wake_ups,
        "fleet-init did not run"
    );
    frozen.thaw();
    assert_eq!(
        fleet.wait_exit(BOUND),
        7,
        "the handler ran: the child was continued"
    );
    assert!(fleet.output.iter().any(|l| l == "got-TERM"));
    assert_eq!(fleet.named("shutdown_complete")[0]["killed"], 0);
}

#[test]
fn a_long_diagnostic_to_a_stderr_nobody_reads_never_blocks_pid1() {
    // The rule: PID 1 never blocks on a pipe. A spawn failure names the program at whatever
    // length it has; stderr is a pipe that is held open and never read. The diagnostic goes
    // out cut to one PIPE_BUF line through a non-blocking descriptor (it once went through a
    // blocking write of all of it, and fleet-init hung on the full pipe for good).
    let state = TempDir::new();
    let program = format!("/{}", "x".repeat(100_000));
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut child = common::Guarded(
        common::pid1_command(&["--events", "off", "--", &program])
            .env("FLEET_INIT_STATE_DIR", state.path("state"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(write_end))
            .spawn()
            .unwrap(),
    );
    let status = common::wait_child(&mut child, BOUND);
    assert!(
        status.is_some(),
        "fleet-init did not exit within {BOUND:?}: blocked on its stderr?"
    );
    let code = status.unwrap().code();
    assert!(matches!(code, Some(126 | 127)), "{code:?}");
    drop(child);
    let mut text = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    while let Ok(count) = nix::unistd::read(&read_end, &mut buffer) {
        if count == 0 {
            break;
        }
        text.extend_from_slice(&buffer[..count]);
    }
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .find(|l| l.starts_with("fleet-init: "))
        .unwrap_or_default();
    assert!(line.contains("/xxxx"), "{text:.200}");
    assert!(
        line.len() < 4096,
        "cut to one PIPE_BUF line: {}",
        line.len()
    );
}

#[test]
fn a_child_ignoring_sigterm_is_killed_when_the_grace_ends() {
    let mut fleet = stubborn_child("300");
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 137);
    let complete = &fleet.named("shutdown_complete")[0];
    let duration = complete["duration_ms"].as_u64().unwrap();
    assert!((300..3000).contains(&duration), "duration {duration}");
    assert!(complete["killed"].as_u64().unwrap() >= 1);
}

#[test]
fn a_second_sigterm_ends_the_grace_at_once() {
    let mut fleet = stubborn_child("60000");
    fleet.signal(libc::SIGTERM);
    fleet.wait_event("shutdown_started");
    fleet.signal(libc::SIGTERM);
    assert_eq!(
        fleet.wait_exit(BOUND),
        137,
        "killed long before the 60 s grace"
    );
    let duration = fleet.named("shutdown_complete")[0]["duration_ms"]
        .as_u64()
        .unwrap();
    assert!(duration < 5000, "duration {duration}");
}

#[test]
fn the_child_keeps_inherited_ignores_and_starts_unblocked() {
    // tini's test: start fleet-init with signals blocked and ignored; the child's status
    // shows SigBlk all zero and SigIgn with what fleet-init's parent ignored (SPEC: `nohup
    // fleet-init -- cmd` works), SIGPIPE included (fleet-init starts without Rust's runtime,
    // which ignored it), but for glibc's own signal 32.
    let mut fleet = pid1(&["--", "cat", "/proc/self/status"])
        .pre_exec(|| {
            // SAFETY: plain signal syscalls in the forked test child.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                for signal in [
                    libc::SIGHUP,
                    libc::SIGINT,
                    libc::SIGQUIT,
                    libc::SIGUSR1,
                    libc::SIGPIPE,
                    libc::SIGTERM,
                ] {
                    libc::signal(signal, libc::SIG_IGN);
                }
                // glibc's own signal 32, left ignored by the raw syscall as an ancestor might.
                let ignore = [1u64, 0, 0, 0];
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    32,
                    ignore.as_ptr(),
                    std::ptr::null::<u64>(),
                    8usize,
                );
            }
            Ok(())
        })
        .spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let field = |name: &str| {
        fleet
            .output
            .iter()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in {:?}", fleet.output))
    };
    assert_eq!(field("SigBlk"), "0000000000000000");
    // HUP 1, INT 2, QUIT 3, USR1 10, PIPE 13, TERM 15: bits 0, 1, 2, 9, 12, 14.
    assert_eq!(field("SigIgn"), "0000000000005207");
}

#[test]
fn fleet_init_itself_still_gets_sigterm_when_started_with_it_blocked() {
    let mut fleet = pid1(&["--", "sh", "-c", "echo ready; while :; do sleep 0.05; done"])
        .pre_exec(|| {
            // SAFETY: plain signal syscalls in the forked test child.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
            }
            Ok(())
        })
        .spawn();
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 143);
}

#[test]
fn idle_means_no_wake_ups() {
    let mut fleet = pid1(&["--", "sh", "-c", "echo ready; exec sleep 30"]).spawn();
    fleet.wait_output("ready", BOUND);
    fleet.wait_event("worker_started");
    let switches = || wake_ups(fleet.pid);
    // Start-up is over once fleet-init sleeps in its loop (the exec of sleep sends it nothing).
    assert!(wait_until_idle(fleet.pid, BOUND), "fleet-init never waited");
    let before = switches();
    std::thread::sleep(Duration::from_secs(2));
    let after = switches();
    assert_eq!(before, after, "fleet-init woke up while idle");
}

#[test]
fn pdeathsig_reaches_the_worker_when_fleet_init_dies() {
    let mut fleet = subreaper(&["--pdeathsig", "SIGTERM", "--", "sleep", "30"]).spawn();
    let started = fleet.wait_event("worker_started");
    let worker = started["pid"].as_i64().unwrap() as i32;
    assert!(is_alive(worker));
    // SAFETY: killing the fleet-init this test started.
    unsafe { libc::kill(fleet.pid, libc::SIGKILL) };
    fleet.wait_exit(BOUND);
    assert!(eventually(BOUND, || !is_alive(worker)), "worker survived");
}

#[test]
fn bad_input_gets_exit_2_and_one_line() {
    for (args, want) in [
        (vec![], "no command"),
        (vec!["--bogus", "--", "true"], "unknown option --bogus"),
        (
            vec!["--remap-exit", "300", "--", "true"],
            "--remap-exit: expected an exit code from 0 to 255, got \"300\"",
        ),
        (
            vec!["--pdeathsig", "BOGUS", "--", "true"],
            "--pdeathsig: unknown signal \"BOGUS\"",
        ),
        (
            vec!["--grace-ms", "-1", "--", "true"],
            "--grace-ms: expected milliseconds from 0 to 86400000, got \"-1\"",
        ),
        (vec!["--grace-ms"], "--grace-ms needs a value"),
        (
            vec!["--config", "/nonexistent.json"],
            "cannot read config file",
        ),
    ] {
        let mut fleet = subreaper(&args).spawn();
        assert_eq!(fleet.wait_exit(BOUND), 2, "{args:?}");
        let stderr = fleet.stderr();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("fleet-init: "), "{stderr:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr:?}");
        assert!(fleet.events.is_empty(), "nothing started for {args:?}");
    }
}

#[test]
fn version_and_help() {
    let mut fleet = subreaper(&["--version"]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(
        fleet.output,
        [format!("fleet-init {}", env!("CARGO_PKG_VERSION"))]
    );
    let mut fleet = subreaper(&["--help"]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert!(fleet.output.iter().any(|l| l.contains("--grace-ms")));
}

#[test]
fn a_setsid_escapee_of_a_dead_child_is_stopped_before_the_restart() {
    let dir = TempDir::new();
    let pids = dir.path("escapees");
    let script = format!("setsid sleep 1000 & echo $! >> {}; exit 0", pids.display());
    let mut fleet = pid1(&["--restart", "always", "--", "sh", "-c", &script]).spawn();
    let second = fleet.wait_nth("worker_started", 2, BOUND);
    assert_eq!(second["run"], 2);
    // The first run's escapee was stopped before run 2 started: its pid is not alive now,
    // and the /proc of the namespace is the one fleet-init sees.
    let escapee: i32 = read_to_string(&pids)
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let alive_in_namespace =
        std::fs::read_to_string(format!("/proc/{}/root/proc/{escapee}/stat", fleet.pid))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false);
    assert!(
        !alive_in_namespace,
        "escapee {escapee} of run 1 outlived it"
    );
    fleet.signal(libc::SIGTERM);
    fleet.wait_exit(BOUND);
}

#[test]
fn as_pid1_without_its_own_proc_nothing_foreign_is_read_or_signalled() {
    // `unshare --pid --fork` without --mount-proc: /proc shows the parent namespace.
    let dir = TempDir::new();
    let output = std::process::Command::new("timeout")
        .args([
            "20",
            "unshare",
            "--pid",
            "--fork",
            bin(),
            "--grace-ms",
            "200",
            "--events",
            "stdout",
            "--state-dir",
        ])
        .arg(dir.path("state"))
        .args([
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; sleep 0.2; kill -TERM 1; sleep 10",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(137),
        "SIGKILLed at the grace through kill(-1)"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("/proc is not this PID namespace's"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"event\":\"shutdown_complete\""),
        "{stdout}"
    );
}

#[test]
fn a_stdout_nobody_reads_never_blocks_pid1() {
    // The runtime's log reader stalls: fleet-init's stdout pipe fills with events from a
    // restart loop. It must still reap, and shut down on SIGTERM, rather than hang in write(2).
    let dir = TempDir::new();
    let config = dir.write(
        "spin.json",
        r#"{"workers": [{"name": "spin", "command": ["/bin/true"], "clean_restart_budget": 1000000}]}"#,
    );
    let mut child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", bin(), "--state-dir"])
        .arg(dir.path("state"))
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped()) // never read
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let unshare = child.id() as i32;
    let children = format!("/proc/{unshare}/task/{unshare}/children");
    assert!(eventually(BOUND, || !read_to_string(std::path::Path::new(
        &children
    ))
    .trim()
    .is_empty()));
    let fleet: i32 = read_to_string(std::path::Path::new(&children))
        .trim()
        .parse()
        .unwrap();
    // The premise, asserted rather than assumed after a sleep: the restart loop's events fill
    // the pipe (a few hundred restarts at ~200 bytes an event).
    let stdout = child.stdout.as_ref().unwrap();
    assert!(
        wait_until_pipe_is_full(stdout, BOUND),
        "fleet-init's events did not fill its stdout pipe within {BOUND:?}"
    );
    // SAFETY: signalling the fleet-init this test started.
    unsafe { libc::kill(fleet, libc::SIGTERM) };
    // The fleet-init (unshare's child) is gone when unshare's children list empties.
    let exited = eventually(BOUND, || !is_alive(fleet));
    if !exited {
        unsafe { libc::kill(fleet, libc::SIGKILL) };
    }
    let _ = child.wait();
    assert!(exited, "fleet-init hung writing events to a full pipe");
}

#[test]
fn fleet_init_starts_under_valgrind_which_keeps_a_signal_for_itself() {
    // valgrind reserves SIGRTMAX: a signal that cannot be taken is left out, not fatal.
    let dir = TempDir::new();
    let output = std::process::Command::new("valgrind")
        .args([
            "-q",
            "--error-exitcode=99",
            bin(),
            "--events",
            "stdout",
            "--state-dir",
        ])
        .arg(dir.path("state"))
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .expect("valgrind (.ci/run installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"event\":\"worker_exited\""), "{stdout}");
}

/// Bytes waiting in the pipe whose read end is `fd` (FIONREAD, see pipe(7)).
fn bytes_in_pipe(fd: std::os::fd::RawFd) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; fd is a pipe this test holds open.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut bytes) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(bytes).unwrap_or(0)
}

/// Waits (bounded) until the pipe read through `reader` is full as its writer sees it: no page
/// free, so poll(2) no longer reports it writable (pipe(7)), which is what makes fleet-init stop
/// writing. Asked through a second write end (/proc/self/fd/N opened for writing, as a FIFO)
/// that writes nothing. Then FIONREAD must be near the capacity (F_GETPIPE_SZ): a line that
/// does not fit in the last page's rest takes a page of its own, so a full pipe of ~200-byte
/// lines is some KiB short of it (60,305 of 65,536 bytes measured), never an eighth.
fn wait_until_pipe_is_full(reader: &impl std::os::fd::AsRawFd, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let fd = reader.as_raw_fd();
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the capacity in bytes.
    let capacity = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    let capacity = usize::try_from(capacity).expect("F_GETPIPE_SZ on a pipe");
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{fd}"))
        .expect("a second write end of the pipe");
    let is_writable = || {
        let mut pollfd = libc::pollfd {
            fd: writer.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut pollfd, 1, 0) };
        assert!(r >= 0, "poll: {}", std::io::Error::last_os_error());
        pollfd.revents & libc::POLLOUT != 0
    };
    if !eventually(timeout, || !is_writable()) {
        return false;
    }
    let queued = bytes_in_pipe(fd);
    assert!(
        queued > capacity - capacity / 8,
        "not writable with {queued} of {capacity} bytes queued"
    );
    true
}

/// The signal that wakes fleet-init from its one-syscall wait goes to the child before the
/// turn (catatonit's read-then-kill), and the turn does not send it again: fleet-init's own
/// kill(2) calls are counted with strace, one per signal, and its debug line says the signal
/// went ahead (the path under test, not the turn's).
#[test]
fn a_signal_sent_on_ahead_of_the_turn_reaches_the_child_once() {
    let dir = TempDir::new();
    let trace = dir.path("trace");
    let trace_arg = trace.display().to_string();
    let script = "trap 'echo got-HUP' HUP; trap 'echo got-TERM; exit 0' TERM; echo ready; \
                  while :; do sleep 0.05; done";
    let strace = [
        "strace",
        "-qq",
        "-o",
        &trace_arg,
        "-e",
        "trace=kill",
        "-e",
        "signal=none",
    ];
    let mut fleet = wrapped(&strace, &["--verbose", "--", "sh", "-c", script]).spawn();
    let init = fleet.wait_event("init_started")["pid"].as_i64().unwrap() as i32;
    let child = fleet.wait_event("worker_started")["pid"].as_i64().unwrap();
    fleet.wait_output("ready", BOUND);
    for (signal, line) in [(libc::SIGHUP, "got-HUP"), (libc::SIGTERM, "got-TERM")] {
        assert!(
            eventually(BOUND, || is_waiting_for_signals_only(init)),
            "fleet-init never slept in rt_sigtimedwait"
        );
        // SAFETY: signalling the fleet-init this test started.
        assert_eq!(unsafe { libc::kill(init, signal) }, 0);
        fleet.wait_output(line, BOUND);
    }
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let stderr = fleet.stderr();
    let calls = read_to_string(&trace);
    for name in ["SIGHUP", "SIGTERM"] {
        assert!(
            stderr.contains(&format!("sent {name} on ahead of the turn")),
            "{name} took the turn's path: {stderr}"
        );
        let to_child = calls
            .lines()
            .filter(|l| l.starts_with(&format!("kill(-{child}, {name})")))
            .count();
        assert_eq!(to_child, 1, "{name}: {calls}");
    }
}

#[test]
fn a_sigchld_ignored_by_whoever_started_fleet_init_loses_no_exit() {
    // A parent that ignores SIGCHLD (Python's `signal.signal(SIGCHLD, SIG_IGN)` before exec)
    // hands the disposition on; with it the kernel reaps fleet-init's children itself, and
    // fleet-init waited for ever for an exit it would never see. dumb-init exits 5 here.
    use std::os::unix::process::CommandExt;
    let state = TempDir::new();
    let mut command = std::process::Command::new(bin());
    command
        .args(["--events", "off", "--", "sh", "-c", "sleep 0.1; exit 5"])
        .env("FLEET_INIT_STATE_DIR", state.path("state"))
        .stdin(std::process::Stdio::null());
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = Guarded(command.spawn().unwrap());
    let status = wait_child(&mut child, BOUND).expect("fleet-init never saw the exit");
    assert_eq!(status.code(), Some(5));
}

#[test]
fn a_script_without_a_shebang_line_runs_under_bin_sh_as_with_execvp() {
    // The kernel refuses it (ENOEXEC); execvp(3), and so tini and dumb-init, run it with
    // /bin/sh. fleet-init once failed it with 126, breaking an entrypoint.sh without `#!`.
    let dir = TempDir::new();
    let script = dir.write("entrypoint.sh", "echo \"ran with $# args: $*\"\nexit 4\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut fleet = pid1(&["--", script.to_str().unwrap(), "a", "b c"]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 4);
    assert!(
        fleet.output.iter().any(|l| l == "ran with 2 args: a b c"),
        "{:?}",
        fleet.output
    );
    assert_eq!(fleet.named("spawn_failed").len(), 0);
}

#[test]
fn a_stopped_process_in_the_childs_group_is_continued_on_sigterm() {
    // `podman stop` of `sh -c 'sleep 1000 & kill -STOP $!; wait'`: the forwarded SIGTERM
    // reached the stopped sleep, which could not act on it, and the stop took the whole grace
    // and a SIGKILL. The group now gets SIGCONT after the signal when a member is stopped,
    // as each config worker's stop signal is followed by SIGCONT (SPEC).
    let mut fleet = pid1(&[
        "--grace-ms",
        "60000",
        "--",
        "sh",
        "-c",
        "sleep 1000 & kill -STOP $!; echo ready; wait",
    ])
    .spawn();
    fleet.wait_output("ready", BOUND);
    let child = only_child(fleet.pid);
    let stopped_sleep = || {
        std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
            .any(|pid| {
                common::status_field(pid, "State")
                    .unwrap_or_default()
                    .starts_with('T')
            })
    };
    assert!(
        common::eventually(BOUND, stopped_sleep),
        "the sleep is stopped"
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 143, "not the 60 s grace");
    assert_eq!(fleet.named("shutdown_complete")[0]["killed"], 0);
}

#[test]
fn a_child_killed_by_a_real_time_signal_exits_128_plus_its_number() {
    // It hung: the exit was lost in the reaper (nix has no name for signal 37), so PID 1 waited
    // for ever with no child, and a later SIGTERM made it exit 0.
    let mut fleet = pid1(&["--", "sh", "-c", "kill -37 $$; sleep 100"]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 165);
    // 37 is SIGRTMIN+3 to glibc and SIGRTMIN+2 to musl (the static build): its libc names it.
    let signal = fleet.named("worker_exited")[0]["signal"].clone();
    assert!(
        signal.as_str().unwrap_or_default().starts_with("SIGRTMIN+"),
        "{signal}"
    );
}
