//! Worker output as JSON lines (`output: "jsonl"`, the config-mode default), fleet-init as
//! PID 1: exact text round trip, stderr on stderr, two floods that never tear or mix a line,
//! a stalled reader that blocks the workers but not fleet-init, and the lines of a worker's
//! setsid'd child.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `output` events of `worker` on `stream`, from lines of fleet-init's stdout or stderr.
fn output_events<'a>(lines: impl Iterator<Item = &'a str>, worker: &str) -> Vec<Value> {
    lines
        .filter(|line| line.starts_with("{\"ts\""))
        .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
        .filter(|event| event["event"] == "output" && event["worker"] == worker)
        .collect()
}

/// The text of an output event: `line`, or the embedded object as written.
fn text_of(event: &Value) -> String {
    match event.get("line") {
        Some(line) => line.as_str().unwrap().to_string(),
        None => event["json"].to_string(),
    }
}

#[test]
fn text_round_trips_exactly_and_stderr_stays_on_stderr() {
    let dir = TempDir::new();
    // printf's octal escapes: \303\251 is é, \342\202\254 is €, \377\376 are invalid bytes.
    let script = r#"
        printf '%s\n' 'plain ascii "quoted" \back\slash	tab'
        printf 'h\303\251llo \342\202\254 \360\237\230\200\n'
        printf 'bad \377\376 bytes\n'
        echo '{"level":"warn", "msg":"embedded", "n":[1, 2.50]}'
        echo '{"not":"closed"'
        head -c 40000 /dev/zero | tr '\0' 'x'; echo
        echo to-stderr >&2
        printf 'last without newline'
    "#;
    let config =
        json!({"workers": [{"name": "talker", "command": sh(script), "restart": "never"}]});
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let events: Vec<Value> = fleet
        .events
        .iter()
        .filter(|e| e["event"] == "output" && e["worker"] == "talker")
        .cloned()
        .collect();
    let texts: Vec<String> = events.iter().map(text_of).collect();
    let long = "x".repeat(40_000);
    let want = vec![
        "plain ascii \"quoted\" \\back\\slash\ttab".to_string(),
        "héllo € 😀".to_string(),
        "bad \u{fffd}\u{fffd} bytes".to_string(),
        r#"{"level":"warn","msg":"embedded","n":[1,2.5]}"#.to_string(),
        r#"{"not":"closed""#.to_string(),
        long[..16_384].to_string(),
        long[..16_384].to_string(),
        long[..40_000 - 2 * 16_384].to_string(),
        "last without newline".to_string(),
    ];
    assert_eq!(texts, want);
    // The embedded object is the worker's text byte for byte, not a re-serialisation.
    let raw_line = raw_stdout_line_with("embedded");
    assert!(
        raw_line.contains(r#""json":{"level":"warn", "msg":"embedded", "n":[1, 2.50]}}"#),
        "{raw_line}"
    );
    assert!(events[3].get("line").is_none());
    assert_eq!(events[4].get("json"), None, "an unclosed object is a line");
    // The long line: 16 KiB pieces, `partial` on all but the last, rejoinable.
    let partial: Vec<bool> = events[5..8].iter().map(|e| e["partial"] == true).collect();
    assert_eq!(partial, [true, true, false]);
    assert!(events
        .iter()
        .all(|e| e["stream"] == "stdout" && e["level"] == "info"));
    assert!(events[8].get("partial").is_none());
    // stderr lines on fleet-init's stderr, as output events; none of them on stdout.
    let stderr = fleet.stderr();
    let errors = output_events(stderr.lines(), "talker");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(errors[0]["line"], "to-stderr");
    assert_eq!(errors[0]["stream"], "stderr");
    assert!(!fleet.output.iter().any(|l| l.contains("to-stderr")));
    // The summary stays the last line.
    assert_eq!(fleet.events.last().unwrap()["event"], "shutdown_complete");
}

/// The harness parses stdout lines, which loses the embedded object's exact text: a fresh run
/// of a worker that writes the object, read raw, gives the line holding `needle`.
fn raw_stdout_line_with(needle: &str) -> String {
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "raw", "restart": "never",
        "command": sh(r#"echo '{"level":"warn", "msg":"embedded", "n":[1, 2.50]}'"#)}]});
    let path = dir.write("config.json", &config.to_string());
    let output = Command::new("timeout")
        .args([
            "10",
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            bin(),
            "--config",
        ])
        .arg(&path)
        .env("FLEET_INIT_STATE_DIR", dir.path("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle}: {stdout}"))
        .to_string()
}

#[test]
fn two_floods_at_once_never_tear_or_mix_a_line() {
    let dir = TempDir::new();
    // sed writes in blocks, so lines straddle the reads; each worker's own tag and padding.
    let flood = |tag: &str| {
        sh(&format!(
            "seq 1 100000 | sed 's/^/{tag}-/; s/$/-{}/'",
            tag.repeat(40)
        ))
    };
    let config = json!({"workers": [
        {"name": "alpha", "command": flood("a"), "restart": "never"},
        {"name": "beta", "command": flood("b"), "restart": "never"},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(Duration::from_secs(60)), 0);
    // A torn line would not parse as an event and land in `output` as raw text.
    let raw: Vec<&String> = fleet
        .output
        .iter()
        .filter(|l| !l.starts_with("a-") && !l.starts_with("b-"))
        .collect();
    assert!(
        raw.is_empty(),
        "lines that were not events: {:?}",
        &raw[..raw.len().min(5)]
    );
    for (worker, tag) in [("alpha", "a"), ("beta", "b")] {
        let texts: Vec<String> = fleet
            .events
            .iter()
            .filter(|e| e["event"] == "output" && e["worker"] == worker)
            .map(text_of)
            .collect();
        assert_eq!(texts.len(), 100_000, "{worker}");
        let padding = tag.repeat(40);
        for (index, text) in texts.iter().enumerate() {
            assert_eq!(*text, format!("{tag}-{}-{padding}", index + 1), "{worker}");
        }
    }
    assert_eq!(fleet.events.last().unwrap()["event"], "shutdown_complete");
}

#[test]
fn a_setsid_child_writes_to_the_workers_pipe_after_the_worker_is_gone() {
    let dir = TempDir::new();
    let up = dir.path("escapee-up");
    let script = format!(
        "setsid sh -c 'trap \"echo escapee-term; exit 0\" TERM; echo escapee-up; \
         echo 1 > {up}; while :; do sleep 0.01; done' & \
         while [ ! -s {up} ]; do sleep 0.01; done; echo main-done",
        up = up.display()
    );
    let config =
        json!({"workers": [{"name": "parent", "command": sh(&script), "restart": "never"}]});
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let position = |name: &str, text: &str| {
        fleet
            .events
            .iter()
            .position(|e| e["event"] == name && (text.is_empty() || e["line"] == text))
            .unwrap_or_else(|| panic!("no {name} {text}: {:?}", fleet.events))
    };
    let exited = position("worker_exited", "");
    let term = position("output", "escapee-term");
    assert!(position("output", "escapee-up") < exited);
    assert!(position("output", "main-done") < exited);
    // Written by the escapee when it was stopped, after the worker's main process was gone.
    assert!(term > exited, "{:?}", fleet.events);
    assert_eq!(fleet.events[term]["worker"], "parent");
    assert_eq!(fleet.events[term]["stream"], "stdout");
}

#[test]
fn an_idle_jsonl_worker_costs_no_wake_ups() {
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "idle", "command": sh("echo up; exec sleep 1000")}]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("up", BOUND);
    assert!(wait_until_idle(fleet.pid, BOUND), "fleet-init never waited");
    let before = wake_ups(fleet.pid);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wake_ups(fleet.pid), before, "fleet-init woke up while idle");
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

/// fleet-init's descriptors that are pipes.
fn pipe_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("pipe:"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_health_command_of_a_jsonl_worker_gets_no_pipes_of_its_own() {
    let dir = TempDir::new();
    let runs = dir.path("runs");
    let probe = format!("echo probe-said >&2; echo run >> {}", runs.display());
    let config = json!({"workers": [{"name": "checked", "command": sh("echo up; exec sleep 1000"),
        "health": {"command": ["sh", "-c", probe], "interval_ms": 100}}]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("up", BOUND);
    let probes_run = |n: usize| eventually(BOUND, || read_to_string(&runs).lines().count() >= n);
    assert!(probes_run(2));
    let pipes = pipe_count(fleet.pid);
    assert!(probes_run(8));
    // A probe in flight holds its report pipe (and, before the fix, two output pipes stayed
    // for every run).
    assert!(
        pipe_count(fleet.pid) <= pipes + 1,
        "pipes grew from {pipes} to {}",
        pipe_count(fleet.pid)
    );
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    // The probe's stderr is fleet-init's own, as with any probe.
    assert!(fleet.stderr().contains("probe-said"));
}

#[test]
fn a_single_command_keeps_its_output_untouched() {
    let mut fleet = pid1(&["--", "sh", "-c", "printf 'raw line\\n'"]).spawn();
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(fleet.output, ["raw line"]);
    assert!(fleet.named("output").is_empty());
}

#[test]
fn a_bad_output_value_is_a_config_error_naming_worker_and_key() {
    let dir = TempDir::new();
    for (value, shown) in [
        (json!("json"), "\"json\""),
        (json!(true), "true"),
        (json!(null), "null"),
    ] {
        let config = json!({"workers": [{"name": "api", "command": ["true"], "output": value}]});
        let mut fleet = start_config(&dir, &config, true);
        assert_eq!(fleet.wait_exit(BOUND), 2);
        let stderr = fleet.stderr();
        let want = format!(
            "worker \"api\": key \"output\": must be one of \"inherit\", \"jsonl\", got {shown}"
        );
        assert!(stderr.contains(&want), "{stderr}");
        assert!(fleet.named("worker_started").is_empty());
    }
}

/// SIGKILLs a namespace's init (and so everything in it) unless disarmed.
struct KillOnDrop {
    pid: i32,
    is_armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.is_armed {
            // SAFETY: killing the init this test started; it has not been waited for.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// The children of `pid` as the host sees them.
fn children_of(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    read_to_string(std::path::Path::new(&path))
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn worker_name_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"FLEET_INIT_WORKER="))
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// Whether `pid` is blocked in write(2) (/proc/PID/syscall names the call it sleeps in).
fn is_blocked_in_write(pid: i32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let number: Option<libc::c_long> = text.split_whitespace().next().and_then(|n| n.parse().ok());
    number == Some(libc::SYS_write)
}

fn bytes_in_pipe(fd: i32) -> i32 {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let result = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) };
    assert_eq!(result, 0, "FIONREAD");
    count
}

#[test]
fn a_stalled_reader_blocks_the_workers_not_fleet_init_and_loses_nothing() {
    let dir = TempDir::new();
    let lines = 150_000;
    // The flood ignores SIGTERM while it writes, so that every line it means to write is
    // written; then it sleeps until the grace ends (its SIGKILL ends the shutdown).
    let flood = format!(
        "trap '' TERM; i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo line-$i; done; \
         echo flood-done; exec sleep 1000"
    );
    // A worker that writes nothing and stops at SIGTERM: the proof that signals are handled
    // while the output is stalled.
    let quiet = "exec sleep 1000";
    let grace_ms = 4000;
    let config = json!({"grace_ms": grace_ms, "workers": [
        {"name": "flood", "command": sh(&flood)},
        {"name": "quiet", "command": sh(quiet)},
    ]});
    let path = dir.write("config.json", &config.to_string());
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", bin(), "--config"])
        .arg(&path)
        .env("FLEET_INIT_STATE_DIR", dir.path("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader_fd = stdout.as_raw_fd();
    // fleet-init enlarges its stdout pipe when it starts writing output: ask each time.
    // SAFETY: F_GETPIPE_SZ only reads the pipe's size.
    let capacity = || unsafe { libc::fcntl(reader_fd, libc::F_GETPIPE_SZ) };
    let unshare = child.id() as i32;
    let init = std::cell::Cell::new(0);
    assert!(eventually(BOUND, || {
        init.set(children_of(unshare).first().copied().unwrap_or(0));
        init.get() > 0
    }));
    let init = init.get();
    // A failed assertion must not leave this namespace running (a flood that ignores TERM).
    let mut guard = KillOnDrop {
        pid: init,
        is_armed: true,
    };
    let find = |name: &str| {
        children_of(init)
            .into_iter()
            .find(|pid| worker_name_of(*pid).as_deref() == Some(name))
            .unwrap_or(0)
    };
    let pids = std::cell::Cell::new((0, 0));
    assert!(eventually(BOUND, || {
        pids.set((find("flood"), find("quiet")));
        pids.get().0 > 0 && pids.get().1 > 0
    }));
    let (flood_pid, quiet_pid) = pids.get();
    // Nobody reads: fleet-init's stdout fills, then its pending lines, then the worker's pipe.
    assert!(
        // Full: every page of the pipe in use, the last ones not always to the byte.
        eventually(BOUND, || bytes_in_pipe(reader_fd) >= capacity() / 10 * 9),
        "stdout never filled: {} of {}",
        bytes_in_pipe(reader_fd),
        capacity()
    );
    assert!(
        eventually(BOUND, || is_blocked_in_write(flood_pid)),
        "the flooding worker is not blocked in write"
    );
    // Still blocked a moment later: it makes no progress while nobody reads.
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_blocked_in_write(flood_pid));
    assert!(
        wait_until_idle(init, BOUND),
        "fleet-init is not asleep in its poll"
    );

    // SIGTERM while stalled: fleet-init acts on it (the quiet worker is stopped) at once.
    let signalled = Instant::now();
    // SAFETY: signalling the fleet-init this test started.
    assert_eq!(unsafe { libc::kill(init, libc::SIGTERM) }, 0);
    assert!(
        eventually(BOUND, || !is_alive(quiet_pid)),
        "the quiet worker was not stopped while the output was stalled"
    );
    // The reader resumes: every line the worker wrote comes out, then the summary, last.
    std::thread::sleep(Duration::from_millis(300));
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    let status = child.wait().unwrap();
    guard.is_armed = false;
    let elapsed = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        elapsed < Duration::from_millis(grace_ms + 3000),
        "took {elapsed:?} after SIGTERM"
    );
    let events: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is an event"))
        .collect();
    let flood_lines: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "output" && e["worker"] == "flood")
        .map(text_of)
        .collect();
    let mut want: Vec<String> = (1..=lines).map(|i| format!("line-{i}")).collect();
    want.push("flood-done".to_string());
    assert_eq!(flood_lines.len(), want.len());
    assert!(flood_lines == want, "lines lost or out of order");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "shutdown_complete");
    assert!(last.get("output_lines_lost").is_none(), "{last}");
    assert!(events.iter().any(|e| e["event"] == "shutdown_started"));
}

/// fleet-init (PID 1) whose stdout is a file on a small tmpfs that is full by the time its
/// worker writes 200 lines: returned once fleet-init has said the disk is full.
struct FullDisk {
    dir: TempDir,
    disk: common::registry::Tmpfs,
    fleet: Guarded,
    diagnostics: std::sync::mpsc::Receiver<String>,
}

impl FullDisk {
    fn start(grace_ms: u64) -> FullDisk {
        let dir = TempDir::new();
        let disk = common::registry::Tmpfs::mount(dir.path("disk"), "size=256k,mode=0700");
        let (go, written) = (dir.path("go"), dir.path("written"));
        let script = format!(
            "while [ ! -e {go} ]; do sleep 0.02; done; i=0; \
             while [ $i -lt 200 ]; do echo \"line-$i $(printf '%080d' $i)\"; i=$((i+1)); done; \
             touch {written}; exec sleep 1000",
            go = go.display(),
            written = written.display()
        );
        let config = dir.write(
            "config.json",
            &json!({"state_dir": dir.path("state"), "grace_ms": grace_ms, "workers": [
                {"name": "w", "command": ["sh", "-c", script]}]})
            .to_string(),
        );
        let mut fleet = Guarded(
            pid1_command(&["--config", config.to_str().unwrap()])
                .stdout(std::fs::File::create(disk.0.join("out.log")).unwrap())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = fleet.stderr.take().unwrap();
        let (tx, diagnostics) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let full = FullDisk {
            dir,
            disk,
            fleet,
            diagnostics,
        };
        assert!(eventually(BOUND, || full.out().contains("worker_started")));
        full.disk.fill();
        std::fs::write(&go, "").unwrap();
        // The worker's lines meet the full disk: fleet-init holds them, and says so once.
        let stall = full
            .diagnostics
            .recv_timeout(BOUND)
            .expect("no word of the full disk");
        assert!(stall.contains("No space left"), "{stall}");
        assert!(
            full.out().lines().filter(|l| l.contains("line-")).count() < 200,
            "the disk was full before the worker wrote"
        );
        // All 200 are out of the worker (in its pipe or held by fleet-init).
        assert!(eventually(BOUND, || written.exists()));
        full
    }

    fn out(&self) -> String {
        std::fs::read_to_string(self.disk.0.join("out.log")).unwrap_or_default()
    }

    fn make_room(&self) {
        std::fs::remove_file(self.disk.0.join("filler")).unwrap();
    }

    /// fleet-init's pid: the unshare's child.
    fn init(&self) -> i32 {
        children_of(i32::try_from(self.fleet.id()).unwrap())[0]
    }

    /// SIGTERM to fleet-init, not to the unshare.
    fn sigterm(&self) {
        // SAFETY: signalling the fleet-init this test started.
        unsafe { libc::kill(self.init(), libc::SIGTERM) };
    }

    /// After fleet-init's exit: every line of the file is whole JSON, the worker's 200 lines
    /// are there once and in order, the full disk was said once, and the summary is last.
    fn assert_nothing_lost(&mut self) {
        let text = self.out();
        let events: Vec<Value> = text
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("a cut line: {line:?}"))
            })
            .collect();
        let lines: Vec<String> = events
            .iter()
            .filter(|e| e["event"] == "output")
            .map(|e| {
                e["line"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("line-{i}")).collect();
        assert_eq!(lines, want, "every line once, in order");
        let more: Vec<String> = self.diagnostics.try_iter().collect();
        assert!(
            !more.iter().any(|l| l.contains("No space left")),
            "said once: {more:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(last["event"], "shutdown_complete", "{last}");
        assert!(last.get("output_lines_lost").is_none(), "{last}");
        let _ = &self.dir;
    }
}

#[test]
fn a_full_disk_under_stdout_holds_the_lines_and_writes_them_once_there_is_room() {
    // The lines wait (it once marked the stream gone on ENOSPC and dropped every later line,
    // and an event written halfway was left cut in two); when room comes back every line is
    // there, once, in order, and every line of the file is whole JSON.
    let mut full = FullDisk::start(2000);
    full.make_room();
    assert!(
        eventually(BOUND, || full.out().contains("line-199")),
        "the lines came once there was room: {:.300}",
        full.out()
    );
    full.sigterm();
    assert!(
        wait_child(&mut full.fleet, BOUND).is_some(),
        "fleet-init did not exit"
    );
    full.assert_nothing_lost();
}

#[test]
fn a_full_disk_at_shutdown_is_tried_again_within_the_grace() {
    // The shutdown's last flush retries a stalled stream every second, not only when the
    // grace ends: room that comes back 1 s into a 60 s grace ends fleet-init at once (within
    // the bound), with every line written.
    let mut full = FullDisk::start(60_000);
    let init = full.init();
    full.sigterm();
    // The worker is stopped and reaped: fleet-init is in its last flush, on a full disk.
    assert!(eventually(BOUND, || children_of(init).is_empty()));
    assert!(
        full.fleet.try_wait().unwrap().is_none(),
        "it holds its lines"
    );
    full.make_room();
    assert!(
        wait_child(&mut full.fleet, BOUND).is_some(),
        "fleet-init waited for the end of its 60 s grace to try again"
    );
    full.assert_nothing_lost();
}

#[test]
fn a_reader_that_never_resumes_holds_the_shutdown_one_second_past_its_grace_at_most() {
    // A worker that ignores SIGTERM floods a stdout nobody reads (a wedged log driver): it is
    // killed when the grace ends; its lines then get one second to go out, and the last event
    // no extra wait, so the shutdown ends within grace + 1 s, under the runtime's SIGKILL (8 s
    // grace, Docker's 10 s). The final event's own 1 s wait once came on top: grace + 2 s.
    let dir = TempDir::new();
    let grace_ms = 1500;
    let script =
        "trap '' TERM; echo ready >&2; yes 'a line that fills the pipes' | head -n 400000; \
                  while :; do sleep 1; done";
    let config = dir.write(
        "config.json",
        &json!({"state_dir": dir.path("state"), "grace_ms": grace_ms, "workers": [
            {"name": "flood", "command": ["sh", "-c", script]}]})
        .to_string(),
    );
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut fleet = Guarded(
        pid1_command(&["--config", config.to_str().unwrap()])
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let init = {
        let unshare = fleet.id() as i32;
        assert!(eventually(BOUND, || !children_of(unshare).is_empty()));
        children_of(unshare)[0]
    };
    // Stalled: the pipe is full and fleet-init holds lines it could not write.
    assert!(eventually(BOUND, || bytes_in_pipe(read_end.as_raw_fd())
        > 60_000
        && wait_until_idle(init, Duration::from_millis(200))));
    let worker = children_of(init)[0];
    assert!(eventually(BOUND, || children_of(worker)
        .iter()
        .any(|pid| is_blocked_in_write(*pid))));
    let signalled = Instant::now();
    // SAFETY: signalling the fleet-init this test started.
    assert_eq!(unsafe { libc::kill(init, libc::SIGTERM) }, 0);
    let status = wait_child(&mut fleet, BOUND).expect("fleet-init did not end");
    let elapsed = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    let grace = Duration::from_millis(grace_ms);
    assert!(
        elapsed >= grace,
        "ended after {elapsed:?}, before the grace"
    );
    assert!(
        elapsed < grace + Duration::from_millis(1600),
        "ended {:?} after the grace",
        elapsed - grace
    );
    let mut stderr = String::new();
    fleet
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("worker output lines could not be written before the end"),
        "{stderr}"
    );
    drop(read_end);
}

#[test]
fn a_goodbye_line_written_on_sigterm_comes_before_the_worker_exited() {
    // The worker says goodbye on its stop signal and exits at once. fleet-init read the pipes
    // only before its reap, so a line written between that read and the reap came after
    // `worker_exited` (3 of 5 `podman stop`s on a busy machine). The window is made wide here:
    // strace holds every wait4 of fleet-init 100 ms on entry, so the worker writes and exits
    // between the turn's read and its reap. The pipes are now read again after a worker's exit
    // is reaped, before the exit is fed.
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "polite", "command": sh(
        "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 1; done"
    )}]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_event("output");
    let mut strace = Guarded(
        Command::new("strace")
            .args(["-qq", "-o", "/dev/null", "-e", "trace=wait4"])
            .args(["-e", "inject=wait4:delay_enter=100000", "-p"])
            .arg(fleet.pid.to_string())
            .spawn()
            .expect("strace"),
    );
    assert!(eventually(BOUND, || {
        status_field(fleet.pid, "TracerPid").is_some_and(|tracer| tracer != "0")
    }));
    fleet.signal(libc::SIGTERM);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    let _ = strace.kill();
    let position = |name: &str, text: &str| {
        fleet
            .events
            .iter()
            .position(|e| e["event"] == name && (text.is_empty() || e["line"] == text))
            .unwrap_or_else(|| panic!("no {name} {text}: {:?}", fleet.events))
    };
    assert!(
        position("output", "bye") < position("worker_exited", ""),
        "{:?}",
        fleet.events
    );
}

#[test]
fn a_burst_of_short_lines_loses_no_event_with_a_reader_that_keeps_up() {
    // One 128 KiB read of `seq` renders to ~2 MB, far past the stream's 512 KiB: every event
    // offered meanwhile (worker_exited, backoff, max_crashes_exceeded, shutdown_started) was
    // dropped with a reader that keeps up.
    let dir = TempDir::new();
    let config = json!({"workers": [{"name": "burst", "command": sh("seq 1 200000; exit 1"),
        "restart": "on-failure", "max_crashes": 2, "backoff_initial_ms": 50}]});
    let mut fleet = start_config(&dir, &config, true);
    assert_eq!(fleet.wait_exit(Duration::from_secs(60)), 1);
    let names: Vec<&str> = fleet
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|name| !matches!(*name, "output" | "worker_ready"))
        .collect();
    assert_eq!(
        names,
        [
            "init_started",
            "handoff_persisted",
            "worker_started",
            "worker_exited",
            "backoff",
            "worker_started",
            "worker_exited",
            "max_crashes_exceeded",
            "shutdown_started",
            "shutdown_complete"
        ]
    );
    assert!(fleet
        .events
        .iter()
        .all(|e| e.get("events_dropped").is_none()));
}

#[test]
fn into_a_file_a_workers_lines_all_come_before_its_exit() {
    // A file never fills: nothing excuses a line of the worker's after its `worker_exited`.
    // The read after the exit's reap stopped at the first signal waiting (44,000 of 200,000
    // lines came after the event).
    let dir = TempDir::new();
    let config = dir.write(
        "config.json",
        &json!({"state_dir": dir.path("state"), "workers": [{"name": "seq",
            "command": sh("seq 1 200000"), "restart": "never"}]})
        .to_string(),
    );
    let out = dir.path("out.jsonl");
    let mut child = Guarded(
        pid1_command(&["--config", config.to_str().unwrap()])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = wait_child(&mut child.0, Duration::from_secs(60)).expect("fleet-init exits");
    assert_eq!(status.code(), Some(0));
    let events: Vec<Value> = read_to_string(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let exited = events
        .iter()
        .position(|e| e["event"] == "worker_exited")
        .expect("worker_exited");
    let before = events[..exited]
        .iter()
        .filter(|e| e["event"] == "output")
        .count();
    assert_eq!(before, 200_000);
}

#[test]
fn a_slow_reader_at_the_end_gets_whole_lines_and_an_exact_count_of_the_rest() {
    // A reader taking 64 KiB every 20 ms, a worker that wrote 300,000 lines and exited, a
    // grace of 1 s: the stream ended inside a JSON line, with no shutdown_complete, and of
    // ~129,000 lines not written only the 13,509 in fleet-init's buffer were counted.
    let dir = TempDir::new();
    let config = dir.write(
        "config.json",
        &json!({"state_dir": dir.path("state"), "grace_ms": 1000, "workers": [
            {"name": "seq", "command": sh("seq 1 300000"), "restart": "never"}]})
        .to_string(),
    );
    let mut child = Guarded(
        pid1_command(&["--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut all, mut buffer) = (Vec::new(), vec![0u8; 64 * 1024]);
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => return all,
                Ok(count) => all.extend_from_slice(&buffer[..count]),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let status = wait_child(&mut child.0, Duration::from_secs(30)).expect("fleet-init exits");
    assert_eq!(status.code(), Some(0));
    let all = reader.join().unwrap();
    assert_eq!(all.last(), Some(&b'\n'), "the stream ends on a whole line");
    let events: Vec<Value> = String::from_utf8(all)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "shutdown_complete");
    let written = events.iter().filter(|e| e["event"] == "output").count();
    let lost = last["output_lines_lost"].as_u64().unwrap_or(0);
    assert!(written < 300_000, "the reader was slow enough to test this");
    assert_eq!(
        written as u64 + lost,
        300_000,
        "written {written}, lost {lost}"
    );
}
