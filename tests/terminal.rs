//! With a terminal (`docker run -it`), the single-command child owns the foreground process
//! group: an interactive shell works and is not stopped by SIGTTIN. `script` provides the pty.

mod common;

use common::{BIN, BOUND};
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
    let command =
        format!("{BIN} -- sh -c 'set -- $(cat /proc/$$/stat); echo \"pgrp=$5 tpgid=$8 pid=$1\"'");
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
    let command = format!("unshare --pid --fork --mount-proc {BIN} -- sh -i");
    let (code, output) = under_pty(&command, "echo hello-$((6*7))\nexit 5\n");
    assert!(output.contains("hello-42"), "{output}");
    assert_eq!(code, 5, "{output}");
}

#[test]
fn an_interactive_shell_reads_the_terminal_as_subreaper() {
    let command = format!("{BIN} -- sh -i");
    let (code, output) = under_pty(&command, "echo hello-$((6*7))\nexit 3\n");
    assert!(output.contains("hello-42"), "{output}");
    assert_eq!(code, 3, "{output}");
}
