//! The first stage: the flags as written, scanned as getopt scans them with a leading `+`, from
//! one table of fleet-init's, tini's and dumb-init's spellings. No value is checked here.

use super::{usage, UsageError};
use std::ffi::{OsStr, OsString};

/// The flags as written, before any check of their values.
#[derive(Debug, Default)]
pub(super) struct RawArgs {
    pub(super) config: Option<String>,
    pub(super) state_dir: Option<String>,
    pub(super) grace_ms: Option<String>,
    pub(super) events: Option<String>,
    pub(super) restart: Option<String>,
    pub(super) max_crashes: Option<String>,
    pub(super) max_rss_mb: Option<String>,
    pub(super) remap_exit: Vec<String>,
    pub(super) pdeathsig: Option<String>,
    pub(super) self_pdeathsig: Option<String>,
    pub(super) check_config: Option<String>,
    pub(super) rewrite: Vec<String>,
    /// `--protect PID` (with `--reap`), repeatable.
    pub(super) protect: Vec<String>,
    pub(super) is_reap: bool,
    pub(super) is_version: bool,
    pub(super) is_help: bool,
    pub(super) is_license: bool,
    pub(super) is_warn_on_reap: bool,
    pub(super) is_single_child: bool,
    /// Each `-v` adds one.
    pub(super) verbose_count: u8,
    /// dumb-init's `--verbose`: its debug output.
    pub(super) is_debug: bool,
    pub(super) command: Vec<OsString>,
}

/// What a flag is, whichever of its spellings was used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    Config,
    StateDir,
    GraceMs,
    Events,
    Restart,
    MaxCrashes,
    MaxRssMb,
    RemapExit,
    Pdeathsig,
    SelfPdeathsig,
    CheckConfig,
    Rewrite,
    Protect,
    Reap,
    Version,
    Help,
    License,
    WarnOnReap,
    SingleChild,
    Verbose,
    Debug,
    /// tini's `-s` and `-g`: accepted, fleet-init does both anyway.
    Accepted,
}

impl Flag {
    fn takes_value(self) -> bool {
        matches!(
            self,
            Flag::Config
                | Flag::StateDir
                | Flag::GraceMs
                | Flag::Events
                | Flag::Restart
                | Flag::MaxCrashes
                | Flag::MaxRssMb
                | Flag::RemapExit
                | Flag::Pdeathsig
                | Flag::SelfPdeathsig
                | Flag::CheckConfig
                | Flag::Rewrite
                | Flag::Protect
        )
    }
}

const LONG_FLAGS: &[(&str, Flag)] = &[
    ("config", Flag::Config),
    ("state-dir", Flag::StateDir),
    ("grace-ms", Flag::GraceMs),
    ("events", Flag::Events),
    ("restart", Flag::Restart),
    ("max-crashes", Flag::MaxCrashes),
    ("max-rss-mb", Flag::MaxRssMb),
    ("remap-exit", Flag::RemapExit),
    ("pdeathsig", Flag::Pdeathsig),
    ("check-config", Flag::CheckConfig),
    ("rewrite", Flag::Rewrite),
    ("reap", Flag::Reap),
    ("protect", Flag::Protect),
    ("version", Flag::Version),
    ("help", Flag::Help),
    ("single-child", Flag::SingleChild),
    ("verbose", Flag::Debug),
];

const SHORT_FLAGS: &[(char, Flag)] = &[
    ('s', Flag::Accepted),
    ('g', Flag::Accepted),
    ('e', Flag::RemapExit),
    ('p', Flag::SelfPdeathsig),
    ('v', Flag::Verbose),
    ('w', Flag::WarnOnReap),
    ('l', Flag::License),
    ('h', Flag::Help),
    ('V', Flag::Version),
    ('c', Flag::SingleChild),
    ('r', Flag::Rewrite),
];

/// getopt with a leading `+`: options stop at the first argument that is not one (so
/// `fleet-init sh -c 'exit 3'` runs `sh -c 'exit 3'`), or after `--`.
pub(super) fn scan(args: &[OsString]) -> Result<RawArgs, UsageError> {
    let mut raw = RawArgs::default();
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        index += 1;
        let bytes = arg.as_encoded_bytes();
        if bytes == b"--" {
            raw.command = args.get(index..).unwrap_or_default().to_vec();
            return Ok(raw);
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            raw.command = args
                .get(index.saturating_sub(1)..)
                .unwrap_or_default()
                .to_vec();
            return Ok(raw);
        }
        let text = utf8("an option", arg)?;
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let flag = LONG_FLAGS
                .iter()
                .find(|(long_name, _)| *long_name == name)
                .map(|(_, flag)| *flag)
                .ok_or_else(|| {
                    usage(&format!("unknown option --{name} (see fleet-init --help)"))
                })?;
            let value = match (flag.takes_value(), inline) {
                (false, None) => None,
                (false, Some(_)) => return Err(usage(&format!("--{name} takes no value"))),
                (true, Some(value)) => Some(value),
                (true, None) => Some(next_value(args, &mut index, &format!("--{name}"))?),
            };
            apply(&mut raw, flag, value);
            continue;
        }
        let cluster: Vec<char> = text.chars().skip(1).collect();
        let mut position = 0;
        while let Some(letter) = cluster.get(position).copied() {
            position += 1;
            let flag = SHORT_FLAGS
                .iter()
                .find(|(short, _)| *short == letter)
                .map(|(_, flag)| *flag)
                .ok_or_else(|| {
                    usage(&format!("unknown option -{letter} (see fleet-init --help)"))
                })?;
            if !flag.takes_value() {
                apply(&mut raw, flag, None);
                continue;
            }
            let rest: String = cluster.get(position..).unwrap_or_default().iter().collect();
            let value = if rest.is_empty() {
                next_value(args, &mut index, &format!("-{letter}"))?
            } else {
                rest
            };
            apply(&mut raw, flag, Some(value));
            break;
        }
    }
    Ok(raw)
}

fn next_value(args: &[OsString], index: &mut usize, flag: &str) -> Result<String, UsageError> {
    let value = args
        .get(*index)
        .ok_or_else(|| usage(&format!("{flag} needs a value (see fleet-init --help)")))?;
    *index += 1;
    utf8(flag, value).map(str::to_string)
}

fn utf8<'a>(what: &str, value: &'a OsStr) -> Result<&'a str, UsageError> {
    value
        .to_str()
        .ok_or_else(|| usage(&format!("{what}: not valid UTF-8: {value:?}")))
}

fn apply(raw: &mut RawArgs, flag: Flag, value: Option<String>) {
    let value = value.unwrap_or_default();
    match flag {
        Flag::Config => raw.config = Some(value),
        Flag::StateDir => raw.state_dir = Some(value),
        Flag::GraceMs => raw.grace_ms = Some(value),
        Flag::Events => raw.events = Some(value),
        Flag::Restart => raw.restart = Some(value),
        Flag::MaxCrashes => raw.max_crashes = Some(value),
        Flag::MaxRssMb => raw.max_rss_mb = Some(value),
        Flag::RemapExit => raw.remap_exit.push(value),
        Flag::Pdeathsig => raw.pdeathsig = Some(value),
        Flag::SelfPdeathsig => raw.self_pdeathsig = Some(value),
        Flag::CheckConfig => raw.check_config = Some(value),
        Flag::Rewrite => raw.rewrite.push(value),
        Flag::Protect => raw.protect.push(value),
        Flag::Reap => raw.is_reap = true,
        Flag::Version => raw.is_version = true,
        Flag::Help => raw.is_help = true,
        Flag::License => raw.is_license = true,
        Flag::WarnOnReap => raw.is_warn_on_reap = true,
        Flag::SingleChild => raw.is_single_child = true,
        Flag::Verbose => raw.verbose_count = raw.verbose_count.saturating_add(1),
        Flag::Debug => raw.is_debug = true,
        Flag::Accepted => {}
    }
}
