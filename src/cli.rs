//! The command line in two stages: the raw flags as argh parsed them, then validated options
//! (environment variables filled in, numbers and signals checked, modes exclusive).

use crate::config::{RestartPolicy, DEFAULT_GRACE_MS, DEFAULT_STATE_DIR};
use argh::FromArgs;
use std::ffi::OsString;
use std::path::PathBuf;

/// fleet-init: a container init (PID 1) that reaps zombies, forwards signals and supervises
/// workers.
///
/// Usage: fleet-init [OPTIONS] -- COMMAND [ARG...]
///        fleet-init [OPTIONS] --config FILE
///        fleet-init --reap [--state-dir DIR]
///        fleet-init --check-config FILE
#[derive(FromArgs, Debug)]
struct RawArgs {
    /// the workers' config file (JSON) [FLEET_INIT_CONFIG]
    #[argh(option)]
    config: Option<String>,
    /// the handoff registry's directory, default /run/fleet-init [FLEET_INIT_STATE_DIR]
    #[argh(option)]
    state_dir: Option<String>,
    /// shutdown grace before SIGKILL in ms, default 8000 [FLEET_INIT_GRACE_MS]
    #[argh(option)]
    grace_ms: Option<String>,
    /// single-command mode: never (default), on-failure or always
    #[argh(option)]
    restart: Option<String>,
    /// single-command mode: crashes that stop the restarts (default 5)
    #[argh(option)]
    max_crashes: Option<String>,
    /// single-command mode: memory limit (anonymous RSS of the tree) in MiB
    #[argh(option)]
    max_rss_mb: Option<String>,
    /// report this child exit code as 0 (repeatable)
    #[argh(option)]
    remap_exit: Vec<String>,
    /// parent-death signal of the workers (e.g. SIGKILL)
    #[argh(option)]
    pdeathsig: Option<String>,
    /// consume handoff files, kill orphaned process trees, exit
    #[argh(switch)]
    reap: bool,
    /// with --reap: a pid never to signal (repeatable) [FLEET_INIT_PROTECTED_PIDS, commas]
    #[argh(option)]
    protect: Vec<String>,
    /// validate a config file, print what is wrong, exit
    #[argh(option)]
    check_config: Option<String>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// the command to run (after --)
    #[argh(positional, greedy)]
    command: Vec<String>,
}

/// Options of the single-command mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleOptions {
    pub command: Vec<String>,
    pub restart: RestartPolicy,
    pub max_crashes: Option<u32>,
    pub max_rss_mb: Option<u64>,
    pub remap_exit: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help(String),
    Version,
    CheckConfig(PathBuf),
    Reap,
    Single(SingleOptions),
    Config(PathBuf),
}

/// Validated options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub command: Command,
    pub state_dir: PathBuf,
    /// Set by `--grace-ms` or FLEET_INIT_GRACE_MS; otherwise the config file's or the default.
    pub grace_ms: Option<u64>,
    pub is_state_dir_explicit: bool,
    pub pdeathsig: Option<i32>,
    /// `--protect` and FLEET_INIT_PROTECTED_PIDS: never signalled by a reap.
    pub protected_pids: Vec<i32>,
}

impl Options {
    pub fn grace_ms_or_default(&self) -> u64 {
        self.grace_ms.unwrap_or(DEFAULT_GRACE_MS)
    }
}

/// A usage error: one line for stderr, exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses `args` (without the program name); `env` looks up environment variables.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Options, UsageError> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let raw = match RawArgs::from_args(&["fleet-init"], &strs) {
        Ok(raw) => raw,
        Err(early) => {
            return match early.status {
                Ok(()) => Ok(Options {
                    command: Command::Help(early.output),
                    state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                    grace_ms: None,
                    is_state_dir_explicit: false,
                    pdeathsig: None,
                    protected_pids: Vec::new(),
                }),
                Err(()) => Err(UsageError(first_line(&early.output))),
            };
        }
    };
    validate(raw, env)
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments");
    format!("{} (see fleet-init --help)", line.trim())
}

fn validate(raw: RawArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Options, UsageError> {
    let state_dir_text = raw
        .state_dir
        .clone()
        .or_else(|| env("FLEET_INIT_STATE_DIR"));
    let is_state_dir_explicit = state_dir_text.is_some();
    let state_dir = match state_dir_text {
        Some(dir) if dir.is_empty() => return Err(usage("--state-dir: empty path")),
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let grace_ms = match (&raw.grace_ms, env("FLEET_INIT_GRACE_MS")) {
        (Some(text), _) => Some(parse_number(
            "--grace-ms",
            text,
            0,
            86_400_000,
            "milliseconds",
        )?),
        (None, Some(text)) => Some(parse_number(
            "FLEET_INIT_GRACE_MS",
            &text,
            0,
            86_400_000,
            "milliseconds",
        )?),
        (None, None) => None,
    };
    let pdeathsig = match &raw.pdeathsig {
        Some(text) => Some(
            crate::signals::parse(text)
                .ok_or_else(|| usage(&format!("--pdeathsig: unknown signal {text:?}")))?,
        ),
        None => None,
    };
    let protected_pids = protected_pids(&raw, env)?;
    let command = command(raw, env)?;
    Ok(Options {
        command,
        state_dir,
        grace_ms,
        is_state_dir_explicit,
        pdeathsig,
        protected_pids,
    })
}

/// `--protect PID` (only with `--reap`) and FLEET_INIT_PROTECTED_PIDS (comma-separated).
fn protected_pids(
    raw: &RawArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<i32>, UsageError> {
    if !raw.protect.is_empty() && !raw.reap {
        return Err(usage(
            "--protect goes with --reap; a supervising run takes protected_pids from its config or FLEET_INIT_PROTECTED_PIDS",
        ));
    }
    let from_env = env("FLEET_INIT_PROTECTED_PIDS").unwrap_or_default();
    let flags = raw.protect.iter().map(|text| ("--protect", text.as_str()));
    let listed = from_env
        .split(',')
        .filter(|text| !text.trim().is_empty())
        .map(|text| ("FLEET_INIT_PROTECTED_PIDS", text));
    flags
        .chain(listed)
        .map(|(flag, text)| {
            parse_number(flag, text, 1, 4_194_304, "a pid")
                .and_then(|n| i32::try_from(n).map_err(|_| usage(&format!("{flag}: too large"))))
        })
        .collect()
}

fn command(raw: RawArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, UsageError> {
    if raw.version {
        return Ok(Command::Version);
    }
    if let Some(path) = raw.check_config {
        return Ok(Command::CheckConfig(PathBuf::from(path)));
    }
    let has_single_flags = raw.restart.is_some()
        || raw.max_crashes.is_some()
        || raw.max_rss_mb.is_some()
        || !raw.remap_exit.is_empty();
    if raw.reap {
        if !raw.command.is_empty() || raw.config.is_some() || has_single_flags {
            return Err(usage("--reap takes no command, --config or worker options"));
        }
        return Ok(Command::Reap);
    }
    // A command on the line wins over FLEET_INIT_CONFIG from the image's environment.
    let config = match (raw.config, raw.command.is_empty()) {
        (Some(_), false) => {
            return Err(usage("give either --config FILE or -- COMMAND, not both"));
        }
        (Some(path), true) => Some(path),
        (None, true) => env("FLEET_INIT_CONFIG"),
        (None, false) => None,
    };
    if let Some(path) = config {
        if path.is_empty() {
            return Err(usage("--config: empty path"));
        }
        if has_single_flags {
            return Err(usage(
                "--restart, --max-crashes, --max-rss-mb and --remap-exit are for single-command \
                 mode; set them in the config file",
            ));
        }
        return Ok(Command::Config(PathBuf::from(path)));
    }
    if raw.command.is_empty() {
        return Err(usage(
            "no command: use fleet-init -- COMMAND [ARG...] or fleet-init --config FILE",
        ));
    }
    if raw.command.first().is_some_and(String::is_empty) {
        return Err(usage("the command is an empty string"));
    }
    let restart = match raw.restart.as_deref() {
        None | Some("never") => RestartPolicy::Never,
        Some("on-failure") => RestartPolicy::OnFailure,
        Some("always") => RestartPolicy::Always,
        Some(other) => {
            return Err(usage(&format!(
                "--restart: expected never, on-failure or always, got {other:?}"
            )))
        }
    };
    let max_crashes = match &raw.max_crashes {
        Some(text) => {
            let n = parse_number("--max-crashes", text, 1, 1_000_000, "a count")?;
            Some(u32::try_from(n).map_err(|_| usage("--max-crashes: too large"))?)
        }
        None => None,
    };
    let max_rss_mb = match &raw.max_rss_mb {
        Some(text) => Some(parse_number("--max-rss-mb", text, 1, 16_777_216, "MiB")?),
        None => None,
    };
    let remap_exit = raw
        .remap_exit
        .iter()
        .map(|text| {
            parse_number("--remap-exit", text, 0, 255, "an exit code")
                .and_then(|n| i32::try_from(n).map_err(|_| usage("--remap-exit: too large")))
        })
        .collect::<Result<Vec<i32>, UsageError>>()?;
    Ok(Command::Single(SingleOptions {
        command: raw.command,
        restart,
        max_crashes,
        max_rss_mb,
        remap_exit,
    }))
}

fn parse_number(flag: &str, text: &str, min: u64, max: u64, what: &str) -> Result<u64, UsageError> {
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(usage(&format!(
            "{flag}: expected {what} from {min} to {max}, got {text:?}"
        ))),
    }
}

fn usage(message: &str) -> UsageError {
    UsageError(message.to_string())
}

/// The process's arguments as strings; a non-UTF-8 argument is a usage error.
pub fn args_from_os(args: impl Iterator<Item = OsString>) -> Result<Vec<String>, UsageError> {
    args.map(|arg| {
        arg.into_string()
            .map_err(|bad| usage(&format!("argument is not valid UTF-8: {bad:?}")))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Options, UsageError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&args, &move |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    fn single(args: &[&str]) -> SingleOptions {
        match parse_with(args, &[]).unwrap().command {
            Command::Single(single) => single,
            other => panic!("not single: {other:?}"),
        }
    }

    #[test]
    fn single_command_mode_takes_everything_after_the_command() {
        let s = single(&["--", "sh", "-c", "exit 3"]);
        assert_eq!(s.command, ["sh", "-c", "exit 3"]);
        assert_eq!(s.restart, RestartPolicy::Never);
        let s = single(&["sh", "-c", "--config", "x"]);
        assert_eq!(s.command, ["sh", "-c", "--config", "x"]);
        let s = single(&[
            "--remap-exit",
            "143",
            "--remap-exit",
            "3",
            "--restart",
            "on-failure",
            "--max-crashes",
            "2",
            "--",
            "true",
        ]);
        assert_eq!(s.remap_exit, [143, 3]);
        assert_eq!(s.restart, RestartPolicy::OnFailure);
        assert_eq!(s.max_crashes, Some(2));
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
    fn bad_input_is_one_clear_line() {
        for (args, want) in [
            (vec![], "no command: use fleet-init -- COMMAND [ARG...] or fleet-init --config FILE"),
            (vec!["--bogus", "--", "true"], "Unrecognized argument: --bogus (see fleet-init --help)"),
            (vec!["--remap-exit", "300", "--", "true"], "--remap-exit: expected an exit code from 0 to 255, got \"300\""),
            (vec!["--remap-exit", "x", "--", "true"], "--remap-exit: expected an exit code from 0 to 255, got \"x\""),
            (vec!["--pdeathsig", "BOGUS", "--", "true"], "--pdeathsig: unknown signal \"BOGUS\""),
            (vec!["--grace-ms", "-1", "--", "true"], "--grace-ms: expected milliseconds from 0 to 86400000, got \"-1\""),
            (vec!["--grace-ms", "99999999999999999999", "--", "true"], "--grace-ms: expected milliseconds from 0 to 86400000, got \"99999999999999999999\""),
            (vec!["--restart", "sometimes", "--", "true"], "--restart: expected never, on-failure or always, got \"sometimes\""),
            (vec!["--max-crashes", "0", "--", "true"], "--max-crashes: expected a count from 1 to 1000000, got \"0\""),
            (vec!["--config", "a.json", "--", "true"], "give either --config FILE or -- COMMAND, not both"),
            (vec!["--config", "a.json", "--restart", "always"], "--restart, --max-crashes, --max-rss-mb and --remap-exit are for single-command mode; set them in the config file"),
            (vec!["--reap", "--", "true"], "--reap takes no command, --config or worker options"),
            (vec!["--", ""], "the command is an empty string"),
            (vec!["--protect", "7", "--", "true"], "--protect goes with --reap; a supervising run takes protected_pids from its config or FLEET_INIT_PROTECTED_PIDS"),
            (vec!["--reap", "--protect", "0"], "--protect: expected a pid from 1 to 4194304, got \"0\""),
            (vec!["--reap", "--protect", "x"], "--protect: expected a pid from 1 to 4194304, got \"x\""),
            (vec!["--grace-ms"], "No value provided for option '--grace-ms'. (see fleet-init --help)"),
        ] {
            let got = parse_with(&args, &[]).unwrap_err();
            assert_eq!(got.0, want, "{args:?}");
            assert!(!got.0.contains('\n'));
        }
        let got = parse_with(&["--", "true"], &[("FLEET_INIT_GRACE_MS", "soon")]).unwrap_err();
        assert!(got.0.starts_with("FLEET_INIT_GRACE_MS: expected"), "{got}");
    }

    #[test]
    fn help_version_reap_and_check_config() {
        assert!(matches!(
            parse_with(&["--help"], &[]).unwrap().command,
            Command::Help(text) if text.contains("--grace-ms")
        ));
        assert_eq!(
            parse_with(&["--version"], &[]).unwrap().command,
            Command::Version
        );
        assert_eq!(parse_with(&["--reap"], &[]).unwrap().command, Command::Reap);
        let reap = parse_with(
            &["--reap", "--protect", "7", "--protect", "9"],
            &[("FLEET_INIT_PROTECTED_PIDS", "11, 12,")],
        )
        .unwrap();
        assert_eq!(reap.protected_pids, [7, 9, 11, 12]);
        let bad = parse_with(&["--reap"], &[("FLEET_INIT_PROTECTED_PIDS", "1;2")]).unwrap_err();
        assert_eq!(
            bad.0,
            "FLEET_INIT_PROTECTED_PIDS: expected a pid from 1 to 4194304, got \"1;2\""
        );
        assert_eq!(
            parse_with(&["--check-config", "f.json"], &[])
                .unwrap()
                .command,
            Command::CheckConfig("f.json".into())
        );
        assert_eq!(
            parse_with(&["--pdeathsig", "KILL", "--", "x"], &[])
                .unwrap()
                .pdeathsig,
            Some(9)
        );
    }
}
