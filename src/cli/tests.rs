//! The parser, flag by flag: fleet-init's own, tini's and dumb-init's.

#[cfg(test)]
use super::*;
use std::os::unix::ffi::OsStringExt;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Options, UsageError> {
    let env: Vec<(String, OsString)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    parse(&os(args), &move |key| {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    })
}

fn ok(args: &[&str]) -> Options {
    parse_with(args, &[]).unwrap()
}

fn single_with(args: &[&str], env: &[(&str, &str)]) -> SingleOptions {
    match parse_with(args, env).unwrap().command {
        Command::Single(single) => single,
        other => panic!("not single: {other:?}"),
    }
}

fn single(args: &[&str]) -> SingleOptions {
    single_with(args, &[])
}

#[test]
fn single_command_mode_takes_everything_after_the_command() {
    let s = single(&["--", "sh", "-c", "exit 3"]);
    assert_eq!(s.command, os(&["sh", "-c", "exit 3"]));
    assert_eq!(s.restart, RestartPolicy::Never);
    // Options end at the first non-option, as getopt's "+": the rest is the command's.
    let s = single(&["sh", "-c", "--config", "x"]);
    assert_eq!(s.command, os(&["sh", "-c", "--config", "x"]));
    assert_eq!(single(&["--", "--", "true"]).command, os(&["--", "true"]));
    assert_eq!(single(&["-", "x"]).command, os(&["-", "x"]));
    assert_eq!(
        single(&["help"]).command,
        os(&["help"]),
        "no argh subcommand"
    );
    let s = single(&[
        "--remap-exit",
        "143",
        "--remap-exit=3",
        "--restart",
        "on-failure",
        "--max-crashes",
        "2",
        "--max-rss-mb",
        "64",
        "--",
        "true",
    ]);
    assert_eq!(s.remap_exit, [143, 3]);
    assert_eq!(s.restart, RestartPolicy::OnFailure);
    assert_eq!(s.max_crashes, Some(2));
    assert_eq!(s.max_rss_mb, Some(64));
}

#[test]
fn arguments_after_the_options_pass_byte_for_byte() {
    let bad = OsString::from_vec(vec![b'a', 0xff, 0xfe, b'z']);
    let args = vec![OsString::from("--"), OsString::from("printf"), bad.clone()];
    let options = parse(&args, &|_| None).unwrap();
    let Command::Single(single) = options.command else {
        panic!("not single")
    };
    assert_eq!(single.command, vec![OsString::from("printf"), bad.clone()]);
    // Also as the program itself, without `--`.
    let options = parse(std::slice::from_ref(&bad), &|_| None).unwrap();
    assert!(matches!(options.command, Command::Single(s) if s.command == [bad.clone()]));
    // An option's value must be text.
    let args = vec![OsString::from("--config"), bad];
    let error = parse(&args, &|_| None).unwrap_err();
    assert!(error.0.starts_with("--config: not valid UTF-8"), "{error}");
}

#[test]
fn tini_flags() {
    // -s and -g are accepted (fleet-init is a subreaper and signals the group anyway).
    assert_eq!(single(&["-s", "-g", "true"]).command, os(&["true"]));
    assert_eq!(single(&["-sg", "--", "true"]).command, os(&["true"]));
    // -e CODE, repeatable, attached or not.
    assert_eq!(single(&["-e", "143", "-e3", "true"]).remap_exit, [143, 3]);
    // -p SIG: fleet-init's own parent-death signal, not the workers'.
    let options = ok(&["-p", "SIGUSR1", "--", "true"]);
    assert_eq!(options.self_pdeathsig, Some(libc::SIGUSR1));
    assert_eq!(options.pdeathsig, None);
    assert_eq!(ok(&["-pKILL", "true"]).self_pdeathsig, Some(9));
    // -v, -vv, -vvv: info, debug, trace; the default is warnings.
    for (args, level) in [
        (vec!["true"], log::LevelFilter::Warn),
        (vec!["-v", "true"], log::LevelFilter::Info),
        (vec!["-vv", "true"], log::LevelFilter::Debug),
        (vec!["-v", "-v", "-v", "true"], log::LevelFilter::Trace),
        (vec!["-vvv", "--", "true"], log::LevelFilter::Trace),
        (vec!["-svvvg", "true"], log::LevelFilter::Trace),
    ] {
        assert_eq!(ok(&args).log_level, level, "{args:?}");
    }
    // -w: warn when reaping a zombie that was not a worker.
    assert!(ok(&["-w", "true"]).is_warn_on_reap);
    assert!(!ok(&["true"]).is_warn_on_reap);
    // -l, -h, --version.
    assert_eq!(ok(&["-l"]).command, Command::License);
    assert_eq!(ok(&["-h"]).command, Command::Help);
    assert_eq!(ok(&["--version"]).command, Command::Version);
    // `tini -vvv -p SIGUSR1 -- cmd`, as tini's parent-death test runs it.
    let options = ok(&["-vvv", "-p", "SIGUSR1", "--", "stage_2.py", "1", "f"]);
    assert_eq!(options.self_pdeathsig, Some(libc::SIGUSR1));
    assert!(
        matches!(options.command, Command::Single(s) if s.command == os(&["stage_2.py", "1", "f"]))
    );
}

#[test]
fn tini_environment_variables() {
    let level = |env: &[(&str, &str)]| parse_with(&["true"], env).unwrap().log_level;
    assert_eq!(level(&[("TINI_VERBOSITY", "3")]), log::LevelFilter::Debug);
    assert_eq!(level(&[("TINI_VERBOSITY", "0")]), log::LevelFilter::Error);
    assert_eq!(level(&[("TINI_VERBOSITY", "junk")]), log::LevelFilter::Warn);
    // TINI_SUBREAPER and TINI_KILL_PROCESS_GROUP are what fleet-init does anyway: accepted.
    for env in [("TINI_SUBREAPER", ""), ("TINI_KILL_PROCESS_GROUP", "1")] {
        assert!(matches!(
            parse_with(&["true"], &[env]).unwrap().command,
            Command::Single(_)
        ));
    }
}

#[test]
fn dumb_init_flags() {
    assert!(single(&["-c", "true"]).is_single_child);
    assert!(single(&["--single-child", "--", "true"]).is_single_child);
    assert!(!single(&["true"]).is_single_child);
    assert!(single_with(&["true"], &[("DUMB_INIT_SETSID", "0")]).is_single_child);
    assert!(!single_with(&["true"], &[("DUMB_INIT_SETSID", "1")]).is_single_child);
    assert!(!single_with(&["true"], &[("DUMB_INIT_SETSID", "")]).is_single_child);
    assert_eq!(
        ok(&[
            "-r",
            "15:3",
            "--rewrite",
            "SIGINT:0",
            "-r2:TERM",
            "--rewrite=1:31",
            "true"
        ])
        .rewrite,
        [(15, 3), (2, 0), (2, 15), (1, 31)]
    );
    assert_eq!(ok(&["-V"]).command, Command::Version);
    assert_eq!(ok(&["--help"]).command, Command::Help);
    assert_eq!(
        ok(&["--verbose", "true"]).log_level,
        log::LevelFilter::Debug
    );
    assert_eq!(
        parse_with(&["true"], &[("DUMB_INIT_DEBUG", "1")])
            .unwrap()
            .log_level,
        log::LevelFilter::Debug
    );
    // dumb-init's rejected rewrites are usage errors here too.
    for bad in [
        "",
        "herp",
        "herp:derp",
        "15",
        "15::12",
        "15:derp",
        "0",
        "1:32",
        "32:1",
        "0:1",
    ] {
        let error = parse_with(&["-r", bad, "true"], &[]).unwrap_err();
        assert!(
            error.0.starts_with("-r/--rewrite: expected S:T"),
            "{bad:?}: {error}"
        );
    }
    assert!(parse_with(&["-r", "15:12", "-r"], &[])
        .unwrap_err()
        .0
        .starts_with("-r needs a value"));
}

#[test]
fn events_destination_defaults_by_mode() {
    assert_eq!(ok(&["true"]).events_target(), EventsTarget::Stderr);
    assert_eq!(
        ok(&["--config", "f.json"]).events_target(),
        EventsTarget::Stdout
    );
    assert_eq!(ok(&["--reap"]).events_target(), EventsTarget::Stdout);
    for (args, env, want) in [
        (
            vec!["--events", "stdout", "true"],
            vec![],
            EventsTarget::Stdout,
        ),
        (vec!["--events=off", "true"], vec![], EventsTarget::Off),
        (
            vec!["--events", "stderr", "--config", "f"],
            vec![],
            EventsTarget::Stderr,
        ),
        (
            vec!["true"],
            vec![("FLEET_INIT_EVENTS", "stdout")],
            EventsTarget::Stdout,
        ),
        (
            vec!["--events", "off", "true"],
            vec![("FLEET_INIT_EVENTS", "stdout")],
            EventsTarget::Off,
        ),
    ] {
        assert_eq!(
            parse_with(&args, &env).unwrap().events_target(),
            want,
            "{args:?} {env:?}"
        );
    }
    let error = parse_with(&["--events", "journal", "true"], &[]).unwrap_err();
    assert_eq!(
        error.0,
        "--events: expected stdout, stderr or off, got \"journal\""
    );
}

#[test]
fn environment_variables_fill_in_unset_options() {
    let env = [
        ("FLEET_INIT_GRACE_MS", "1500"),
        ("FLEET_INIT_STATE_DIR", "/tmp/x"),
        ("FLEET_INIT_CONFIG", "/etc/fleet.json"),
    ];
    let options = parse_with(&[], &env).unwrap();
    assert_eq!(options.grace_ms, Some(1500));
    assert_eq!(options.state_dir, PathBuf::from("/tmp/x"));
    assert_eq!(options.command, Command::Config("/etc/fleet.json".into()));
    let options = parse_with(&["--grace-ms", "10", "--", "true"], &env).unwrap();
    assert_eq!(options.grace_ms, Some(10), "the flag wins");
    assert!(
        matches!(options.command, Command::Single(_)),
        "the command wins"
    );
}

#[test]
fn fleet_init_variables_are_strict() {
    let bad = OsString::from_vec(vec![b'/', 0xff]);
    for key in [
        "FLEET_INIT_STATE_DIR",
        "FLEET_INIT_GRACE_MS",
        "FLEET_INIT_CONFIG",
        "FLEET_INIT_EVENTS",
        "FLEET_INIT_LOG",
    ] {
        let value = bad.clone();
        let error = parse(&os(&[]), &move |k| (k == key).then(|| value.clone())).unwrap_err();
        assert!(
            error.0.starts_with(&format!("{key}: not valid UTF-8")),
            "{error}"
        );
        assert!(!error.0.contains('\n'));
    }
    for (key, value, want) in [
        (
            "FLEET_INIT_GRACE_MS",
            "soon",
            "FLEET_INIT_GRACE_MS: expected milliseconds",
        ),
        (
            "FLEET_INIT_GRACE_MS",
            "",
            "FLEET_INIT_GRACE_MS: expected milliseconds",
        ),
        (
            "FLEET_INIT_STATE_DIR",
            "",
            "FLEET_INIT_STATE_DIR: empty path",
        ),
        (
            "FLEET_INIT_LOG",
            "fleet_init=debug,x",
            "FLEET_INIT_LOG: expected off, error",
        ),
        (
            "FLEET_INIT_EVENTS",
            "both",
            "FLEET_INIT_EVENTS: expected stdout",
        ),
    ] {
        let error = parse_with(&["true"], &[(key, value)]).unwrap_err();
        assert!(error.0.starts_with(want), "{key}={value:?}: {error}");
    }
    assert_eq!(
        parse_with(&[], &[("FLEET_INIT_CONFIG", "")]).unwrap_err().0,
        "FLEET_INIT_CONFIG: empty path"
    );
    // Still checked when the flag (or the command) wins: never silently ignored.
    let bad = OsString::from_vec(vec![b'/', 0xff]);
    for (key, args) in [
        (
            "FLEET_INIT_STATE_DIR",
            &["--state-dir", "/tmp/s", "true"][..],
        ),
        ("FLEET_INIT_GRACE_MS", &["--grace-ms", "10", "true"][..]),
        ("FLEET_INIT_EVENTS", &["--events", "off", "true"][..]),
        ("FLEET_INIT_CONFIG", &["true"][..]),
    ] {
        let value = bad.clone();
        let error = parse(&os(args), &move |k| (k == key).then(|| value.clone())).unwrap_err();
        assert!(
            error.0.starts_with(&format!("{key}: not valid UTF-8")),
            "{key} with {args:?}: {error}"
        );
    }
    for (key, value, args, want) in [
        (
            "FLEET_INIT_GRACE_MS",
            "abc",
            &["--grace-ms", "10", "true"][..],
            "FLEET_INIT_GRACE_MS: expected milliseconds",
        ),
        (
            "FLEET_INIT_EVENTS",
            "bogus",
            &["--events", "off", "true"][..],
            "FLEET_INIT_EVENTS: expected stdout",
        ),
        (
            "FLEET_INIT_STATE_DIR",
            "",
            &["--state-dir", "/tmp/s", "true"][..],
            "FLEET_INIT_STATE_DIR: empty path",
        ),
    ] {
        let error = parse_with(args, &[(key, value)]).unwrap_err();
        assert!(
            error.0.starts_with(want),
            "{key}={value:?} {args:?}: {error}"
        );
    }
    assert!(
        parse_with(&["true"], &[("FLEET_INIT_CONFIG", "")]).is_ok(),
        "an empty FLEET_INIT_CONFIG under a command is a cleared one"
    );
    assert_eq!(
        parse_with(&["true"], &[("FLEET_INIT_LOG", "DEBUG")])
            .unwrap()
            .log_level,
        log::LevelFilter::Debug,
        "FLEET_INIT_LOG wins over the verbosity"
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    for (args, want) in [
        (vec![], "no command: use fleet-init -- COMMAND [ARG...] or fleet-init --config FILE"),
        (vec!["--bogus", "--", "true"], "unknown option --bogus (see fleet-init --help)"),
        (vec!["-x", "true"], "unknown option -x (see fleet-init --help)"),
        (vec!["--reap=yes"], "--reap takes no value"),
        (vec!["--remap-exit", "300", "--", "true"], "--remap-exit: expected an exit code from 0 to 255, got \"300\""),
        (vec!["-e", "x", "--", "true"], "--remap-exit: expected an exit code from 0 to 255, got \"x\""),
        (vec!["--pdeathsig", "BOGUS", "--", "true"], "--pdeathsig: unknown signal \"BOGUS\""),
        (vec!["-p", "BOGUS", "--", "true"], "-p: unknown signal \"BOGUS\""),
        (vec!["--grace-ms", "-1", "--", "true"], "--grace-ms: expected milliseconds from 0 to 86400000, got \"-1\""),
        (vec!["--restart", "sometimes", "--", "true"], "--restart: expected never, on-failure or always, got \"sometimes\""),
        (vec!["--max-crashes", "0", "--", "true"], "--max-crashes: expected a count from 1 to 1000000, got \"0\""),
        (vec!["--config", "a.json", "--", "true"], "give either --config FILE or -- COMMAND, not both"),
        (vec!["--config", "a.json", "--restart", "always"], "--restart, --max-crashes, --max-rss-mb, --remap-exit and --single-child are for single-command mode; set them in the config file"),
        (vec!["--config", "a.json", "-c"], "--restart, --max-crashes, --max-rss-mb, --remap-exit and --single-child are for single-command mode; set them in the config file"),
        (vec!["--reap", "--", "true"], "--reap takes no command, --config or worker options"),
        (vec!["--", ""], "the command is an empty string"),
        (vec!["--grace-ms"], "--grace-ms needs a value (see fleet-init --help)"),
        (vec!["-e"], "-e needs a value (see fleet-init --help)"),
        (vec!["--state-dir", "a\nb", "--grace-ms", "x\ny", "true"], "--grace-ms: expected milliseconds from 0 to 86400000, got \"x\\ny\""),
    ] {
        let got = parse_with(&args, &[]).unwrap_err();
        assert_eq!(got.0, want, "{args:?}");
        assert!(!got.0.contains('\n'));
    }
    assert_eq!(one_line("a\nb\tc"), "a\\nb\\tc");
}

#[test]
fn help_version_license_reap_and_check_config() {
    assert_eq!(ok(&["--help"]).command, Command::Help);
    assert_eq!(
        ok(&["-h", "--", "true"]).command,
        Command::Help,
        "help wins over a command"
    );
    assert_eq!(ok(&["--version"]).command, Command::Version);
    assert_eq!(ok(&["--reap"]).command, Command::Reap);
    assert_eq!(
        ok(&["--check-config", "f.json"]).command,
        Command::CheckConfig("f.json".into())
    );
    assert_eq!(ok(&["--pdeathsig", "KILL", "--", "x"]).pdeathsig, Some(9));
    assert!(texts::HELP.ends_with('\n'));
    assert!(texts::HELP
        .contains("\n  fleet-init [OPTIONS] -- COMMAND [ARG...]   one worker, tini-style\n"));
    for flag in [
        "--events",
        "-s ",
        "-g ",
        "-e CODE",
        "-p SIGNAL",
        "-vvv",
        "-w ",
        "-l ",
        "-c, --single-child",
        "-r, --rewrite S:T",
    ] {
        assert!(texts::HELP.contains(flag), "{flag}");
    }
    assert!(texts::HELP.lines().all(|line| line.len() <= 100));
}

#[test]
fn protected_pids_come_from_protect_and_the_environment() {
    let reap = parse_with(
        &["--reap", "--protect", "7", "--protect", "9"],
        &[("FLEET_INIT_PROTECTED_PIDS", "11, 12,")],
    )
    .unwrap();
    assert_eq!(reap.protected_pids, [7, 9, 11, 12]);
    let single = parse_with(&["--", "true"], &[("FLEET_INIT_PROTECTED_PIDS", "5")]).unwrap();
    assert_eq!(single.protected_pids, [5]);
    for (args, env, want) in [
        (
            vec!["--protect", "7", "--", "true"],
            "",
            "--protect goes with --reap; a supervising run takes protected_pids from its config or FLEET_INIT_PROTECTED_PIDS",
        ),
        (vec!["--reap", "--protect", "0"], "", "--protect: expected a pid from 1 to 4194304, got \"0\""),
        (vec!["--reap", "--protect", "x"], "", "--protect: expected a pid from 1 to 4194304, got \"x\""),
        (vec!["--reap"], "1;2", "FLEET_INIT_PROTECTED_PIDS: expected a pid from 1 to 4194304, got \"1;2\""),
    ] {
        let env: Vec<(&str, &str)> = if env.is_empty() {
            vec![]
        } else {
            vec![("FLEET_INIT_PROTECTED_PIDS", env)]
        };
        assert_eq!(parse_with(&args, &env).unwrap_err().0, want, "{args:?}");
    }
}
