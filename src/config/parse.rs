//! Parsing and validation of the JSON config file: every error found, each naming worker and key.
//!
//! The text is parsed into a `serde_json::Value` and checked by hand rather than derived with
//! serde, because serde stops at the first error and a config with three mistakes should cost
//! one round trip, not three. Workers are numbered from 1 (`worker #2` is the second one) in
//! messages about a worker that has no usable name. `null` means "absent" only for the keys
//! whose default is none (`env`, `cwd`, `user`, `max_rss_mb`); elsewhere it is a wrong type.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use super::checker::ConfigError;
use super::checker::{describe, json_syntax_error, present, quote, Checker, StrictValue};
use super::users::resolve_user_from_system;
use super::{
    Config, OnMaxCrashes, OutputMode, RestartPolicy, SignalTarget, UserSpec, WorkerSpec,
    DEFAULT_GRACE_MS, DEFAULT_STATE_DIR,
};
use crate::signals;

/// One day: the largest duration any `*_ms` key accepts.
const MAX_MS: u64 = 86_400_000;
const MAX_NAME_CHARS: usize = 64;
/// pid_t is an i32.
const MAX_PID: u64 = 2_147_483_647;
/// 16 TiB in MiB.
const MAX_RSS_MB: u64 = 16_777_216;
/// Set by fleet-init for every worker (SPEC, "Supervision rules").
const RESERVED_VARIABLE: &str = "FLEET_INIT_WORKER";

const TOP_LEVEL_KEYS: &[&str] = &["state_dir", "grace_ms", "protected_pids", "workers"];
const WORKER_KEYS: &[&str] = &[
    "name",
    "command",
    "env",
    "cwd",
    "user",
    "restart",
    "max_crashes",
    "stable_run_ms",
    "backoff_initial_ms",
    "backoff_max_ms",
    "clean_restart_budget",
    "clean_restart_window_ms",
    "max_rss_mb",
    "watchdog_interval_ms",
    "stop_signal",
    "stop_grace_ms",
    "signal_target",
    "on_max_crashes",
    "after",
    "oneshot",
    "ready",
    "health",
    "output",
];

const RESTART_CHOICES: &[(&str, RestartPolicy)] = &[
    ("always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("never", RestartPolicy::Never),
];
const SIGNAL_TARGET_CHOICES: &[(&str, SignalTarget)] = &[
    ("group", SignalTarget::Group),
    ("process", SignalTarget::Process),
];
const OUTPUT_CHOICES: &[(&str, OutputMode)] = &[
    ("inherit", OutputMode::Inherit),
    ("jsonl", OutputMode::Jsonl),
];
const ON_MAX_CRASHES_CHOICES: &[(&str, OnMaxCrashes)] = &[
    ("shutdown", OnMaxCrashes::Shutdown),
    ("stop", OnMaxCrashes::Stop),
];

/// Parses and validates a config. `resolve_user` turns a `user` value into a `UserSpec`
/// (`users::resolve_user_from_system` in production, a table in tests). On failure, every
/// error found is returned, in file order by worker and key.
pub fn parse_config(
    text: &str,
    resolve_user: &dyn Fn(&str) -> Option<UserSpec>,
) -> Result<Config, Vec<ConfigError>> {
    parse_config_with_grace(text, resolve_user, None)
}

/// As `parse_config`, with `--grace-ms` / FLEET_INIT_GRACE_MS standing in for the file's
/// `grace_ms`, so that it is also the default of every worker's `stop_grace_ms`.
pub fn parse_config_with_grace(
    text: &str,
    resolve_user: &dyn Fn(&str) -> Option<UserSpec>,
    grace_override: Option<u64>,
) -> Result<Config, Vec<ConfigError>> {
    let StrictValue(value) =
        serde_json::from_str(text).map_err(|error| vec![json_syntax_error(&error)])?;
    let Value::Object(top) = value else {
        return Err(vec![ConfigError {
            worker: None,
            key: None,
            message: format!("the config must be a JSON object, got {}", describe(&value)),
        }]);
    };
    let mut errors = Vec::new();
    let mut checker = Checker {
        worker: None,
        errors: &mut errors,
    };
    checker.reject_unknown_keys(&top, TOP_LEVEL_KEYS);
    let state_dir = match checker.string("state_dir", top.get("state_dir"), "a string (a path)") {
        Some("") => {
            checker.error(Some("state_dir"), "must not be empty");
            PathBuf::from(DEFAULT_STATE_DIR)
        }
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let file_grace_ms = checker.integer(&top, "grace_ms", 0, MAX_MS);
    let grace_ms = grace_override.or(file_grace_ms).unwrap_or(DEFAULT_GRACE_MS);
    let protected_pids = parse_protected_pids(&mut checker, &top);
    let workers = parse_workers(&mut checker, &top, grace_ms, resolve_user);
    super::probes::check_order(&mut errors, &workers);
    if errors.is_empty() {
        Ok(Config {
            state_dir,
            grace_ms,
            protected_pids,
            workers,
        })
    } else {
        Err(errors)
    }
}

fn parse_protected_pids(checker: &mut Checker<'_>, top: &Map<String, Value>) -> Vec<i32> {
    let key = "protected_pids";
    let items = match top.get(key) {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            checker.wrong(Some(key), "an array of pids", other);
            return Vec::new();
        }
    };
    let mut pids = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item.as_u64().filter(|pid| (1..=MAX_PID).contains(pid)) {
            Some(pid) => pids.extend(i32::try_from(pid).ok()),
            None => {
                let message = format!(
                    "item #{} must be an integer from 1 to {MAX_PID}, got {}",
                    index.saturating_add(1),
                    describe(item)
                );
                checker.error(Some(key), message);
            }
        }
    }
    pids
}

fn parse_workers(
    checker: &mut Checker<'_>,
    top: &Map<String, Value>,
    grace_ms: u64,
    resolve_user: &dyn Fn(&str) -> Option<UserSpec>,
) -> Vec<WorkerSpec> {
    let items = match top.get("workers") {
        None => {
            checker.error(Some("workers"), "is required");
            return Vec::new();
        }
        Some(Value::Array(items)) if items.is_empty() => {
            checker.error(Some("workers"), "must list at least one worker");
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            checker.wrong(Some("workers"), "an array of worker objects", other);
            return Vec::new();
        }
    };
    // A map, not a list: a config of 20,000 workers took ~1 s to check for duplicates.
    let mut names_seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut workers = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let number = index.saturating_add(1);
        let mut worker_checker = Checker {
            worker: Some(format!("#{number}")),
            errors: &mut *checker.errors,
        };
        let Value::Object(object) = item else {
            worker_checker.wrong(None, "an object", item);
            continue;
        };
        let name = check_name(object.get("name"));
        let name_error = match name {
            Ok(name) => match names_seen.get(name) {
                Some(first) => Some(format!(
                    "{} is already the name of worker #{first}",
                    quote(name)
                )),
                None => {
                    names_seen.insert(name, number);
                    worker_checker.worker = Some(name.to_string());
                    None
                }
            },
            Err(message) => Some(message),
        };
        worker_checker.reject_unknown_keys(object, WORKER_KEYS);
        if let Some(message) = name_error {
            worker_checker.error(Some("name"), message);
        }
        let name = worker_checker.worker.clone().unwrap_or_default();
        workers.extend(parse_worker(
            &mut worker_checker,
            object,
            &name,
            grace_ms,
            resolve_user,
        ));
    }
    workers
}

/// The name, or why it cannot be one: `[A-Za-z0-9_.-]{1,64}` (it ends up in event lines,
/// handoff file names and `FLEET_INIT_WORKER`).
fn check_name(value: Option<&Value>) -> Result<&str, String> {
    let name = match value {
        None => return Err("is required".to_string()),
        Some(Value::String(name)) => name.as_str(),
        Some(other) => return Err(format!("must be a string, got {}", describe(other))),
    };
    let length = name.chars().count();
    if length == 0 {
        return Err("must not be empty".to_string());
    }
    if length > MAX_NAME_CHARS {
        return Err(format!(
            "must be at most {MAX_NAME_CHARS} characters long, got {length}"
        ));
    }
    let is_allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-');
    if !name.bytes().all(is_allowed) {
        return Err(format!(
            "may only contain the characters A-Z a-z 0-9 _ . -, got {}",
            quote(name)
        ));
    }
    Ok(name)
}

/// One worker's keys besides `name`. `None` when `command` is unusable (the errors are in the
/// checker); the other keys are still checked so that every error is reported.
fn parse_worker(
    checker: &mut Checker<'_>,
    object: &Map<String, Value>,
    name: &str,
    grace_ms: u64,
    resolve_user: &dyn Fn(&str) -> Option<UserSpec>,
) -> Option<WorkerSpec> {
    let command = parse_command(checker, object.get("command"));
    let mut spec = WorkerSpec::new(name, command.clone().unwrap_or_default(), grace_ms);
    spec.env = parse_env(checker, present(object, "env"));
    if let Some(cwd) = checker.string("cwd", present(object, "cwd"), "a string (an absolute path)")
    {
        if cwd.starts_with('/') {
            spec.cwd = Some(PathBuf::from(cwd));
        } else {
            checker.error(
                Some("cwd"),
                format!("must be an absolute path, got {}", quote(cwd)),
            );
        }
    }
    let user_value = present(object, "user");
    if let Some(user) = checker.string("user", user_value, "a string (user, uid, or user:group)") {
        spec.user = resolve_user(user);
        if spec.user.is_none() {
            let what = if user.contains(':') {
                "no such user or group"
            } else {
                "no such user"
            };
            checker.error(Some("user"), format!("{what} {}", quote(user)));
        }
    }
    parse_supervision_keys(checker, object, &mut spec);
    super::probes::parse_order_keys(checker, object, &mut spec);
    command.map(|_| spec)
}

/// The restart, backoff, watchdog and stop keys of one worker, over the defaults in `spec`.
fn parse_supervision_keys(
    checker: &mut Checker<'_>,
    object: &Map<String, Value>,
    spec: &mut WorkerSpec,
) {
    if let Some(restart) = checker.choice(object, "restart", RESTART_CHOICES) {
        spec.restart = restart;
    }
    let max_crashes = checker.integer(object, "max_crashes", 1, 1_000_000);
    if let Some(max_crashes) = max_crashes.and_then(|number| u32::try_from(number).ok()) {
        spec.max_crashes = max_crashes;
    }
    let durations: [(&str, u64, &mut u64); 6] = [
        ("stable_run_ms", 0, &mut spec.stable_run_ms),
        ("backoff_initial_ms", 0, &mut spec.backoff_initial_ms),
        ("backoff_max_ms", 0, &mut spec.backoff_max_ms),
        (
            "clean_restart_window_ms",
            1,
            &mut spec.clean_restart_window_ms,
        ),
        ("watchdog_interval_ms", 100, &mut spec.watchdog_interval_ms),
        ("stop_grace_ms", 0, &mut spec.stop_grace_ms),
    ];
    for (key, min, field) in durations {
        if let Some(milliseconds) = checker.integer(object, key, min, MAX_MS) {
            *field = milliseconds;
        }
    }
    let backoff_checked =
        !checker.has_error("backoff_initial_ms") && !checker.has_error("backoff_max_ms");
    if backoff_checked && spec.backoff_max_ms < spec.backoff_initial_ms {
        let message = format!(
            "must be at least backoff_initial_ms ({}), got {}",
            spec.backoff_initial_ms, spec.backoff_max_ms
        );
        checker.error(Some("backoff_max_ms"), message);
    }
    let budget = checker.integer(object, "clean_restart_budget", 0, 1_000_000);
    if let Some(budget) = budget.and_then(|number| u32::try_from(number).ok()) {
        spec.clean_restart_budget = budget;
    }
    if present(object, "max_rss_mb").is_some() {
        spec.max_rss_mb = checker.integer(object, "max_rss_mb", 1, MAX_RSS_MB);
    }
    if let Some(signal) = parse_stop_signal(checker, object.get("stop_signal")) {
        spec.stop_signal = signal;
    }
    if let Some(target) = checker.choice(object, "signal_target", SIGNAL_TARGET_CHOICES) {
        spec.signal_target = target;
    }
    if let Some(action) = checker.choice(object, "on_max_crashes", ON_MAX_CRASHES_CHOICES) {
        spec.on_max_crashes = action;
    }
    if let Some(output) = checker.choice(object, "output", OUTPUT_CHOICES) {
        spec.output = output;
    }
}

pub(super) fn parse_command(
    checker: &mut Checker<'_>,
    value: Option<&Value>,
) -> Option<Vec<String>> {
    let key = Some("command");
    let items = match value {
        None => {
            checker.error(key, "is required");
            return None;
        }
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(other) => {
            checker.wrong(key, "a non-empty array of strings", other);
            return None;
        }
    };
    let mut command = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let number = index.saturating_add(1);
        match item {
            Value::String(text) if text.contains('\0') => {
                checker.error(key, format!("item #{number} must not contain a NUL byte"));
            }
            Value::String(text) if text.is_empty() && index == 0 => {
                checker.error(key, "item #1 (the program) must not be empty");
            }
            Value::String(text) => command.push(text.clone()),
            other => {
                let message = format!("item #{number} must be a string, got {}", describe(other));
                checker.error(key, message);
            }
        }
    }
    (command.len() == items.len()).then_some(command)
}

/// `env` as sorted pairs: the order variables are set in must not depend on the map type.
fn parse_env(checker: &mut Checker<'_>, value: Option<&Value>) -> Vec<(String, String)> {
    let key = Some("env");
    let variables = match value {
        None => return Vec::new(),
        Some(Value::Object(variables)) => variables,
        Some(other) => {
            checker.wrong(key, "an object of strings", other);
            return Vec::new();
        }
    };
    let mut pairs = Vec::new();
    for (variable, value) in variables {
        let shown = quote(variable);
        let problem = if variable.is_empty() {
            Some("variable names must not be empty".to_string())
        } else if variable.contains('=') {
            Some(format!("variable {shown}: the name must not contain \"=\""))
        } else if variable == RESERVED_VARIABLE {
            Some(format!(
                "variable {shown} is reserved: fleet-init sets it to the worker's name"
            ))
        } else {
            match value {
                Value::String(text) if text.contains('\0') || variable.contains('\0') => {
                    Some(format!("variable {shown}: must not contain a NUL byte"))
                }
                Value::String(text) => {
                    pairs.push((variable.clone(), text.clone()));
                    None
                }
                other => Some(format!(
                    "variable {shown}: the value must be a string, got {}",
                    describe(other)
                )),
            }
        };
        if let Some(message) = problem {
            checker.error(key, message);
        }
    }
    pairs
}

/// Any real signal (name or number) except SIGSTOP, which pauses a worker instead of
/// stopping it, so the grace would always run out.
fn parse_stop_signal(checker: &mut Checker<'_>, value: Option<&Value>) -> Option<i32> {
    let key = Some("stop_signal");
    let signal = match value? {
        Value::String(text) => signals::parse(text),
        Value::Number(number) if number.is_i64() || number.is_u64() => number
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .filter(|number| (1..=signals::MAX_SIGNAL).contains(number)),
        other => {
            checker.wrong(key, "a signal name or number", other);
            return None;
        }
    };
    match signal {
        None => {
            let shown = value.map(describe).unwrap_or_default();
            checker.error(key, format!("unknown signal {shown}"));
            None
        }
        Some(libc::SIGSTOP) => {
            checker.error(key, "SIGSTOP cannot stop a worker (it only pauses it)");
            None
        }
        Some(signal) => Some(signal),
    }
}

/// Reads and validates the config file at `path`, resolving users from this system.
pub fn load_config(path: &Path) -> Result<Config, Vec<ConfigError>> {
    load_config_with_grace(path, None)
}

/// `load_config` with the command line's (or environment's) grace override.
pub fn load_config_with_grace(
    path: &Path,
    grace_override: Option<u64>,
) -> Result<Config, Vec<ConfigError>> {
    match read_config_file(path) {
        Ok(text) => parse_config_with_grace(&text, &resolve_user_from_system, grace_override),
        Err(error) => Err(vec![ConfigError {
            worker: None,
            key: None,
            message: format!("cannot read config file {path:?}: {error}"),
        }]),
    }
}

/// A config file is read whole before anything starts; larger is refused (a config of 100,000
/// workers is about 10 MiB).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// How long a config from a FIFO or pipe (`--check-config /dev/stdin`) may take to arrive.
const CONFIG_PIPE_WAIT_MS: u16 = 10_000;

/// The text of the config file at `path` (links followed: a Kubernetes ConfigMap is one).
/// A regular file, or a FIFO or pipe read to its end within `CONFIG_PIPE_WAIT_MS`. It is
/// opened non-blocking, so that a FIFO nobody writes cannot hang PID 1 in open(2) before its
/// signals are served; a device (`/dev/zero`, a terminal) is refused, and no more than
/// `MAX_CONFIG_BYTES` are read from anything.
fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| error.to_string())?;
    let kind = file
        .metadata()
        .map_err(|error| error.to_string())?
        .file_type();
    let refused = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        None
    };
    if let Some(what) = refused {
        return Err(format!("not a regular file ({what})"));
    }
    let mut bytes = Vec::new();
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(u64::from(CONFIG_PIPE_WAIT_MS));
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => {
                bytes.extend_from_slice(chunk.get(..count).unwrap_or_default());
                if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CONFIG_BYTES {
                    return Err(format!("larger than {MAX_CONFIG_BYTES} bytes"));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                // A FIFO or pipe whose writer has not finished: wait for more, bounded.
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let left_ms = u16::try_from(left.as_millis()).unwrap_or(CONFIG_PIPE_WAIT_MS);
                if left_ms == 0 {
                    return Err(format!(
                        "no end of data within {CONFIG_PIPE_WAIT_MS} ms (a FIFO or pipe still \
                         open for writing)"
                    ));
                }
                use std::os::fd::AsFd;
                let mut fds = [nix::poll::PollFd::new(
                    file.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(left_ms));
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".to_string())
}

/// `--check-config FILE`: exit code 0 and `config OK: 2 workers (api, web)`, or exit code 2
/// and one line per error (no trailing newline).
pub fn check_config_report(path: &Path) -> (i32, String) {
    match load_config(path) {
        Ok(config) => {
            let names: Vec<&str> = config
                .workers
                .iter()
                .map(|worker| worker.name.as_str())
                .collect();
            let plural = if names.len() == 1 { "" } else { "s" };
            let summary = format!(
                "config OK: {} worker{plural} ({})",
                names.len(),
                names.join(", ")
            );
            (0, summary)
        }
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(ConfigError::to_string).collect();
            (2, lines.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::users::resolve_user;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app\n";

    fn test_users(spec: &str) -> Option<UserSpec> {
        resolve_user(spec, PASSWD, GROUP)
    }

    fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        parse_config(text, &test_users)
    }

    /// The error lines for `text`; fails the test when it parses.
    fn error_lines(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(config) => panic!("expected errors, parsed {config:?} from {text}"),
            Err(errors) => errors.iter().map(ConfigError::to_string).collect(),
        }
    }

    /// A config with one worker `api` running `/app/api`, plus `extra` worker keys.
    fn one_worker(extra: &str) -> String {
        format!(r#"{{"workers": [{{"name": "api", "command": ["/app/api"]{extra}}}]}}"#)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn full_config_sets_every_key() {
        let text = r#"{
            "state_dir": "/var/run/fi",
            "grace_ms": 3000,
            "protected_pids": [1, 77],
            "workers": [
                { "name": "api", "command": ["/app/api", "--port", "8080"],
                  "env": {"RUST_LOG": "info", "A_FIRST": "1", "EMPTY": ""},
                  "cwd": "/app", "user": "app",
                  "restart": "on-failure", "max_crashes": 7, "stable_run_ms": 120000,
                  "backoff_initial_ms": 500, "backoff_max_ms": 30000,
                  "clean_restart_budget": 0, "clean_restart_window_ms": 1,
                  "max_rss_mb": 2048, "watchdog_interval_ms": 100,
                  "stop_signal": "SIGQUIT", "stop_grace_ms": 0, "signal_target": "process",
                  "on_max_crashes": "stop", "output": "inherit" },
                { "name": "web.v2_x-1", "command": ["nginx"], "stop_signal": 10, "output": "jsonl",
                  "user": "app:staff", "max_rss_mb": null, "restart": "never" }
            ]
        }"#;
        let mut api = WorkerSpec::new("api", strings(&["/app/api", "--port", "8080"]), 3000);
        api.env = vec![
            ("A_FIRST".to_string(), "1".to_string()),
            ("EMPTY".to_string(), String::new()),
            ("RUST_LOG".to_string(), "info".to_string()),
        ];
        api.cwd = Some(PathBuf::from("/app"));
        api.user = Some(UserSpec {
            name: "app".to_string(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 50],
            home: Some(PathBuf::from("/home/app")),
        });
        api.restart = RestartPolicy::OnFailure;
        api.max_crashes = 7;
        api.stable_run_ms = 120_000;
        api.backoff_initial_ms = 500;
        api.backoff_max_ms = 30_000;
        api.clean_restart_budget = 0;
        api.clean_restart_window_ms = 1;
        api.max_rss_mb = Some(2048);
        api.watchdog_interval_ms = 100;
        api.stop_signal = libc::SIGQUIT;
        api.stop_grace_ms = 0;
        api.signal_target = SignalTarget::Process;
        api.output = OutputMode::Inherit;
        api.on_max_crashes = OnMaxCrashes::Stop;
        let mut web = WorkerSpec::new("web.v2_x-1", strings(&["nginx"]), 3000);
        web.stop_signal = libc::SIGUSR1;
        web.restart = RestartPolicy::Never;
        web.user = Some(UserSpec {
            name: "app".to_string(),
            uid: 1000,
            gid: 50,
            groups: vec![50],
            home: Some(PathBuf::from("/home/app")),
        });
        let want = Config {
            state_dir: PathBuf::from("/var/run/fi"),
            grace_ms: 3000,
            protected_pids: vec![1, 77],
            workers: vec![api, web],
        };
        assert_eq!(parse(text), Ok(want));
    }

    #[test]
    fn minimal_config_gets_spec_defaults() {
        let config = parse(&one_worker("")).expect("minimal config");
        let worker = WorkerSpec::new("api", strings(&["/app/api"]), DEFAULT_GRACE_MS);
        assert_eq!(
            config,
            Config {
                state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                grace_ms: DEFAULT_GRACE_MS,
                protected_pids: Vec::new(),
                workers: vec![worker.clone()],
            }
        );
        // The SPEC's example values are the defaults.
        assert_eq!(worker.restart, RestartPolicy::Always);
        assert_eq!(worker.max_crashes, 5);
        assert_eq!(worker.stop_signal, libc::SIGTERM);
        assert_eq!(worker.stop_grace_ms, 8000);
        assert_eq!(worker.signal_target, SignalTarget::Group);
        assert_eq!(worker.on_max_crashes, OnMaxCrashes::Shutdown);
        assert_eq!(worker.output, OutputMode::Jsonl);
    }

    #[test]
    fn stop_grace_defaults_to_global_grace() {
        let text = r#"{"grace_ms": 2500, "workers": [
            {"name": "a", "command": ["a"]}, {"name": "b", "command": ["b"], "stop_grace_ms": 900}]}"#;
        let config = parse(text).expect("valid config");
        let graces: Vec<u64> = config.workers.iter().map(|w| w.stop_grace_ms).collect();
        let overridden = parse_config_with_grace(text, &test_users, Some(400)).unwrap();
        assert_eq!(overridden.grace_ms, 400);
        let overridden: Vec<u64> = overridden.workers.iter().map(|w| w.stop_grace_ms).collect();
        assert_eq!(
            overridden,
            [400, 900],
            "the override is the default, not the explicit value"
        );
        assert_eq!(graces, [2500, 900]);
    }

    #[test]
    fn accepts_edge_values() {
        let name_64 = "n".repeat(64);
        for extra in [
            r#", "max_crashes": 1"#,
            r#", "max_crashes": 1000000"#,
            r#", "backoff_initial_ms": 0, "backoff_max_ms": 0"#,
            r#", "backoff_initial_ms": 86400000, "backoff_max_ms": 86400000"#,
            r#", "max_rss_mb": 16777216"#,
            r#", "stop_signal": "SIGKILL""#,
            r#", "stop_signal": "term""#,
            r#", "stop_signal": "SIGRTMIN+1""#,
            r#", "stop_signal": 64"#,
            r#", "stop_signal": "1""#,
            r#", "env": {}"#,
            r#", "user": "4242""#,
            r#", "user": "4242:0""#,
            r#", "cwd": "/""#,
            r#", "env": null, "cwd": null, "user": null, "max_rss_mb": null"#,
        ] {
            let text = one_worker(extra);
            let result = parse(&text);
            assert!(result.is_ok(), "{text}: {result:?}");
        }
        let text = format!(r#"{{"workers": [{{"name": "{name_64}", "command": ["x"]}}]}}"#);
        assert!(parse(&text).is_ok());
        let text = r#"{"grace_ms": 0, "protected_pids": [2147483647], "workers": [{"name": "a", "command": ["a", ""]}]}"#;
        assert!(parse(text).is_ok());
    }

    #[test]
    fn reports_each_bad_input() {
        let name_65 = "n".repeat(65);
        let long_value = "v".repeat(100);
        let cases: Vec<(String, Vec<&str>)> = vec![
            // Syntax and shape.
            ("".to_string(), vec!["invalid JSON at line 1 column 0: EOF while parsing a value"]),
            (
                "{\n  \"workers\": [\n    x]}".to_string(),
                vec!["invalid JSON at line 3 column 5: expected value"],
            ),
            (
                r#"{"workers": [],}"#.to_string(),
                vec!["invalid JSON at line 1 column 16: trailing comma"],
            ),
            ("[]".to_string(), vec!["the config must be a JSON object, got an empty array"]),
            (
                "{\"workers\": [{\"name\": \"a\", \"command\": [\"a\"],\n \"name\": \"b\"}]}".to_string(),
                vec!["invalid JSON at line 2 column 7: duplicate key \"name\""],
            ),
            (
                r#"{"workers": [{"env": {"A": "1", "A": "2"}}]}"#.to_string(),
                vec![r#"invalid JSON at line 1 column 35: duplicate key "A""#],
            ),
            (
                one_worker(r#", "restart": null"#),
                vec![r#"worker "api": key "restart": must be one of "always", "on-failure", "never", got null"#],
            ),
            ("\"x\"".to_string(), vec!["the config must be a JSON object, got \"x\""]),
            ("null".to_string(), vec!["the config must be a JSON object, got null"]),
            // Top level.
            ("{}".to_string(), vec![r#"key "workers": is required"#]),
            (
                r#"{"workers": []}"#.to_string(),
                vec![r#"key "workers": must list at least one worker"#],
            ),
            (
                r#"{"workers": {"name": "api"}}"#.to_string(),
                vec![r#"key "workers": must be an array of worker objects, got an object"#],
            ),
            (
                r#"{"workers": ["api"]}"#.to_string(),
                vec![r#"worker #1: must be an object, got "api""#],
            ),
            (
                one_worker("").replacen('{', r#"{"grace": 5, "Workers": 1, "#, 1),
                vec![r#"key "Workers": unknown key"#, r#"key "grace": unknown key"#],
            ),
            (
                one_worker("").replacen('{', r#"{"grace_ms": "8000", "#, 1),
                vec![r#"key "grace_ms": must be an integer from 0 to 86400000, got "8000""#],
            ),
            (
                one_worker("").replacen('{', r#"{"grace_ms": 86400001, "#, 1),
                vec![r#"key "grace_ms": must be an integer from 0 to 86400000, got 86400001"#],
            ),
            (
                one_worker("").replacen('{', r#"{"state_dir": "", "#, 1),
                vec![r#"key "state_dir": must not be empty"#],
            ),
            (
                one_worker("").replacen('{', r#"{"state_dir": ["/run"], "#, 1),
                vec![r#"key "state_dir": must be a string (a path), got an array"#],
            ),
            (
                one_worker("").replacen('{', r#"{"state_dir": "/run/\u0000", "#, 1),
                vec![r#"key "state_dir": must not contain a NUL byte"#],
            ),
            (
                one_worker("").replacen('{', r#"{"protected_pids": 1, "#, 1),
                vec![r#"key "protected_pids": must be an array of pids, got 1"#],
            ),
            (
                one_worker("").replacen('{', r#"{"protected_pids": [1, 0, -4, "5", 2147483648], "#, 1),
                vec![
                    r#"key "protected_pids": item #2 must be an integer from 1 to 2147483647, got 0"#,
                    r#"key "protected_pids": item #3 must be an integer from 1 to 2147483647, got -4"#,
                    r#"key "protected_pids": item #4 must be an integer from 1 to 2147483647, got "5""#,
                    r#"key "protected_pids": item #5 must be an integer from 1 to 2147483647, got 2147483648"#,
                ],
            ),
            // Worker keys.
            (
                one_worker(r#", "max_crash": 3, "Name": "x""#),
                vec![
                    r#"worker "api": key "Name": unknown key"#,
                    r#"worker "api": key "max_crash": unknown key"#,
                ],
            ),
            (
                r#"{"workers": [{"command": ["a"]}]}"#.to_string(),
                vec![r#"worker #1: key "name": is required"#],
            ),
            (
                r#"{"workers": [{"name": "api"}]}"#.to_string(),
                vec![r#"worker "api": key "command": is required"#],
            ),
            (
                r#"{"workers": [{"name": 5, "command": ["a"]}]}"#.to_string(),
                vec![r#"worker #1: key "name": must be a string, got 5"#],
            ),
            (
                r#"{"workers": [{"name": "", "command": ["a"]}]}"#.to_string(),
                vec![r#"worker #1: key "name": must not be empty"#],
            ),
            (
                r#"{"workers": [{"name": "a b", "command": ["a"]}]}"#.to_string(),
                vec![r#"worker #1: key "name": may only contain the characters A-Z a-z 0-9 _ . -, got "a b""#],
            ),
            (
                r#"{"workers": [{"name": "caf\u00e9", "command": ["a"]}]}"#.to_string(),
                vec![r#"worker #1: key "name": may only contain the characters A-Z a-z 0-9 _ . -, got "café""#],
            ),
            (
                format!(r#"{{"workers": [{{"name": "{name_65}", "command": ["a"]}}]}}"#),
                vec![r#"worker #1: key "name": must be at most 64 characters long, got 65"#],
            ),
            (
                r#"{"workers": [{"name": "api", "command": ["a"]}, {"name": "web", "command": ["b"]},
                    {"name": "api", "command": ["c"], "max_crashes": 0}]}"#
                    .to_string(),
                vec![
                    r#"worker #3: key "name": "api" is already the name of worker #1"#,
                    r#"worker #3: key "max_crashes": must be an integer from 1 to 1000000, got 0"#,
                ],
            ),
            (
                r#"{"workers": [{"name": "api", "command": []}]}"#.to_string(),
                vec![r#"worker "api": key "command": must be a non-empty array of strings, got an empty array"#],
            ),
            (
                r#"{"workers": [{"name": "api", "command": "/app/api --port 1"}]}"#.to_string(),
                vec![r#"worker "api": key "command": must be a non-empty array of strings, got "/app/api --port 1""#],
            ),
            (
                r#"{"workers": [{"name": "api", "command": ["", 5, "a\u0000b", null]}]}"#.to_string(),
                vec![
                    r#"worker "api": key "command": item #1 (the program) must not be empty"#,
                    r#"worker "api": key "command": item #2 must be a string, got 5"#,
                    r#"worker "api": key "command": item #3 must not contain a NUL byte"#,
                    r#"worker "api": key "command": item #4 must be a string, got null"#,
                ],
            ),
            (
                one_worker(r#", "env": ["A=1"]"#),
                vec![r#"worker "api": key "env": must be an object of strings, got an array"#],
            ),
            (
                one_worker(r#", "env": {"": "x", "A=B": "x", "FLEET_INIT_WORKER": "x", "N": "a\u0000", "P": 80, "OK": "1"}"#),
                vec![
                    r#"worker "api": key "env": variable names must not be empty"#,
                    r#"worker "api": key "env": variable "A=B": the name must not contain "=""#,
                    r#"worker "api": key "env": variable "FLEET_INIT_WORKER" is reserved: fleet-init sets it to the worker's name"#,
                    r#"worker "api": key "env": variable "N": must not contain a NUL byte"#,
                    r#"worker "api": key "env": variable "P": the value must be a string, got 80"#,
                ],
            ),
            (
                one_worker(r#", "cwd": "app""#),
                vec![r#"worker "api": key "cwd": must be an absolute path, got "app""#],
            ),
            (
                one_worker(r#", "cwd": 5"#),
                vec![r#"worker "api": key "cwd": must be a string (an absolute path), got 5"#],
            ),
            (
                one_worker(r#", "user": "bob""#),
                vec![r#"worker "api": key "user": no such user "bob""#],
            ),
            (
                one_worker(r#", "user": "app:nogroup""#),
                vec![r#"worker "api": key "user": no such user or group "app:nogroup""#],
            ),
            (
                one_worker(r#", "user": 1000"#),
                vec![r#"worker "api": key "user": must be a string (user, uid, or user:group), got 1000"#],
            ),
            (
                one_worker(r#", "restart": "sometimes""#),
                vec![r#"worker "api": key "restart": must be one of "always", "on-failure", "never", got "sometimes""#],
            ),
            (
                one_worker(r#", "restart": true"#),
                vec![r#"worker "api": key "restart": must be one of "always", "on-failure", "never", got true"#],
            ),
            (
                one_worker(r#", "signal_target": "pgrp", "on_max_crashes": "Stop""#),
                vec![
                    r#"worker "api": key "signal_target": must be one of "group", "process", got "pgrp""#,
                    r#"worker "api": key "on_max_crashes": must be one of "shutdown", "stop", got "Stop""#,
                ],
            ),
            (
                one_worker(r#", "output": "json""#),
                vec![r#"worker "api": key "output": must be one of "inherit", "jsonl", got "json""#],
            ),
            (
                one_worker(r#", "output": null"#),
                vec![r#"worker "api": key "output": must be one of "inherit", "jsonl", got null"#],
            ),
            (
                one_worker(r#", "output": ["jsonl"]"#),
                vec![r#"worker "api": key "output": must be one of "inherit", "jsonl", got an array"#],
            ),
            (
                one_worker(r#", "output": "JSONL""#),
                vec![r#"worker "api": key "output": must be one of "inherit", "jsonl", got "JSONL""#],
            ),
            (
                one_worker(r#", "max_crashes": 0"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got 0"#],
            ),
            (
                one_worker(r#", "max_crashes": -3"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got -3"#],
            ),
            (
                one_worker(r#", "max_crashes": "5""#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got "5""#],
            ),
            (
                one_worker(r#", "max_crashes": 2.5"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got 2.5"#],
            ),
            (
                one_worker(r#", "max_crashes": 5.0"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got 5.0"#],
            ),
            (
                one_worker(r#", "max_crashes": true"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got true"#],
            ),
            (
                one_worker(r#", "max_crashes": null"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got null"#],
            ),
            (
                one_worker(r#", "max_crashes": 4294967297"#),
                vec![r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got 4294967297"#],
            ),
            (
                one_worker(r#", "clean_restart_budget": 18446744073709551616"#),
                vec![r#"worker "api": key "clean_restart_budget": must be an integer from 0 to 1000000, got 1.8446744073709552e+19"#],
            ),
            (
                one_worker(r#", "stable_run_ms": 1e20"#),
                vec![r#"worker "api": key "stable_run_ms": must be an integer from 0 to 86400000, got 1e+20"#],
            ),
            (
                one_worker(r#", "backoff_initial_ms": 5000, "backoff_max_ms": 1000"#),
                vec![r#"worker "api": key "backoff_max_ms": must be at least backoff_initial_ms (5000), got 1000"#],
            ),
            (
                one_worker(r#", "backoff_initial_ms": 120000"#),
                vec![r#"worker "api": key "backoff_max_ms": must be at least backoff_initial_ms (120000), got 60000"#],
            ),
            (
                // A bad bound is reported once, not again as a bad pair.
                one_worker(r#", "backoff_initial_ms": -1, "backoff_max_ms": 0"#),
                vec![r#"worker "api": key "backoff_initial_ms": must be an integer from 0 to 86400000, got -1"#],
            ),
            (
                one_worker(r#", "watchdog_interval_ms": 99, "clean_restart_window_ms": 0, "stop_grace_ms": 86400001"#),
                vec![
                    r#"worker "api": key "clean_restart_window_ms": must be an integer from 1 to 86400000, got 0"#,
                    r#"worker "api": key "watchdog_interval_ms": must be an integer from 100 to 86400000, got 99"#,
                    r#"worker "api": key "stop_grace_ms": must be an integer from 0 to 86400000, got 86400001"#,
                ],
            ),
            (
                one_worker(r#", "max_rss_mb": 0"#),
                vec![r#"worker "api": key "max_rss_mb": must be an integer from 1 to 16777216, got 0"#],
            ),
            (
                one_worker(r#", "max_rss_mb": "2G""#),
                vec![r#"worker "api": key "max_rss_mb": must be an integer from 1 to 16777216, got "2G""#],
            ),
            (
                one_worker(r#", "stop_signal": "SIGBOGUS""#),
                vec![r#"worker "api": key "stop_signal": unknown signal "SIGBOGUS""#],
            ),
            (
                one_worker(r#", "stop_signal": 65"#),
                vec![r#"worker "api": key "stop_signal": unknown signal 65"#],
            ),
            (
                one_worker(r#", "stop_signal": 0"#),
                vec![r#"worker "api": key "stop_signal": unknown signal 0"#],
            ),
            (
                one_worker(r#", "stop_signal": "SIGSTOP""#),
                vec![r#"worker "api": key "stop_signal": SIGSTOP cannot stop a worker (it only pauses it)"#],
            ),
            (
                one_worker(r#", "stop_signal": 19"#),
                vec![r#"worker "api": key "stop_signal": SIGSTOP cannot stop a worker (it only pauses it)"#],
            ),
            (
                one_worker(r#", "stop_signal": 15.0"#),
                vec![r#"worker "api": key "stop_signal": must be a signal name or number, got 15.0"#],
            ),
            (
                one_worker(r#", "stop_signal": ["SIGTERM"]"#),
                vec![r#"worker "api": key "stop_signal": must be a signal name or number, got an array"#],
            ),
        ];
        let long_case = (
            one_worker(&format!(r#", "restart": "{long_value}""#)),
            format!(
                r#"worker "api": key "restart": must be one of "always", "on-failure", "never", got "{}"..."#,
                "v".repeat(64)
            ),
        );
        assert_eq!(error_lines(&long_case.0), [long_case.1]);
        for (text, want) in cases {
            assert_eq!(error_lines(&text), want, "config: {text}");
        }
    }

    #[test]
    fn reports_every_error_at_once() {
        let text = r#"{
            "grace_ms": -1, "colour": "blue", "protected_pids": [0],
            "workers": [
                {"name": "api", "command": "api", "max_crashes": 0, "user": "bob", "sleep": 1},
                {"name": "bad name", "command": ["x"], "stop_signal": "SIGBOGUS"},
                {"command": []},
                {"name": "api", "command": ["y"], "restart": "maybe"},
                7
            ]
        }"#;
        assert_eq!(
            error_lines(text),
            [
                r#"key "colour": unknown key"#,
                r#"key "grace_ms": must be an integer from 0 to 86400000, got -1"#,
                r#"key "protected_pids": item #1 must be an integer from 1 to 2147483647, got 0"#,
                r#"worker "api": key "sleep": unknown key"#,
                r#"worker "api": key "command": must be a non-empty array of strings, got "api""#,
                r#"worker "api": key "user": no such user "bob""#,
                r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got 0"#,
                r#"worker #2: key "name": may only contain the characters A-Z a-z 0-9 _ . -, got "bad name""#,
                r#"worker #2: key "stop_signal": unknown signal "SIGBOGUS""#,
                r#"worker #3: key "name": is required"#,
                r#"worker #3: key "command": must be a non-empty array of strings, got an empty array"#,
                r#"worker #4: key "name": "api" is already the name of worker #1"#,
                r#"worker #4: key "restart": must be one of "always", "on-failure", "never", got "maybe""#,
                r#"worker #5: must be an object, got 7"#,
            ]
        );
    }

    #[test]
    fn errors_carry_worker_and_key() {
        let errors = parse(&one_worker(r#", "max_crashes": -3"#)).expect_err("invalid");
        assert_eq!(
            errors,
            [ConfigError {
                worker: Some("api".to_string()),
                key: Some("max_crashes".to_string()),
                message: "must be an integer from 1 to 1000000, got -3".to_string(),
            }]
        );
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(name)
    }

    #[test]
    fn check_config_reports_ok_and_errors() {
        assert_eq!(
            check_config_report(&fixture("valid.json")),
            (0, "config OK: 3 workers (api, web, jobs)".to_string())
        );
        assert_eq!(
            check_config_report(&fixture("one-worker.json")),
            (0, "config OK: 1 worker (app)".to_string())
        );
        assert_eq!(
            check_config_report(&fixture("invalid.json")),
            (
                2,
                [
                    r#"key "grace_ms": must be an integer from 0 to 86400000, got 1.5"#,
                    r#"worker "api": key "max_crashes": must be an integer from 1 to 1000000, got -3"#,
                    r#"worker #2: key "name": is required"#,
                ]
                .join("\n")
            )
        );
        let missing = fixture("does-not-exist.json");
        assert_eq!(
            check_config_report(&missing),
            (
                2,
                format!(
                    "cannot read config file {missing:?}: No such file or directory (os error 2)"
                )
            )
        );
    }
}
