//! fleet-init as a drop-in for tini and dumb-init (issue 11): a byte-identical stdout, their
//! flags and variables one by one, plain errors, strict FLEET_INIT_* variables, the same-user
//! worker, SIGQUIT in config mode.

mod common;

use common::{bin, pid1, sh, start_config, subreaper, TempDir, BOUND};
use serde_json::json;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Output, Stdio};

/// Runs fleet-init with `args` (and `env`), bounded by `timeout(1)`; returns its output.
fn run(prefix: &[&str], args: &[OsString], env: &[(&str, &str)]) -> Output {
    let dir = TempDir::new();
    let mut command = Command::new("timeout");
    command
        .arg("20")
        .args(prefix)
        .arg(bin())
        .args(args)
        .env("FLEET_INIT_STATE_DIR", dir.path("state"))
        .env_remove("FLEET_INIT_EVENTS")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run fleet-init");
    assert_ne!(output.status.code(), Some(124), "timed out: {args:?}");
    output
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// FNV-1a, 64 bits: enough to tell two megabytes apart in a failure message.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// 1 MiB of pseudo-random bytes (xorshift64*), every byte value included.
fn random_megabyte() -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..1 << 20)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn stdout_through_fleet_init_is_byte_identical() {
    let dir = TempDir::new();
    let data = random_megabyte();
    let path = dir.path("random.bin");
    std::fs::write(&path, &data).unwrap();
    let path = path.to_str().unwrap();
    for prefix in [vec![], vec!["unshare", "--pid", "--fork", "--mount-proc"]] {
        let output = run(&prefix, &os(&["--", "cat", path]), &[]);
        assert_eq!(output.status.code(), Some(0), "{prefix:?}");
        assert_eq!(
            (output.stdout.len(), fnv1a(&output.stdout)),
            (data.len(), fnv1a(&data)),
            "{prefix:?}: stdout differs from the file"
        );
        // The events went to stderr, the single-command default.
        let stderr = text(&output.stderr);
        assert!(stderr.contains("\"event\":\"init_started\""), "{stderr}");
        assert!(stderr.contains("\"event\":\"worker_exited\""), "{stderr}");
    }
    // --events off: nothing at all besides the child's bytes.
    let output = run(&[], &os(&["--events", "off", "--", "cat", path]), &[]);
    assert_eq!(fnv1a(&output.stdout), fnv1a(&data));
    assert_eq!(text(&output.stderr), "");
    // FLEET_INIT_EVENTS=stdout puts them back in front of the child's output.
    let output = run(
        &[],
        &os(&["--", "cat", path]),
        &[("FLEET_INIT_EVENTS", "stdout")],
    );
    assert!(output.stdout.starts_with(b"{\"ts\""));
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn config_mode_events_default_to_stdout() {
    let dir = TempDir::new();
    let config = dir.write(
        "c.json",
        r#"{"workers": [{"name": "once", "command": ["true"], "restart": "never"}]}"#,
    );
    let output = run(&[], &os(&["--config", config.to_str().unwrap()]), &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("\"event\":\"worker_exited\""));
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn arguments_pass_byte_for_byte() {
    let bytes = vec![b'a', 0xff, 0xfe, b'\n', 0x80, b'z'];
    let args = vec![
        OsString::from("--"),
        OsString::from("printf"),
        OsString::from("%s"),
        OsString::from_vec(bytes.clone()),
    ];
    let output = run(&[], &args, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(output.stdout, bytes);
}

#[test]
fn a_spawn_failure_is_one_plain_line_on_stderr_in_every_events_mode() {
    for events in ["off", "stderr", "stdout"] {
        let output = run(
            &[],
            &os(&["--events", events, "--", "/nonexistent/srv"]),
            &[],
        );
        assert_eq!(output.status.code(), Some(127), "{events}");
        let stderr = text(&output.stderr);
        let plain: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{')).collect();
        assert_eq!(
            plain,
            ["fleet-init: exec /nonexistent/srv failed: No such file or directory"],
            "{events}: {stderr}"
        );
    }
    let output = run(&[], &os(&["--events", "off", "--", "/etc"]), &[]);
    assert_eq!(output.status.code(), Some(126));
    assert_eq!(
        text(&output.stderr),
        "fleet-init: exec /etc failed: Permission denied\n"
    );
}

/// Arguments, environment, and how stderr's one line starts.
type UsageCase<'a> = (Vec<OsString>, Vec<(&'a str, OsString)>, &'a str);

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    let dir = TempDir::new();
    let with_newline = dir.path("bad\nname.json");
    let bad_state_dir = OsString::from_vec(b"/tmp/\xff".to_vec());
    let cases: Vec<UsageCase> = vec![
        (
            os(&["--", "true"]),
            vec![("FLEET_INIT_STATE_DIR", bad_state_dir)],
            "fleet-init: FLEET_INIT_STATE_DIR: not valid UTF-8",
        ),
        (
            os(&["--", "true"]),
            vec![("FLEET_INIT_GRACE_MS", OsString::from("soon"))],
            "fleet-init: FLEET_INIT_GRACE_MS: expected milliseconds",
        ),
        (
            os(&["--", "true"]),
            vec![("FLEET_INIT_LOG", OsString::from("verbose"))],
            "fleet-init: FLEET_INIT_LOG: expected off, error, warn, info, debug or trace",
        ),
        (
            os(&["--", "true"]),
            vec![("FLEET_INIT_EVENTS", OsString::from("journal"))],
            "fleet-init: FLEET_INIT_EVENTS: expected stdout, stderr or off",
        ),
        (
            vec![OsString::from("--config"), with_newline.into_os_string()],
            vec![],
            "fleet-init: ",
        ),
        (
            os(&["-r", "15:99", "true"]),
            vec![],
            "fleet-init: -r/--rewrite",
        ),
    ];
    for (args, env, want) in cases {
        let mut command = Command::new(bin());
        command.args(&args).env_remove("FLEET_INIT_EVENTS");
        for (key, value) in &env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: {stderr:?}");
        assert!(stderr.starts_with(want), "{args:?} {env:?}: {stderr:?}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn help_is_the_usage_block_and_license_and_version_print() {
    for flag in ["--help", "-h"] {
        let output = run(&[], &os(&[flag]), &[]);
        assert_eq!(output.status.code(), Some(0));
        let help = text(&output.stdout);
        assert!(help.ends_with("-V, --version             print the version and exit\n"));
        assert!(help.contains(
            "Usage:\n  fleet-init [OPTIONS] -- COMMAND [ARG...]   one worker, tini-style\n  \
             fleet-init [OPTIONS] --config FILE         the workers in FILE\n"
        ));
    }
    let output = run(&[], &os(&["-l"]), &[]);
    assert!(text(&output.stdout).starts_with("The MIT License (MIT)\n"));
    for flag in ["--version", "-V"] {
        let output = run(&[], &os(&[flag]), &[]);
        assert_eq!(
            text(&output.stdout),
            format!("fleet-init {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn tini_e_remaps_exit_codes() {
    for args in [
        vec!["-e", "3", "--", "sh", "-c", "exit 3"],
        vec!["-e3", "sh", "-c", "exit 3"],
        vec!["-e", "4", "-e", "143", "--", "sh", "-c", "kill -TERM $$"],
    ] {
        assert_eq!(run(&[], &os(&args), &[]).status.code(), Some(0), "{args:?}");
    }
    let output = run(&[], &os(&["-e", "4", "--", "sh", "-c", "exit 3"]), &[]);
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn tini_s_g_and_their_variables_are_accepted() {
    for (args, env) in [
        (vec!["-s", "--", "sh", "-c", "exit 5"], vec![]),
        (vec!["-g", "sh", "-c", "exit 5"], vec![]),
        (vec!["-sg", "--", "sh", "-c", "exit 5"], vec![]),
        (vec!["sh", "-c", "exit 5"], vec![("TINI_SUBREAPER", "")]),
        (
            vec!["sh", "-c", "exit 5"],
            vec![("TINI_KILL_PROCESS_GROUP", "1")],
        ),
    ] {
        let output = run(&[], &os(&args), &env);
        assert_eq!(output.status.code(), Some(5), "{args:?} {env:?}");
    }
}

#[test]
fn tini_v_and_tini_verbosity_raise_the_diagnostics() {
    // The child sends fleet-init a SIGUSR1 and lingers, so the signal is surely read (a
    // SIGCHLD can still be pending when a quick child's exit ends the run).
    let command = ["sh", "-c", "kill -USR1 $PPID; sleep 0.2"];
    let received = |flags: &[&str], env: &[(&str, &str)]| {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["--events", "off", "--"]);
        args.extend(command);
        let output = run(&[], &os(&args), env);
        text(&output.stderr).contains("received SIGUSR1")
    };
    assert!(!received(&[], &[]));
    assert!(!received(&["-v"], &[]));
    assert!(received(&["-vv"], &[]));
    assert!(received(&["-vvv"], &[]));
    assert!(received(&[], &[("TINI_VERBOSITY", "3")]));
    assert!(received(&["--verbose"], &[]));
    assert!(received(&[], &[("DUMB_INIT_DEBUG", "1")]));
}

#[test]
fn tini_w_warns_about_reaped_zombies_that_were_not_workers() {
    // The subshell outlives its parent and is reparented to fleet-init (a subreaper).
    let script = "(sleep 0.1; exit 0) & exit 0";
    let output = run(
        &[],
        &os(&["-w", "--events", "off", "--", "sh", "-c", script]),
        &[],
    );
    assert!(
        text(&output.stderr).contains("Reaped zombie process with pid="),
        "{}",
        text(&output.stderr)
    );
    let output = run(
        &[],
        &os(&["--events", "off", "--", "sh", "-c", script]),
        &[],
    );
    assert!(!text(&output.stderr).contains("Reaped zombie process"));
}

#[test]
fn tini_p_is_fleet_inits_own_parent_death_signal() {
    let dir = TempDir::new();
    let ready = dir.path("ready");
    let got = dir.path("got");
    // A parent that starts fleet-init and is then killed; the child records the SIGUSR1 that
    // fleet-init gets from the kernel and forwards.
    let child = format!(
        "trap 'echo usr1 > {got}; exit 0' USR1; touch {ready}; while :; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -p SIGUSR1 --events off -- sh -c "$1" & wait"#)
        .arg(bin())
        .arg(&child)
        .env("FLEET_INIT_STATE_DIR", dir.path("state"))
        .spawn()
        .unwrap();
    assert!(
        common::eventually(BOUND, || ready.exists()),
        "child not ready"
    );
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert!(
        common::eventually(BOUND, || common::read_to_string(&got).contains("usr1")),
        "the child never got the SIGUSR1 of fleet-init's parent death"
    );
}

/// `sh` whose background `sleep` shares its process group; prints the sleep's pid.
const MAIN_AND_SUB: &str =
    "trap 'echo main-got-usr1' USR1; sleep 30 & echo sub=$!; while :; do sleep 0.05; done";

fn sub_pid(fleet: &mut common::Fleet) -> i32 {
    fleet.wait_output("sub=", BOUND);
    let line = fleet.output.iter().find(|l| l.starts_with("sub=")).unwrap();
    let pid: i32 = line.trim_start_matches("sub=").parse().unwrap();
    // Until its exec, the forked shell still has the parent's USR1 trap and would swallow it.
    let comm = format!("/proc/{pid}/comm");
    assert!(common::eventually(BOUND, || {
        std::fs::read_to_string(&comm).is_ok_and(|c| c == "sleep\n")
    }));
    pid
}

#[test]
fn dumb_init_c_and_setsid_0_signal_the_child_only() {
    let starts = [
        subreaper(&["-c", "--", "sh", "-c", MAIN_AND_SUB]),
        subreaper(&["--single-child", "sh", "-c", MAIN_AND_SUB]),
        subreaper(&["--", "sh", "-c", MAIN_AND_SUB]).env("DUMB_INIT_SETSID", "0"),
    ];
    for start in starts {
        let mut fleet = start.spawn();
        let sub = sub_pid(&mut fleet);
        fleet.signal(libc::SIGUSR1);
        fleet.wait_output("main-got-usr1", BOUND);
        assert!(
            common::is_alive(sub),
            "the group's other process was signalled"
        );
        fleet.signal(libc::SIGTERM);
        fleet.wait_exit(BOUND);
    }
    // Without them the whole group gets it: the sleep dies of SIGUSR1.
    let mut fleet = subreaper(&["--", "sh", "-c", MAIN_AND_SUB]).spawn();
    let sub = sub_pid(&mut fleet);
    fleet.signal(libc::SIGUSR1);
    fleet.wait_output("main-got-usr1", BOUND);
    assert!(common::eventually(BOUND, || !common::is_alive(sub)));
    fleet.signal(libc::SIGTERM);
    fleet.wait_exit(BOUND);
}

const TRAPS: &str = "for s in USR1 USR2 TERM HUP; do trap \"echo got-$s\" $s; done; \
                     echo ready; while :; do sleep 0.05; done";

#[test]
fn dumb_init_r_rewrites_and_drops_signals() {
    let mut fleet = subreaper(&[
        "-r",
        "USR1:USR2",
        "--rewrite",
        "15:0",
        "--",
        "sh",
        "-c",
        TRAPS,
    ])
    .spawn();
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGUSR1);
    fleet.wait_output("got-USR2", BOUND);
    // SIGTERM is dropped: no shutdown; the next signal still gets through.
    fleet.signal(libc::SIGTERM);
    fleet.signal(libc::SIGHUP);
    fleet.wait_output("got-HUP", BOUND);
    assert!(fleet.named("shutdown_started").is_empty());
    assert!(!fleet
        .output
        .iter()
        .any(|l| l == "got-USR1" || l == "got-TERM"));
    fleet.signal(libc::SIGINT);
    fleet.wait_exit(BOUND);
}

#[test]
fn fault_signals_sent_with_kill_are_forwarded_not_fatal() {
    let script = "for s in ILL TRAP ABRT BUS FPE SEGV SYS PIPE; do trap \"echo got-$s\" $s; done; \
                  echo ready; while :; do sleep 0.05; done";
    let mut fleet = pid1(&["--", "sh", "-c", script]).spawn();
    fleet.wait_output("ready", BOUND);
    for (signal, name) in [
        (libc::SIGILL, "ILL"),
        (libc::SIGSEGV, "SEGV"),
        (libc::SIGPIPE, "PIPE"),
        (libc::SIGSYS, "SYS"),
    ] {
        fleet.signal(signal);
        fleet.wait_output(&format!("got-{name}"), BOUND);
    }
    fleet.signal(libc::SIGTERM);
    fleet.wait_exit(BOUND);
}

#[test]
fn with_a_command_sigquit_is_forwarded() {
    let script = "trap 'echo got-quit; exit 7' QUIT; echo ready; while :; do sleep 0.05; done";
    let mut fleet = pid1(&["--", "sh", "-c", script]).spawn();
    fleet.wait_output("ready", BOUND);
    fleet.signal(libc::SIGQUIT);
    assert_eq!(fleet.wait_exit(BOUND), 7);
    assert!(fleet.named("shutdown_started")[0]["reason"] == "workers_finished");
}

#[test]
fn sigquit_shuts_config_mode_down_with_exit_0() {
    let dir = TempDir::new();
    let config = json!({"workers": [
        {"name": "web", "command": sh("echo ready; exec sleep 30")},
        {"name": "jobs", "command": sh("exec sleep 30")},
    ]});
    let mut fleet = start_config(&dir, &config, true);
    fleet.wait_output("ready", BOUND);
    fleet.wait_nth("worker_started", 2, BOUND);
    fleet.signal(libc::SIGQUIT);
    assert_eq!(fleet.wait_exit(BOUND), 0);
    assert_eq!(fleet.named("shutdown_started")[0]["reason"], "SIGQUIT");
    let exits = fleet.named("worker_exited");
    assert_eq!(exits.len(), 2);
    for exit in exits {
        assert_eq!(exit["likely_cause"], "shutdown", "{exit}");
    }
    assert!(fleet.named("backoff").is_empty());
    assert_eq!(fleet.named("shutdown_complete")[0]["exit_code"], 0);
}

#[test]
fn the_same_user_needs_no_privilege() {
    // `docker run --user nobody` with `"user": "nobody"`: fleet-init cannot setgroups, and
    // must not try. The state dir belongs to nobody, as a container's would.
    let dir = TempDir::new();
    let state = dir.path("state-nobody");
    std::fs::create_dir(&state).unwrap();
    let chown = Command::new("chown")
        .args(["65534:65534"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(chown.success());
    let config = dir.write(
        "c.json",
        &json!({"workers": [{"name": "app", "user": "nobody", "restart": "never",
            "command": sh("echo \"uid=$(id -u) gid=$(id -g) user=$USER\"")}]})
        .to_string(),
    );
    let output = config_as_nobody(&config, &state);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("uid=65534 gid=65534 user=nobody"),
        "{stdout}"
    );
    assert!(!stdout.contains("spawn_failed"), "{stdout}");
}

#[test]
fn a_credential_error_names_the_user_and_a_bare_uid_gets_home_slash() {
    // Unprivileged, another user cannot be switched to: the error names the user.
    let dir = TempDir::new();
    let state = dir.path("state-nobody");
    std::fs::create_dir(&state).unwrap();
    assert!(Command::new("chown")
        .arg("65534:65534")
        .arg(&state)
        .status()
        .unwrap()
        .success());
    let config = dir.write(
        "c.json",
        &json!({"workers": [{"name": "app", "user": "daemon", "restart": "never",
            "command": ["true"]}]})
        .to_string(),
    );
    let output = config_as_nobody(&config, &state);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "fleet-init: setgroups user daemon (uid 1, gid 1) failed: Operation not permitted"
        ),
        "{stderr}"
    );
    // As root, a uid with no passwd entry gets HOME=/ as Docker gives it.
    let config = json!({"workers": [{"name": "bare", "user": "4242", "restart": "never",
        "command": sh("echo \"home=$HOME uid=$(id -u)\"")}]});
    let mut fleet = start_config(&dir, &config, false);
    fleet.wait_output("home=/ uid=4242", BOUND);
    assert_eq!(fleet.wait_exit(BOUND), 0);
}

#[test]
fn the_child_starts_in_fleet_inits_directory_while_fleet_init_leaves_it() {
    let dir = TempDir::new();
    // fleet-init moves to / once its first workers are forked (they inherit the directory):
    // the child waits for that, up to 10 s, rather than racing it.
    let script = "for i in $(seq 1000); do [ \"$(readlink /proc/$PPID/cwd)\" = / ] && break; \
                  sleep 0.01; done; readlink /proc/$PPID/cwd; readlink /proc/$$/cwd";
    let output = Command::new(bin())
        .args(["--events", "off", "--", "sh", "-c"])
        .arg(script)
        .env("FLEET_INIT_STATE_DIR", dir.path("state"))
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert_eq!(
        text(&output.stdout),
        format!("/\n{}\n", dir.0.display()),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn not_pid1_job_control_signals_suspend_fleet_init_and_sigcont_resumes_both() {
    let state = |pid: i32| common::status_field(pid, "State").unwrap_or_default();
    let is_stopped = |pid: i32| state(pid).starts_with('T');
    for (args, child_catches) in [
        (vec!["--", "sh", "-c", "echo ready; exec sleep 30"], false),
        (
            vec![
                "-c",
                "--",
                "sh",
                "-c",
                "trap 'echo tstp' TSTP; echo ready; while :; do sleep 0.05; done",
            ],
            true,
        ),
    ] {
        let mut fleet = subreaper(&args).spawn();
        fleet.wait_output("ready", BOUND);
        let child = fleet.wait_event("worker_started")["pid"].as_i64().unwrap() as i32;
        fleet.signal(libc::SIGTSTP);
        assert!(
            common::eventually(BOUND, || is_stopped(fleet.pid)),
            "fleet-init not stopped"
        );
        if child_catches {
            fleet.wait_output("tstp", BOUND);
        } else {
            assert!(
                common::eventually(BOUND, || is_stopped(child)),
                "child not stopped"
            );
        }
        fleet.signal(libc::SIGCONT);
        assert!(common::eventually(BOUND, || !is_stopped(fleet.pid) && !is_stopped(child)));
        fleet.signal(libc::SIGTERM);
        fleet.wait_exit(BOUND);
    }
}

#[test]
fn a_plain_sigstop_to_the_child_stops_only_the_child() {
    // Job control follows a terminal's suspend, not a debugger's or an operator's SIGSTOP.
    let mut fleet = subreaper(&["--", "sh", "-c", "echo ready; exec sleep 30"]).spawn();
    fleet.wait_output("ready", BOUND);
    let child = fleet.wait_event("worker_started")["pid"].as_i64().unwrap() as i32;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child, libc::SIGSTOP) };
    let is_stopped = |pid: i32| {
        common::status_field(pid, "State")
            .unwrap_or_default()
            .starts_with('T')
    };
    assert!(common::eventually(BOUND, || is_stopped(child)));
    // Two turns of fleet-init's loop after the stop was reported: it is still running.
    for (signal, name) in [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2")] {
        fleet.signal(signal);
        fleet.wait_event_where("signal_forwarded", |e| e["signal"] == name, BOUND);
    }
    assert!(!is_stopped(fleet.pid));
    // SAFETY: as above; the pending SIGUSR1 then ends it.
    unsafe { libc::kill(child, libc::SIGCONT) };
    assert_eq!(fleet.wait_exit(BOUND), 128 + libc::SIGUSR1);
}

/// fleet-init on `config` run by an unprivileged user (uid and gid 65534, no groups), as
/// `docker run --user nobody` does, events in their default place; bounded at 20 s.
fn config_as_nobody(config: &std::path::Path, state: &std::path::Path) -> std::process::Output {
    Command::new("timeout")
        .args([
            "20",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(bin())
        .arg("--config")
        .arg(config)
        .env("FLEET_INIT_STATE_DIR", state)
        .env_remove("FLEET_INIT_EVENTS")
        .current_dir("/")
        .output()
        .unwrap()
}
