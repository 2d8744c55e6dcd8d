//! `fleet-init ctl [--state-dir DIR] [--timeout-ms N] VERB [ARG...]`: the control client's
//! command line, validated into a request (a usage error exits 2 before anything connects).

use super::{one_line, UsageError};
use crate::config::DEFAULT_STATE_DIR;
use crate::control::protocol::{Names, Request, Verb};
use std::ffi::OsString;
use std::path::PathBuf;

/// How long the client waits for fleet-init by default (connect, send, reply).
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

pub const HELP: &str = "\
Usage: fleet-init ctl [--state-dir DIR] [--timeout-ms N] VERB [ARG...]

Verbs:
  status [--json] [WORKER...]   state, pid, uptime, runs, crashes, last exit, memory
  stop WORKER...                stop and keep down until `start` (likely_cause \"stopped\")
  start WORKER...               start a stopped, failed or completed worker (a new run)
  restart WORKER...             stop, then start at once
  signal SIGNAL WORKER...       send SIGNAL to the workers (by their signal_target)
  shutdown                      shut fleet-init down, as SIGTERM does
  ready                         exit 0 when every worker is ready or completed, else 1

Options:
  --state-dir DIR    fleet-init's state dir, default /run/fleet-init [FLEET_INIT_STATE_DIR]
  --timeout-ms N     how long to wait for an answer, default 5000

Exit codes: 0 done, 1 refused or failed (reason on stderr), 2 usage error,
3 no fleet-init answers (no socket, connection refused, no reply in time).
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlOptions {
    pub state_dir: PathBuf,
    pub timeout_ms: u64,
    pub request: Request,
    /// `status --json`: the reply's object as is.
    pub is_json: bool,
    /// `--help`: print the usage and exit 0.
    pub is_help: bool,
}

/// `args` are those after `ctl`.
pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<CtlOptions, UsageError> {
    let mut words = Vec::with_capacity(args.len());
    for arg in args {
        let text = arg
            .to_str()
            .ok_or_else(|| usage(&format!("not valid UTF-8: {arg:?}")))?;
        words.push(text.to_string());
    }
    let mut state_dir = None;
    let mut timeout_ms = DEFAULT_TIMEOUT_MS;
    let mut rest = words.into_iter().peekable();
    // Options come before the verb.
    while let Some(word) = rest.peek().cloned() {
        if !word.starts_with('-') {
            break;
        }
        rest.next();
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (word.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| rest.next())
                .ok_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--state-dir" => state_dir = Some(value("--state-dir")?),
            "--timeout-ms" => {
                let text = value("--timeout-ms")?;
                timeout_ms = match text.parse::<u64>() {
                    Ok(n) if (1..=3_600_000).contains(&n) => n,
                    _ => {
                        return Err(usage(&format!(
                            "--timeout-ms: expected milliseconds from 1 to 3600000, got {text:?}"
                        )))
                    }
                };
            }
            "-h" | "--help" => return Ok(help(state_dir)),
            _ => return Err(usage(&format!("unknown option {flag:?}"))),
        }
    }
    let state_dir = match state_dir {
        Some(dir) => Some((dir, "--state-dir")),
        None => match env("FLEET_INIT_STATE_DIR") {
            None => None,
            Some(value) => Some((
                value.into_string().map_err(|bad| {
                    usage(&format!("FLEET_INIT_STATE_DIR: not valid UTF-8: {bad:?}"))
                })?,
                "FLEET_INIT_STATE_DIR",
            )),
        },
    };
    let state_dir = match state_dir {
        Some((dir, source)) if dir.is_empty() => {
            return Err(usage(&format!("{source}: empty path")))
        }
        Some((dir, _)) => PathBuf::from(dir),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let verb_word = rest
        .next()
        .ok_or_else(|| usage("no verb: status, stop, start, restart, signal, shutdown or ready"))?;
    let verb = Verb::parse(&verb_word).ok_or_else(|| {
        usage(&format!(
            "unknown verb {verb_word:?}: expected status, stop, start, restart, signal, shutdown or ready"
        ))
    })?;
    let mut is_json = false;
    let mut signal = None;
    let mut workers = Vec::new();
    for word in rest {
        if verb == Verb::Status && word == "--json" {
            is_json = true;
        } else if verb == Verb::Signal && signal.is_none() {
            signal = Some(
                crate::signals::parse(&word)
                    .ok_or_else(|| usage(&format!("signal: unknown signal {word:?}")))?,
            );
        } else if word.starts_with('-') {
            return Err(usage(&format!(
                "{}: unknown option {word:?}",
                verb.as_str()
            )));
        } else {
            workers.push(word);
        }
    }
    if verb == Verb::Signal && signal.is_none() {
        return Err(usage("signal: expected SIGNAL WORKER..."));
    }
    match (verb.workers(), workers.is_empty()) {
        (Names::Required, true) => {
            return Err(usage(&format!(
                "{}: name at least one worker",
                verb.as_str()
            )))
        }
        (Names::None, false) => {
            return Err(usage(&format!("{} takes no worker names", verb.as_str())))
        }
        _ => {}
    }
    Ok(CtlOptions {
        state_dir,
        timeout_ms,
        request: Request {
            verb,
            workers,
            signal,
        },
        is_json,
        is_help: false,
    })
}

fn help(state_dir: Option<String>) -> CtlOptions {
    CtlOptions {
        state_dir: PathBuf::from(state_dir.unwrap_or_default()),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        request: Request {
            verb: Verb::Status,
            workers: Vec::new(),
            signal: None,
        },
        is_json: false,
        is_help: true,
    }
}

fn usage(message: &str) -> UsageError {
    UsageError(format!("ctl: {}", one_line(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str], env: &[(&str, &str)]) -> Result<CtlOptions, UsageError> {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        parse(&args, &|key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn good_command_lines() {
        let status = parse_words(&["status", "--json", "a", "b"], &[]).unwrap();
        assert_eq!(status.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert!(status.is_json);
        assert_eq!(status.request.workers, ["a", "b"]);
        let signal = parse_words(&["--state-dir=/s", "signal", "HUP", "a"], &[]).unwrap();
        assert_eq!(signal.state_dir, PathBuf::from("/s"));
        assert_eq!(signal.request.signal, Some(libc::SIGHUP));
        let from_env = parse_words(&["ready"], &[("FLEET_INIT_STATE_DIR", "/e")]).unwrap();
        assert_eq!(from_env.state_dir, PathBuf::from("/e"));
        let flag_wins = parse_words(
            &["--state-dir", "/f", "shutdown"],
            &[("FLEET_INIT_STATE_DIR", "/e")],
        )
        .unwrap();
        assert_eq!(flag_wins.state_dir, PathBuf::from("/f"));
        let timeout = parse_words(&["--timeout-ms", "250", "stop", "w"], &[]).unwrap();
        assert_eq!(timeout.timeout_ms, 250);
        assert!(parse_words(&["--help"], &[]).unwrap().is_help);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        for (words, want) in [
            (&[][..], "no verb"),
            (&["frobnicate"][..], "unknown verb \"frobnicate\""),
            (&["stop"][..], "stop: name at least one worker"),
            (&["start"][..], "name at least one worker"),
            (&["signal"][..], "expected SIGNAL WORKER"),
            (&["signal", "NOPE", "a"][..], "unknown signal \"NOPE\""),
            (&["signal", "HUP"][..], "name at least one worker"),
            (&["ready", "a"][..], "ready takes no worker names"),
            (&["shutdown", "a"][..], "takes no worker names"),
            (&["status", "--yaml"][..], "unknown option \"--yaml\""),
            (&["--bogus", "status"][..], "unknown option \"--bogus\""),
            (&["--state-dir"][..], "--state-dir needs a value"),
            (
                &["--state-dir", "", "status"][..],
                "--state-dir: empty path",
            ),
            (
                &["--timeout-ms", "0", "status"][..],
                "--timeout-ms: expected",
            ),
            (
                &["--timeout-ms", "x", "status"][..],
                "--timeout-ms: expected",
            ),
        ] {
            let error = parse_words(words, &[]).unwrap_err().0;
            assert!(error.contains(want), "{words:?}: {error}");
            assert!(error.starts_with("ctl: "), "{error}");
        }
        let error = parse_words(&["status"], &[("FLEET_INIT_STATE_DIR", "")]).unwrap_err();
        assert!(
            error.0.contains("FLEET_INIT_STATE_DIR: empty path"),
            "{error}"
        );
    }
}
