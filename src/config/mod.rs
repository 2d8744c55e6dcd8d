//! The validated configuration: global options and one `WorkerSpec` per worker, with the
//! SPEC's defaults. Parsing and validation of the JSON file live in `parse`; user lookup in `users`.

mod checker;
pub(crate) use checker::StrictValue;
pub mod parse;
pub mod probes;
pub mod users;

use std::ffi::OsString;
use std::path::PathBuf;

pub const DEFAULT_STATE_DIR: &str = "/run/fleet-init";
pub const DEFAULT_GRACE_MS: u64 = 8000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMaxCrashes {
    /// The whole container stops, exit 1.
    Shutdown,
    /// This worker stays down, the others go on.
    Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalTarget {
    /// Forwarded and stop signals go to the worker's process group.
    Group,
    /// Only to its main process (servers that manage their own children).
    Process,
}

/// Where a worker's stdout and stderr go (SPEC, "Worker output").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// fleet-init's own stdout and stderr, untouched (single-command mode, terminals).
    Inherit,
    /// Pipes read by fleet-init, each line an `output` event (the config-mode default).
    Jsonl,
}

/// A user resolved from `/etc/passwd` and `/etc/group` at config time, so that a missing user
/// is a config error, not a failure inside a forked child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary one included.
    pub groups: Vec<u32>,
    pub home: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    pub name: String,
    /// Byte for byte: a single command's arguments may be any bytes, as with tini.
    pub command: Vec<OsString>,
    /// Added to (or replacing in) fleet-init's own environment, in key order.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub user: Option<UserSpec>,
    pub restart: RestartPolicy,
    pub max_crashes: u32,
    pub stable_run_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub clean_restart_budget: u32,
    pub clean_restart_window_ms: u64,
    pub max_rss_mb: Option<u64>,
    pub watchdog_interval_ms: u64,
    /// Signal number sent to stop the worker.
    pub stop_signal: i32,
    pub stop_grace_ms: u64,
    pub signal_target: SignalTarget,
    pub on_max_crashes: OnMaxCrashes,
    /// Workers that must be ready (or completed) before this one starts.
    pub after: Vec<String>,
    /// Runs once to completion: exit 0 is done, never restarted.
    pub oneshot: bool,
    pub ready: Option<probes::ReadySpec>,
    pub health: Option<probes::HealthSpec>,
    pub output: OutputMode,
}

impl WorkerSpec {
    /// A worker with every optional key at its SPEC default (`stop_grace_ms` = `grace_ms`).
    pub fn new(name: &str, command: Vec<String>, grace_ms: u64) -> WorkerSpec {
        let command = command.into_iter().map(OsString::from).collect();
        WorkerSpec::with_os_command(name, command, grace_ms)
    }

    /// `new` with arguments that need not be UTF-8.
    pub fn with_os_command(name: &str, command: Vec<OsString>, grace_ms: u64) -> WorkerSpec {
        WorkerSpec {
            name: name.to_string(),
            command,
            env: Vec::new(),
            cwd: None,
            user: None,
            restart: RestartPolicy::Always,
            max_crashes: 5,
            stable_run_ms: 300_000,
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            clean_restart_budget: 10,
            clean_restart_window_ms: 60_000,
            max_rss_mb: None,
            watchdog_interval_ms: 5000,
            stop_signal: libc::SIGTERM,
            stop_grace_ms: grace_ms,
            signal_target: SignalTarget::Group,
            on_max_crashes: OnMaxCrashes::Shutdown,
            after: Vec::new(),
            oneshot: false,
            ready: None,
            health: None,
            output: OutputMode::Jsonl,
        }
    }
}

impl WorkerSpec {
    /// The command line for people and for the registry (non-UTF-8 bytes replaced).
    pub fn display_command(&self) -> Vec<String> {
        self.command
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub state_dir: PathBuf,
    pub grace_ms: u64,
    pub protected_pids: Vec<i32>,
    pub workers: Vec<WorkerSpec>,
}
