//! With a terminal (`docker run -it`), the single-command child owns the foreground process
//! group: an interactive shell works and is not stopped by SIGTTIN. `script` provides the pty.

mod common;

use common::{bin, TempDir, BOUND};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs `command` under `script -qec` with `input` on the terminal; returns (code, output).
fn under_pty(command: &str, input: &str) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{command:?} under a pty did not finish within {BOUND:?} (stopped by SIGTTIN?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

#[test]
fn the_child_is_the_terminals_foreground_group() {
    let command = format!(
        "{} -- sh -c 'set -- $(cat /proc/$$/stat); echo \"pgrp=$5 tpgid=$8 pid=$1\"'",
        bin()
    );
    let (code, output) = under_pty(&command, "");
    assert_eq!(code, 0, "{output}");
    let line = output
        .lines()
        .find(|l| l.starts_with("pgrp="))
        .unwrap_or_else(|| panic!("{output}"));
    let fields: Vec<&str> = line
        .split_whitespace()
        .map(|kv| kv.split('=').nth(1).unwrap())
        .collect();
    assert_eq!(
        fields[0], fields[1],
        "child's group is the foreground: {line}"
    );
    assert_eq!(fields[0], fields[2], "in its own process group: {line}");
}

#[test]
fn an_interactive_shell_reads_the_terminal_as_pid1() {
    let command = format!("unshare --pid --fork --mount-proc {} -- sh -i", bin());
    let (code, output) = under_pty(&command, "echo hello-$((6*7))\nexit 5\n");
    assert!(output.contains("hello-42"), "{output}");
    assert_eq!(code, 5, "{output}");
}

#[test]
fn an_interactive_shell_reads_the_terminal_as_subreaper() {
    let command = format!("{} -- sh -i", bin());
    let (code, output) = under_pty(&command, "echo hello-$((6*7))\nexit 3\n");
    assert!(output.contains("hello-42"), "{output}");
    assert_eq!(code, 3, "{output}");
}

/// An interactive `bash -i` on a pty (`script`), driven line by line: input goes in when the
/// output so far shows what the previous step waited for.
struct Terminal {
    _state: TempDir,
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    fn bash() -> Terminal {
        Terminal::run("bash --norc --noprofile -i")
    }

    fn run(command: &str) -> Terminal {
        // A state dir of the test's own: not the machine's /run/fleet-init.
        let state = TempDir::new();
        let mut child = Command::new("script")
            .args(["-qfec", command, "/dev/null"])
            .env("PS1", "$ ")
            .env("FLEET_INIT_STATE_DIR", state.path("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script(1) from util-linux");
        let input = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Terminal {
            child,
            input,
            output,
            _state: state,
        }
    }

    fn send(&mut self, bytes: &str) {
        self.input.write_all(bytes.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until the output shows `marker`.
    fn wait_for(&mut self, marker: &str) {
        let deadline = Instant::now() + BOUND;
        while !self.text().contains(marker) {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "no {marker:?} on the terminal within {BOUND:?}:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctrl_z_suspends_the_job_and_fg_resumes_it() {
    // dumb-init's behaviour: Ctrl-Z stops the child (it owns the terminal) and so fleet-init
    // stops too, so the shell gets its prompt back; `fg` gives the child the terminal again.
    // Markers are computed by the shell so that the terminal's echo of the input never
    // matches them.
    let mut terminal = Terminal::bash();
    terminal.send("echo shell-$((1+1))\n");
    terminal.wait_for("shell-2");
    terminal.send(&format!(
        "{} -- sh -c 'echo child-$((3+4)); while read l; do echo got-$l; done; echo done-$((4+5))'\n",
        bin()
    ));
    terminal.wait_for("child-7");
    terminal.send("\x1a");
    // bash reports the job stopped (fleet-init stopped), then reads its own input again.
    terminal.wait_for("Stopped");
    terminal.send("echo prompt-$((2+3))\n");
    terminal.wait_for("prompt-5");
    terminal.send("fg\n");
    terminal.send("hello\n");
    terminal.wait_for("got-hello");
    terminal.send("\x04");
    terminal.wait_for("done-9");
    terminal.send("echo status-$?-end\n");
    terminal.wait_for("status-0-end");
    terminal.send("exit\n");
}

#[test]
fn a_background_job_leaves_the_terminal_to_the_shell() {
    // `fleet-init -- cmd &` from an interactive shell: fleet-init's group is not the
    // terminal's foreground, so its child is not given the terminal. It once was (the child
    // took it with SIGTTOU blocked), and bash, reading a terminal that was no longer its own,
    // quit under the user (dumb-init leaves the terminal alone; tini does the same as we did).
    let mut terminal = Terminal::bash();
    terminal.send("echo shell-$((1+1))\n");
    terminal.wait_for("shell-2");
    terminal.send(&format!(
        "{} -- sh -c 'sleep 0.3; echo bg-$((2+2))' &\n",
        bin()
    ));
    terminal.send("echo alive-$((1+2))\n");
    terminal.wait_for("alive-3");
    terminal.wait_for("bg-4");
    terminal.send("wait; echo still-$((5+5))\n");
    terminal.wait_for("still-10");
    terminal.send("exit\n");
}

#[test]
fn the_terminal_goes_back_to_the_caller_when_the_child_exits() {
    // A script runs fleet-init in the foreground, then reads the terminal itself. The
    // terminal was left to the child's dead group, and the script's `read` stopped it with
    // SIGTTIN (`Stopped`, the input went to bash); dumb-init hands it back.
    let mut terminal = Terminal::bash();
    terminal.send("echo shell-$((1+1))\n");
    terminal.wait_for("shell-2");
    terminal.send(&format!(
        "sh -c '{} -- true; echo ran-$((1+1)); read x; echo got-$x'\n",
        bin()
    ));
    terminal.wait_for("ran-2");
    terminal.send("hello\n");
    terminal.wait_for("got-hello");
    terminal.send("exit\n");
}

#[test]
fn ctrl_z_under_pid1_does_not_freeze_the_child_for_good() {
    // `docker run -it`: nothing above PID 1 can resume a stopped job, so a child stopped by
    // its terminal's Ctrl-Z is continued at once (dumb-init's child never sees it). It once
    // stayed stopped, and Ctrl-C after it did not help either.
    let mut terminal = Terminal::run(&format!(
        "unshare --pid --fork --mount-proc {} -- sh -c 'echo ready-$((1+1)); sleep 0.5; echo done-$((2+3))'",
        bin()
    ));
    terminal.wait_for("ready-2");
    terminal.send("\x1a");
    terminal.wait_for("done-5");
    let status = common::wait_child(&mut terminal.child, BOUND).expect("did not exit");
    assert_eq!(status.code(), Some(0), "{}", terminal.text());
}

#[test]
fn ctrl_z_reaching_pid1_in_config_mode_stops_no_worker() {
    // `docker run -it` with a config: fleet-init (PID 1) is the terminal's foreground, so
    // Ctrl-Z is its SIGTSTP. Forwarded, it froze every worker for good (nothing above PID 1
    // resumes a job); from the terminal it is now dropped, as tini, supervisord and s6 as PID 1
    // ignore it. Ctrl-C still shuts down.
    let dir = std::env::temp_dir().join(format!("fleet-test-ctrlz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"state_dir": dir.join("state"), "workers": [{"name": "tick",
            "command": ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.02; done"]}]})
        .to_string(),
    )
    .unwrap();
    let mut terminal = Terminal::run(&format!(
        "unshare --pid --fork --mount-proc {} --config {}",
        bin(),
        config.display()
    ));
    terminal.wait_for("tick-3\"");
    terminal.send("\x1a");
    // Still ticking well after the Ctrl-Z.
    let ticks = |text: &str| text.matches("\"tick-").count();
    let at_ctrl_z = ticks(&terminal.text());
    terminal.wait_for(&format!("tick-{}\"", at_ctrl_z + 20));
    terminal.send("\x03");
    terminal.wait_for("shutdown_complete");
    let _ = std::fs::remove_dir_all(&dir);
}
