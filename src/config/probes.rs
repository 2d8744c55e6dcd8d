//! The start-order, readiness and health keys of a worker (`after`, `oneshot`, `ready`,
//! `health`): their types, defaults and validation, and the checks across workers (unknown
//! names in `after`, cycles).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::checker::{describe, quote, Checker};
use super::parse::parse_command;
use super::{RestartPolicy, WorkerSpec};

/// The largest duration a probe key accepts (one day), as for every `*_ms` key.
const MAX_MS: u64 = 86_400_000;
/// The highest descriptor number `notify_fd` accepts: well under any RLIMIT_NOFILE.
const MAX_NOTIFY_FD: u64 = 1023;

pub const DEFAULT_READY_INTERVAL_MS: u64 = 250;
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;

/// How a worker's readiness or health is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connect to this address succeeds.
    Tcp(SocketAddr),
    /// This command exits 0 (run with the worker's user, env and cwd).
    Command(Vec<String>),
    /// This path exists.
    File(PathBuf),
    /// The worker writes a newline to this descriptor (s6's notification-fd).
    NotifyFd(i32),
}

impl ProbeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Command(_) => "command",
            ProbeKind::File(_) => "file",
            ProbeKind::NotifyFd(_) => "notify_fd",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadySpec {
    pub kind: ProbeKind,
    pub interval_ms: u64,
    /// Not ready by then (from the start): stopped, `unhealthy`, a crash. None: no limit.
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    pub kind: ProbeKind,
    pub interval_ms: u64,
    /// Each try's bound.
    pub timeout_ms: u64,
    /// Failures in a row that stop the worker.
    pub failures: u32,
}

/// `after`, `oneshot`, `ready` and `health` of one worker, over the defaults in `spec`.
pub(super) fn parse_order_keys(
    checker: &mut Checker<'_>,
    object: &Map<String, Value>,
    spec: &mut WorkerSpec,
) {
    spec.after = parse_after(checker, object.get("after"), &spec.name);
    match object.get("oneshot") {
        None => {}
        Some(Value::Bool(flag)) => spec.oneshot = *flag,
        Some(other) => checker.wrong(Some("oneshot"), "true or false", other),
    }
    if let Some(value) = object.get("ready") {
        spec.ready = parse_ready(checker, value);
    }
    if let Some(value) = object.get("health") {
        spec.health = parse_health(checker, value);
    }
    if !spec.oneshot {
        return;
    }
    // A oneshot runs to completion: retried after a failure, never after exit 0.
    match object.get("restart").and_then(Value::as_str) {
        None => spec.restart = RestartPolicy::OnFailure,
        Some("always") => checker.error(
            Some("restart"),
            "a oneshot is never restarted after exit 0: use \"on-failure\" or \"never\"",
        ),
        Some(_) => {}
    }
    if object.contains_key("health") {
        checker.error(
            Some("health"),
            "a oneshot runs to completion and has no health check",
        );
    }
    if object.contains_key("ready") {
        checker.error(
            Some("ready"),
            "a oneshot is done when it exits 0 and has no readiness check",
        );
    }
}

fn parse_after(checker: &mut Checker<'_>, value: Option<&Value>, name: &str) -> Vec<String> {
    let key = Some("after");
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            checker.wrong(key, "an array of worker names", other);
            return Vec::new();
        }
    };
    let mut after: Vec<String> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let number = index.saturating_add(1);
        match item {
            Value::String(other) if other == name => checker.error(
                key,
                format!("a worker cannot be after itself ({})", quote(name)),
            ),
            Value::String(other) if after.contains(other) => {
                checker.error(key, format!("{} is listed twice", quote(other)))
            }
            Value::String(other) => after.push(other.clone()),
            other => checker.error(
                key,
                format!(
                    "item #{number} must be a worker name, got {}",
                    describe(other)
                ),
            ),
        }
    }
    after
}

/// The one probe kind of a `ready` or `health` object; the other keys are checked by the caller.
fn parse_kind(
    checker: &mut Checker<'_>,
    key: &str,
    object: &Map<String, Value>,
    kinds: &[&str],
) -> Option<ProbeKind> {
    let found: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|kind| object.contains_key(*kind))
        .collect();
    let kind = match found.as_slice() {
        [kind] => *kind,
        [] => {
            let names: Vec<String> = kinds.iter().map(|kind| quote(kind)).collect();
            checker.error(Some(key), format!("needs one of {}", names.join(", ")));
            return None;
        }
        many => {
            let names: Vec<String> = many.iter().map(|kind| quote(kind)).collect();
            let message = format!("needs exactly one check, got {}", names.join(" and "));
            checker.error(Some(key), message);
            return None;
        }
    };
    let value = object.get(kind)?;
    let wrong = |checker: &mut Checker<'_>, expected: &str| {
        checker.error(
            Some(key),
            format!(
                "{} must be {expected}, got {}",
                quote(kind),
                describe(value)
            ),
        );
        None
    };
    match kind {
        "tcp" => match parse_tcp(value) {
            Ok(address) => Some(ProbeKind::Tcp(address)),
            Err(message) => {
                checker.error(Some(key), format!("\"tcp\" {message}"));
                None
            }
        },
        "command" => {
            let mut errors = Vec::new();
            let mut scratch = Checker {
                worker: None,
                errors: &mut errors,
            };
            let command = parse_command(&mut scratch, Some(value));
            for error in errors {
                checker.error(Some(key), format!("\"command\" {}", error.message));
            }
            command.map(ProbeKind::Command)
        }
        "file" => match value.as_str() {
            Some(path) if path.starts_with('/') && !path.contains('\0') => {
                Some(ProbeKind::File(PathBuf::from(path)))
            }
            _ => wrong(checker, "an absolute path"),
        },
        "notify_fd" => match value.as_u64().filter(|fd| (3..=MAX_NOTIFY_FD).contains(fd)) {
            Some(fd) => i32::try_from(fd).ok().map(ProbeKind::NotifyFd),
            None => wrong(
                checker,
                &format!("a descriptor number from 3 to {MAX_NOTIFY_FD} (0-2 are stdio)"),
            ),
        },
        _ => None,
    }
}

/// `8080` (the loopback) or `"HOST:PORT"` with an IP address as HOST (`localhost` too): a
/// name lookup could block PID 1, so no other names.
fn parse_tcp(value: &Value) -> Result<SocketAddr, String> {
    let port_of = |number: u64| u16::try_from(number).ok().filter(|port| *port > 0);
    match value {
        Value::Number(number) => number
            .as_u64()
            .and_then(port_of)
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .ok_or_else(|| format!("must be a port from 1 to 65535, got {number}")),
        Value::String(text) => {
            let bad = || {
                format!(
                    "must be a port or \"HOST:PORT\" with an IP address (or localhost) as HOST, got {}",
                    quote(text)
                )
            };
            let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
            let port = port.parse::<u64>().ok().and_then(port_of).ok_or_else(bad)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host == "localhost" {
                return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
            }
            if let Ok(ip) = host.parse::<Ipv4Addr>() {
                return Ok(SocketAddr::from((ip, port)));
            }
            host.parse::<Ipv6Addr>()
                .map(|ip| SocketAddr::from((ip, port)))
                .map_err(|_| bad())
        }
        other => Err(format!(
            "must be a port or \"HOST:PORT\", got {}",
            describe(other)
        )),
    }
}

fn probe_object<'value>(
    checker: &mut Checker<'_>,
    key: &str,
    value: &'value Value,
    known: &[&str],
) -> Option<&'value Map<String, Value>> {
    let Value::Object(object) = value else {
        checker.wrong(Some(key), "an object", value);
        return None;
    };
    let unknown: Vec<&String> = object
        .keys()
        .filter(|name| !known.contains(&name.as_str()))
        .collect();
    for name in unknown {
        checker.error(Some(key), format!("unknown key {}", quote(name)));
    }
    Some(object)
}

/// An integer key inside a probe object, reported as `key "ready": "interval_ms" must be ...`.
fn probe_integer(
    checker: &mut Checker<'_>,
    key: &str,
    object: &Map<String, Value>,
    name: &str,
    min: u64,
    max: u64,
) -> Option<u64> {
    let value = object.get(name)?;
    let number = value.as_u64().filter(|number| (min..=max).contains(number));
    if number.is_none() {
        checker.error(
            Some(key),
            format!(
                "{} must be an integer from {min} to {max}, got {}",
                quote(name),
                describe(value)
            ),
        );
    }
    number
}

fn parse_ready(checker: &mut Checker<'_>, value: &Value) -> Option<ReadySpec> {
    const KINDS: &[&str] = &["tcp", "command", "file", "notify_fd"];
    let known = [KINDS, &["interval_ms", "timeout_ms"]].concat();
    let object = probe_object(checker, "ready", value, &known)?;
    let kind = parse_kind(checker, "ready", object, KINDS);
    let interval_ms = probe_integer(checker, "ready", object, "interval_ms", 10, MAX_MS);
    let timeout_ms = probe_integer(checker, "ready", object, "timeout_ms", 1, MAX_MS);
    Some(ReadySpec {
        kind: kind?,
        interval_ms: interval_ms.unwrap_or(DEFAULT_READY_INTERVAL_MS),
        timeout_ms,
    })
}

fn parse_health(checker: &mut Checker<'_>, value: &Value) -> Option<HealthSpec> {
    const KINDS: &[&str] = &["tcp", "command", "file"];
    let known = [KINDS, &["interval_ms", "timeout_ms", "failures"]].concat();
    let object = probe_object(checker, "health", value, &known)?;
    if object.contains_key("notify_fd") {
        checker.error(
            Some("health"),
            "\"notify_fd\" says ready once; a health check is \"tcp\", \"command\" or \"file\"",
        );
        return None;
    }
    let kind = parse_kind(checker, "health", object, KINDS);
    let interval_ms = probe_integer(checker, "health", object, "interval_ms", 10, MAX_MS);
    let timeout_ms = probe_integer(checker, "health", object, "timeout_ms", 1, MAX_MS);
    let failures = probe_integer(checker, "health", object, "failures", 1, 1000);
    Some(HealthSpec {
        kind: kind?,
        interval_ms: interval_ms.unwrap_or(DEFAULT_HEALTH_INTERVAL_MS),
        timeout_ms: timeout_ms.unwrap_or(DEFAULT_HEALTH_TIMEOUT_MS),
        failures: failures
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(DEFAULT_HEALTH_FAILURES),
    })
}

/// Across workers: every name in `after` is a worker, and the order has no cycle. Errors name
/// the worker whose `after` is wrong.
pub(super) fn check_order(errors: &mut Vec<super::checker::ConfigError>, workers: &[WorkerSpec]) {
    let names: std::collections::HashSet<&str> = workers.iter().map(|w| w.name.as_str()).collect();
    for spec in workers {
        let mut checker = Checker {
            worker: Some(spec.name.clone()),
            errors: &mut *errors,
        };
        for name in &spec.after {
            if !names.contains(name.as_str()) {
                checker.error(Some("after"), format!("no worker is named {}", quote(name)));
            }
        }
    }
    if let Some(cycle) = find_cycle(workers) {
        let first = cycle.first().cloned();
        let path: Vec<String> = cycle.iter().map(|name| quote(name)).collect();
        errors.push(super::checker::ConfigError {
            worker: first,
            key: Some("after".to_string()),
            message: format!("the start order has a cycle: {}", path.join(" -> ")),
        });
    }
}

/// A cycle of `after` edges, as worker names from one worker back to it, if there is one.
fn find_cycle(workers: &[WorkerSpec]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    // A map, not a search per edge: a 20,000-long chain took ~3 s to check.
    let indices: std::collections::HashMap<&str, usize> = workers
        .iter()
        .enumerate()
        .map(|(index, w)| (w.name.as_str(), index))
        .collect();
    let index_of = |name: &str| indices.get(name).copied();
    let mut marks = vec![Mark::New; workers.len()];
    for root in 0..workers.len() {
        if marks.get(root) != Some(&Mark::New) {
            continue;
        }
        // Iterative depth-first search: (worker, next dependency to look at).
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        if let Some(mark) = marks.get_mut(root) {
            *mark = Mark::OnPath;
        }
        while let Some((node, next)) = path.last().copied() {
            let dependency = workers
                .get(node)
                .and_then(|w| w.after.get(next))
                .map(|name| index_of(name));
            match dependency {
                None => {
                    if let Some(mark) = marks.get_mut(node) {
                        *mark = Mark::Done;
                    }
                    path.pop();
                }
                Some(found) => {
                    if let Some(top) = path.last_mut() {
                        top.1 = next.saturating_add(1);
                    }
                    let Some(target) = found else { continue };
                    match marks.get(target) {
                        Some(Mark::New) => {
                            if let Some(mark) = marks.get_mut(target) {
                                *mark = Mark::OnPath;
                            }
                            path.push((target, 0));
                        }
                        Some(Mark::OnPath) => {
                            let start = path.iter().position(|(n, _)| *n == target)?;
                            let mut names: Vec<String> = path
                                .get(start..)?
                                .iter()
                                .filter_map(|(n, _)| workers.get(*n).map(|w| w.name.clone()))
                                .collect();
                            names.extend(workers.get(target).map(|w| w.name.clone()));
                            return Some(names);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::parse_config;
    use crate::config::Config;

    fn parse(workers: &str) -> Result<Config, Vec<String>> {
        let text = format!(r#"{{"workers": [{workers}]}}"#);
        parse_config(&text, &|_| None)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn order_keys_and_their_defaults() {
        let config = parse(
            r#"{"name": "migrate", "command": ["m"], "oneshot": true},
               {"name": "api", "command": ["a"], "after": ["migrate"],
                "ready": {"tcp": "[::1]:8080", "timeout_ms": 5000},
                "health": {"command": ["h", "-q"]}},
               {"name": "web", "command": ["w"], "after": ["api", "migrate"],
                "ready": {"notify_fd": 3, "interval_ms": 100},
                "health": {"tcp": 80, "interval_ms": 1000, "timeout_ms": 500, "failures": 1}},
               {"name": "files", "command": ["f"], "ready": {"file": "/run/ok"},
                "health": {"file": "/run/alive"}},
               {"name": "local", "command": ["f"], "ready": {"tcp": "localhost:99"}}"#,
        )
        .expect("valid");
        let [migrate, api, web, files, local] = config.workers.as_slice() else {
            panic!("five workers");
        };
        assert!(migrate.oneshot);
        assert_eq!(migrate.restart, RestartPolicy::OnFailure);
        assert_eq!(api.restart, RestartPolicy::Always);
        assert_eq!(api.after, ["migrate"]);
        assert_eq!(
            api.ready,
            Some(ReadySpec {
                kind: ProbeKind::Tcp("[::1]:8080".parse().expect("addr")),
                interval_ms: 250,
                timeout_ms: Some(5000),
            })
        );
        assert_eq!(
            api.health,
            Some(HealthSpec {
                kind: ProbeKind::Command(vec!["h".into(), "-q".into()]),
                interval_ms: 10_000,
                timeout_ms: 2000,
                failures: 3,
            })
        );
        assert_eq!(web.after, ["api", "migrate"]);
        assert_eq!(
            web.ready
                .as_ref()
                .map(|r| (&r.kind, r.interval_ms, r.timeout_ms)),
            Some((&ProbeKind::NotifyFd(3), 100, None))
        );
        let health = web.health.as_ref().expect("health");
        assert_eq!(
            (
                &health.kind,
                health.interval_ms,
                health.timeout_ms,
                health.failures
            ),
            (
                &ProbeKind::Tcp("127.0.0.1:80".parse().expect("addr")),
                1000,
                500,
                1
            )
        );
        assert_eq!(
            files.ready.as_ref().map(|r| &r.kind),
            Some(&ProbeKind::File("/run/ok".into()))
        );
        assert_eq!(
            local.ready.as_ref().map(|r| &r.kind),
            Some(&ProbeKind::Tcp("127.0.0.1:99".parse().expect("addr")))
        );
    }

    #[test]
    fn each_bad_order_key_is_an_error_naming_worker_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"name": "a", "command": ["a"], "after": ["nobody"]}"#,
                r#"worker "a": key "after": no worker is named "nobody""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "after": ["a"]}"#,
                r#"worker "a": key "after": a worker cannot be after itself ("a")"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "after": "b"}, {"name": "b", "command": ["b"]}"#,
                r#"worker "a": key "after": must be an array of worker names, got "b""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "after": [1]}"#,
                r#"worker "a": key "after": item #1 must be a worker name, got 1"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "after": ["b", "b"]}, {"name": "b", "command": ["b"]}"#,
                r#"worker "a": key "after": "b" is listed twice"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "after": ["c"]}, {"name": "b", "command": ["b"], "after": ["a"]}, {"name": "c", "command": ["c"], "after": ["b"]}"#,
                r#"worker "a": key "after": the start order has a cycle: "a" -> "c" -> "b" -> "a""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "oneshot": 1}"#,
                r#"worker "a": key "oneshot": must be true or false, got 1"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "oneshot": true, "restart": "always"}"#,
                r#"worker "a": key "restart": a oneshot is never restarted after exit 0"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "oneshot": true, "health": {"file": "/x"}}"#,
                r#"worker "a": key "health": a oneshot runs to completion and has no health check"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "oneshot": true, "ready": {"file": "/x"}}"#,
                r#"worker "a": key "ready": a oneshot is done when it exits 0"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {}}"#,
                r#"worker "a": key "ready": needs one of "tcp", "command", "file", "notify_fd""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"tcp": 1, "notify_fd": 3}}"#,
                r#"worker "a": key "ready": needs exactly one check, got "tcp" and "notify_fd""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": "tcp"}"#,
                r#"worker "a": key "ready": must be an object, got "tcp""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"file": "/x", "every": 1}}"#,
                r#"worker "a": key "ready": unknown key "every""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"notify_fd": 2}}"#,
                r#"worker "a": key "ready": "notify_fd" must be a descriptor number from 3 to 1023 (0-2 are stdio), got 2"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"notify_fd": "3"}}"#,
                r#"worker "a": key "ready": "notify_fd" must be a descriptor number"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"tcp": 0}}"#,
                r#"worker "a": key "ready": "tcp" must be a port from 1 to 65535, got 0"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"tcp": 70000}}"#,
                r#"worker "a": key "ready": "tcp" must be a port from 1 to 65535, got 70000"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"tcp": "db.internal:5432"}}"#,
                r#"worker "a": key "ready": "tcp" must be a port or "HOST:PORT" with an IP address"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"tcp": "8080"}}"#,
                r#"worker "a": key "ready": "tcp" must be a port or "HOST:PORT""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"file": "relative"}}"#,
                r#"worker "a": key "ready": "file" must be an absolute path, got "relative""#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"command": []}}"#,
                r#"worker "a": key "ready": "command" must be a non-empty array of strings"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"file": "/x", "interval_ms": 0}}"#,
                r#"worker "a": key "ready": "interval_ms" must be an integer from 10 to 86400000, got 0"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "ready": {"file": "/x", "timeout_ms": -1}}"#,
                r#"worker "a": key "ready": "timeout_ms" must be an integer from 1 to 86400000, got -1"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "health": {"notify_fd": 3}}"#,
                r#"worker "a": key "health": "notify_fd" says ready once"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "health": {"file": "/x", "failures": 0}}"#,
                r#"worker "a": key "health": "failures" must be an integer from 1 to 1000, got 0"#,
            ),
            (
                r#"{"name": "a", "command": ["a"], "health": null}"#,
                r#"worker "a": key "health": must be an object, got null"#,
            ),
        ];
        for (workers, want) in cases {
            let errors = parse(workers).expect_err(workers);
            assert!(
                errors.iter().any(|line| line.starts_with(want)),
                "{workers}\n got: {errors:?}\nwant: {want}"
            );
        }
    }
}
