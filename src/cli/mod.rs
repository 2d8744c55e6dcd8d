//! The command line in two stages: the raw flags as written (a small getopt-style scanner:
//! combined short flags like `-vvv` and `-e143`, `--long=value`, options end at the first
//! non-option or at `--`), then validated options (environment variables filled in, numbers and
//! signals checked, modes exclusive). fleet-init's own flags and tini's and dumb-init's live in
//! one table, so that their ENTRYPOINTs keep working with fleet-init swapped in.

pub mod ctl;
mod scan;
pub mod texts;

use crate::config::{RestartPolicy, DEFAULT_GRACE_MS, DEFAULT_STATE_DIR};
use scan::{scan, RawArgs};
use std::ffi::OsString;
use std::path::PathBuf;

/// Where fleet-init's own JSON-line events go (`--events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsTarget {
    Stdout,
    Stderr,
    Off,
}

impl EventsTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            EventsTarget::Stdout => "stdout",
            EventsTarget::Stderr => "stderr",
            EventsTarget::Off => "off",
        }
    }
}

/// Options of the single-command mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleOptions {
    /// Byte for byte as given: non-UTF-8 arguments pass through, as with tini.
    pub command: Vec<OsString>,
    pub restart: RestartPolicy,
    pub max_crashes: Option<u32>,
    pub max_rss_mb: Option<u64>,
    pub remap_exit: Vec<i32>,
    /// dumb-init's `-c` or `DUMB_INIT_SETSID=0`: signals go to the child only.
    pub is_single_child: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    License,
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
    /// The workers' parent-death signal (`--pdeathsig`).
    pub pdeathsig: Option<i32>,
    /// fleet-init's own parent-death signal (tini's `-p`).
    pub self_pdeathsig: Option<i32>,
    /// `--events` or FLEET_INIT_EVENTS; `None`: the mode's default.
    pub events: Option<EventsTarget>,
    /// The stderr diagnostics' level (tini's verbosity, dumb-init's `-v`, FLEET_INIT_LOG).
    pub log_level: log::LevelFilter,
    /// tini's `-w`: warn when reaping a zombie that was not a worker.
    pub is_warn_on_reap: bool,
    /// dumb-init's `-r S:T`: a received S is acted on as T; T 0 drops it.
    pub rewrite: Vec<(i32, i32)>,
    /// `--protect` and FLEET_INIT_PROTECTED_PIDS: never signalled by a reap.
    pub protected_pids: Vec<i32>,
}

impl Options {
    pub fn grace_ms_or_default(&self) -> u64 {
        self.grace_ms.unwrap_or(DEFAULT_GRACE_MS)
    }

    /// The events' destination: as chosen, else stderr with a command (so the child's stdout
    /// stays byte-identical) and stdout otherwise.
    pub fn events_target(&self) -> EventsTarget {
        match (self.events, &self.command) {
            (Some(target), _) => target,
            (None, Command::Single(_)) => EventsTarget::Stderr,
            (None, _) => EventsTarget::Stdout,
        }
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
pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Options, UsageError> {
    let raw = scan(args)?;
    validate(raw, env)
}

/// A FLEET_INIT_* variable: unset, or UTF-8 (anything else is a usage error, never ignored).
fn fleet_var(
    env: &dyn Fn(&str) -> Option<OsString>,
    key: &str,
) -> Result<Option<String>, UsageError> {
    match env(key) {
        None => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|bad| usage(&format!("{key}: not valid UTF-8: {bad:?}"))),
    }
}

/// A flag's value, else its variable's, each through `parse` (which names its source in
/// an error); the variable is parsed even when the flag wins, so a bad one is never ignored.
fn flag_or_var<T>(
    (flag, flag_name): (&Option<String>, &str),
    key: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
    parse: fn(&str, &str) -> Result<T, UsageError>,
) -> Result<Option<T>, UsageError> {
    let from_var = fleet_var(env, key)?
        .map(|text| parse(key, &text))
        .transpose()?;
    match flag {
        Some(text) => parse(flag_name, text).map(Some),
        None => Ok(from_var),
    }
}

/// A peer's variable (TINI_*, DUMB_INIT_*): read as those programs do, never an error.
fn peer_var(env: &dyn Fn(&str) -> Option<OsString>, key: &str) -> Option<String> {
    env(key).map(|value| value.to_string_lossy().into_owned())
}

fn validate(raw: RawArgs, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Options, UsageError> {
    // Each variable is checked whether or not its flag wins: a bad value is never silently
    // ignored (a `docker run` that adds the flag would otherwise hide the image's bad ENV).
    let state_dir_var = fleet_var(env, "FLEET_INIT_STATE_DIR")?;
    let (state_dir_text, state_dir_source) = match &raw.state_dir {
        Some(dir) => (Some(dir.clone()), "--state-dir"),
        None => (state_dir_var.clone(), "FLEET_INIT_STATE_DIR"),
    };
    if state_dir_var.as_deref() == Some("") {
        return Err(usage("FLEET_INIT_STATE_DIR: empty path"));
    }
    let is_state_dir_explicit = state_dir_text.is_some();
    let state_dir = match state_dir_text {
        Some(dir) if dir.is_empty() => {
            return Err(usage(&format!("{state_dir_source}: empty path")))
        }
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let grace_ms = flag_or_var(
        (&raw.grace_ms, "--grace-ms"),
        "FLEET_INIT_GRACE_MS",
        env,
        parse_grace,
    )?;
    let events = flag_or_var(
        (&raw.events, "--events"),
        "FLEET_INIT_EVENTS",
        env,
        parse_events,
    )?;
    let pdeathsig = parse_signal_option("--pdeathsig", raw.pdeathsig.as_deref())?;
    let self_pdeathsig = parse_signal_option("-p", raw.self_pdeathsig.as_deref())?;
    let rewrite = raw
        .rewrite
        .iter()
        .map(|text| parse_rewrite(text))
        .collect::<Result<Vec<_>, _>>()?;
    let log_level = log_level(&raw, env)?;
    let is_warn_on_reap = raw.is_warn_on_reap;
    let protected_pids = protected_pids(&raw, env)?;
    let command = command(raw, env)?;
    Ok(Options {
        command,
        state_dir,
        grace_ms,
        is_state_dir_explicit,
        pdeathsig,
        self_pdeathsig,
        events,
        log_level,
        is_warn_on_reap,
        rewrite,
        protected_pids,
    })
}

/// `--protect PID` (only with `--reap`) and FLEET_INIT_PROTECTED_PIDS (comma-separated).
fn protected_pids(
    raw: &RawArgs,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Vec<i32>, UsageError> {
    if !raw.protect.is_empty() && !raw.is_reap {
        return Err(usage(
            "--protect goes with --reap; a supervising run takes protected_pids from its config or FLEET_INIT_PROTECTED_PIDS",
        ));
    }
    let from_env = fleet_var(env, "FLEET_INIT_PROTECTED_PIDS")?.unwrap_or_default();
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

fn parse_grace(source: &str, text: &str) -> Result<u64, UsageError> {
    parse_number(source, text, 0, 86_400_000, "milliseconds")
}

fn parse_events(source: &str, text: &str) -> Result<EventsTarget, UsageError> {
    match text {
        "stdout" => Ok(EventsTarget::Stdout),
        "stderr" => Ok(EventsTarget::Stderr),
        "off" => Ok(EventsTarget::Off),
        _ => Err(usage(&format!(
            "{source}: expected stdout, stderr or off, got {text:?}"
        ))),
    }
}

fn parse_signal_option(flag: &str, text: Option<&str>) -> Result<Option<i32>, UsageError> {
    match text {
        None => Ok(None),
        Some(text) => crate::signals::parse(text)
            .map(Some)
            .ok_or_else(|| usage(&format!("{flag}: unknown signal {text:?}"))),
    }
}

/// dumb-init's `S:T`: S a signal from 1 to 31 as a number or a name, T one too or 0 (drop).
fn parse_rewrite(text: &str) -> Result<(i32, i32), UsageError> {
    let bad = || {
        usage(&format!(
            "-r/--rewrite: expected S:T with S a signal from 1 to 31 and T one too or 0 (drop), got {text:?}"
        ))
    };
    let (from, to) = text.split_once(':').ok_or_else(bad)?;
    let from = crate::signals::parse(from)
        .filter(|signal| *signal <= 31)
        .ok_or_else(bad)?;
    let to = if to == "0" {
        0
    } else {
        crate::signals::parse(to)
            .filter(|signal| *signal <= 31)
            .ok_or_else(bad)?
    };
    Ok((from, to))
}

/// FLEET_INIT_LOG wins; else tini's verbosity (default 1: warnings; `-v` info, `-vv` debug,
/// `-vvv` trace; TINI_VERBOSITY sets the base as tini's atoi does) and dumb-init's debug.
fn log_level(
    raw: &RawArgs,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<log::LevelFilter, UsageError> {
    if let Some(text) = fleet_var(env, "FLEET_INIT_LOG")? {
        return text.parse::<log::LevelFilter>().map_err(|_| {
            usage(&format!(
                "FLEET_INIT_LOG: expected off, error, warn, info, debug or trace, got {text:?}"
            ))
        });
    }
    let base = peer_var(env, "TINI_VERBOSITY")
        .and_then(|text| text.trim().parse::<u8>().ok())
        .unwrap_or(1);
    let mut verbosity = base.saturating_add(raw.verbose_count);
    let is_dumb_init_debug = peer_var(env, "DUMB_INIT_DEBUG").as_deref() == Some("1");
    if raw.is_debug || is_dumb_init_debug {
        verbosity = verbosity.max(3);
    }
    Ok(match verbosity {
        0 => log::LevelFilter::Error,
        1 => log::LevelFilter::Warn,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    })
}

fn command(raw: RawArgs, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Command, UsageError> {
    if raw.is_help {
        return Ok(Command::Help);
    }
    if raw.is_version {
        return Ok(Command::Version);
    }
    if raw.is_license {
        return Ok(Command::License);
    }
    if let Some(path) = raw.check_config {
        return Ok(Command::CheckConfig(PathBuf::from(path)));
    }
    let has_single_flags = raw.restart.is_some()
        || raw.max_crashes.is_some()
        || raw.max_rss_mb.is_some()
        || !raw.remap_exit.is_empty()
        || raw.is_single_child;
    if raw.is_reap {
        if !raw.command.is_empty() || raw.config.is_some() || has_single_flags {
            return Err(usage("--reap takes no command, --config or worker options"));
        }
        return Ok(Command::Reap);
    }
    // A command on the line wins over FLEET_INIT_CONFIG from the image's environment (which
    // must still be UTF-8; an empty one, a derived image's way to clear it, is then fine).
    let config_var = fleet_var(env, "FLEET_INIT_CONFIG")?;
    let config = match (raw.config, raw.command.is_empty()) {
        (Some(_), false) => {
            return Err(usage("give either --config FILE or -- COMMAND, not both"));
        }
        (Some(path), true) => Some((path, "--config")),
        (None, true) => config_var.map(|path| (path, "FLEET_INIT_CONFIG")),
        (None, false) => None,
    };
    if let Some((path, source)) = config {
        if path.is_empty() {
            return Err(usage(&format!("{source}: empty path")));
        }
        if has_single_flags {
            return Err(usage(
                "--restart, --max-crashes, --max-rss-mb, --remap-exit and --single-child are for \
                 single-command mode; set them in the config file",
            ));
        }
        return Ok(Command::Config(PathBuf::from(path)));
    }
    if raw.command.is_empty() {
        return Err(usage(
            "no command: use fleet-init -- COMMAND [ARG...] or fleet-init --config FILE",
        ));
    }
    if raw
        .command
        .first()
        .is_some_and(|program| program.is_empty())
    {
        return Err(usage("the command is an empty string"));
    }
    single(
        raw.command,
        raw.restart,
        raw.max_crashes,
        raw.max_rss_mb,
        &raw.remap_exit,
        raw.is_single_child,
        env,
    )
}

fn single(
    command: Vec<OsString>,
    restart: Option<String>,
    max_crashes: Option<String>,
    max_rss_mb: Option<String>,
    remap_exit: &[String],
    is_single_child: bool,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Command, UsageError> {
    let restart = match restart.as_deref() {
        None | Some("never") => RestartPolicy::Never,
        Some("on-failure") => RestartPolicy::OnFailure,
        Some("always") => RestartPolicy::Always,
        Some(other) => {
            return Err(usage(&format!(
                "--restart: expected never, on-failure or always, got {other:?}"
            )))
        }
    };
    let max_crashes = match &max_crashes {
        Some(text) => {
            let n = parse_number("--max-crashes", text, 1, 1_000_000, "a count")?;
            Some(u32::try_from(n).map_err(|_| usage("--max-crashes: too large"))?)
        }
        None => None,
    };
    let max_rss_mb = match &max_rss_mb {
        Some(text) => Some(parse_number("--max-rss-mb", text, 1, 16_777_216, "MiB")?),
        None => None,
    };
    let remap_exit = remap_exit
        .iter()
        .map(|text| {
            parse_number("--remap-exit", text, 0, 255, "an exit code")
                .and_then(|n| i32::try_from(n).map_err(|_| usage("--remap-exit: too large")))
        })
        .collect::<Result<Vec<i32>, UsageError>>()?;
    let is_setsid_off = peer_var(env, "DUMB_INIT_SETSID").as_deref() == Some("0");
    Ok(Command::Single(SingleOptions {
        command,
        restart,
        max_crashes,
        max_rss_mb,
        remap_exit,
        is_single_child: is_single_child || is_setsid_off,
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

/// Every usage error is one line, whatever the input held (a newline in a path included).
fn usage(message: &str) -> UsageError {
    UsageError(one_line(message))
}

/// `text` with its control characters (newlines first of all) escaped.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests;
