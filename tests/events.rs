//! PID 1 never blocks on its events: a line is cut to PIPE_BUF, a full pipe drops lines (and
//! says how many on the next one), and the last line waits a little for a slow reader.

mod common;

use common::registry::*;
use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 20 handoff files of another boot whose boot id is 400 KB: 20 `reap_skipped` lines that
/// would be 8 MB uncut, more than a pipe holds even cut.
fn plant_huge_files(state: &std::path::Path) {
    let boot = "b".repeat(400_000);
    for n in 0..20 {
        let name = format!("handoff-{:032x}.json", n + 1);
        let mut handoff = handoff_of(json!([]), &boot);
        handoff["generation"] = json!(format!("{:032x}", n + 1));
        write_handoff(state, &name, &handoff);
    }
}

/// fleet-init as PID 1 with its events on a pipe the test reads only when it says so.
fn start_unread(state: &std::path::Path, ready: &std::path::Path) -> (Child, i32) {
    let script = format!("touch {}; exec sleep 1000", ready.display());
    let child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            bin(),
            "--events",
            "stdout",
            "--state-dir",
        ])
        .arg(state)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unshare = child.id() as i32;
    let children = format!("/proc/{unshare}/task/{unshare}/children");
    let first_child = || {
        read_to_string(std::path::Path::new(&children))
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
    };
    assert!(eventually(BOUND, || first_child().is_some()));
    let init = first_child().unwrap();
    (child, init)
}

fn wait_bounded(child: &mut Child, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn a_full_pipe_never_blocks_pid1_and_the_last_line_says_what_was_dropped() {
    let dir = TempDir::new();
    let state = dir.path("state");
    plant_huge_files(&state);
    let ready = dir.path("ready");
    let (mut child, init) = start_unread(&state, &ready);
    // The start-up reap wrote 20 cut lines into a pipe nobody read: the worker still started.
    assert!(
        eventually(BOUND, || ready.exists()),
        "PID 1 blocked on its events"
    );
    let mut stdout = child.stdout.take().unwrap();
    let pipe_fd = std::os::fd::AsRawFd::as_raw_fd(&stdout);
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe we own, into an int.
    unsafe { libc::ioctl(pipe_fd, libc::FIONREAD, &mut queued) };
    // SAFETY: F_GETPIPE_SZ on a pipe we own.
    let capacity = unsafe { libc::fcntl(pipe_fd, libc::F_GETPIPE_SZ) };
    // Full by the pipe's own measure: every one of its pages holds a line (a line never
    // shares a page it does not fit in), and events_dropped below shows writes were refused.
    assert!(
        capacity - queued < 2 * 4096,
        "the premise: the pipe is full ({queued} of {capacity})"
    );
    // SAFETY: signalling the init this test started.
    unsafe { libc::kill(init, libc::SIGTERM) };
    // A slow reader: it starts reading while the last line waits for room.
    std::thread::sleep(Duration::from_millis(200));
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let code = wait_bounded(&mut child, BOUND);
    assert_eq!(
        code,
        Some(143),
        "fleet-init ends on SIGTERM however full its pipe"
    );
    let text = reader.join().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:.200}")))
        .collect();
    assert!(lines.iter().all(|l| l.to_string().len() <= 4096));
    assert!(lines.iter().any(|l| l["truncated"] == true));
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "shutdown_complete", "{last}");
    assert!(last["events_dropped"].as_u64().unwrap_or(0) >= 1, "{last}");
}

/// `init_started` is held until the first workers are forked (as PID 1 its write then overlaps
/// their exec); whatever fleet-init has to say before that (a corrupt handoff file met by the
/// start-up reap; not PID 1, the registry's first write) writes it first. Either way it is the
/// first line, and the only one.
#[test]
fn init_started_is_the_first_line_whether_or_not_the_start_has_something_to_say() {
    for (as_pid1, has_leftover) in [(true, false), (true, true), (false, false)] {
        let dir = TempDir::new();
        let state = dir.path("state");
        if has_leftover {
            std::fs::create_dir_all(&state).unwrap();
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::write(state.join("handoff-5-5.json"), b"{\"version\": 2, \"entr").unwrap();
        }
        let config = json!({"workers": [
            {"name": "w", "command": sh("exit 0"), "restart": "never"}
        ]});
        let path = dir.write("config.json", &config.to_string());
        let args = [
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            path.to_str().unwrap(),
        ];
        let mut fleet = if as_pid1 {
            pid1(&args)
        } else {
            subreaper(&args)
        }
        .spawn();
        assert_eq!(fleet.wait_exit(BOUND), 0);
        let names: Vec<&str> = fleet
            .events
            .iter()
            .filter_map(|event| event["event"].as_str())
            .collect();
        let context = format!("PID 1 {as_pid1}, leftover {has_leftover}: {names:?}");
        assert_eq!(names.first(), Some(&"init_started"), "{context}");
        assert_eq!(
            names.iter().filter(|name| **name == "init_started").count(),
            1,
            "{context}"
        );
        let position = |wanted: &str| names.iter().position(|name| *name == wanted);
        assert!(position("worker_started").is_some(), "{context}");
        let said_first = if has_leftover {
            "handoff_corrupt"
        } else if !as_pid1 {
            "handoff_persisted"
        } else {
            "worker_started"
        };
        assert!(
            position(said_first) <= position("worker_started"),
            "{context}"
        );
        assert!(position(said_first).is_some(), "{context}");
    }
}
