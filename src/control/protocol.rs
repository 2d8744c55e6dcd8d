//! The control protocol: one JSON request line from the client, one JSON reply line back.
//!
//! Request: `{"verb": "status"|"stop"|"start"|"restart"|"signal"|"shutdown"|"ready",
//! "workers": ["name", ...], "signal": "SIGHUP"}` (`workers` optional where the verb takes
//! none or all, `signal` only with `signal`). Reply: `{"ok": true, ...}` or
//! `{"ok": false, "error": "why"}`; what else a reply holds is the verb's (see `supervisor::control`).

use crate::signals;
use serde_json::{json, Map, Value};

/// A request line longer than this is refused: nobody writes 64 KiB of worker names.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Status,
    Stop,
    Start,
    Restart,
    Signal,
    Shutdown,
    Ready,
}

impl Verb {
    pub const ALL: [Verb; 7] = [
        Verb::Status,
        Verb::Stop,
        Verb::Start,
        Verb::Restart,
        Verb::Signal,
        Verb::Shutdown,
        Verb::Ready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::Stop => "stop",
            Verb::Start => "start",
            Verb::Restart => "restart",
            Verb::Signal => "signal",
            Verb::Shutdown => "shutdown",
            Verb::Ready => "ready",
        }
    }

    pub fn parse(text: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|verb| verb.as_str() == text)
    }

    /// How the verb takes worker names.
    pub fn workers(self) -> Names {
        match self {
            Verb::Status => Names::Optional,
            Verb::Stop | Verb::Start | Verb::Restart | Verb::Signal => Names::Required,
            Verb::Shutdown | Verb::Ready => Names::None,
        }
    }
}

/// Whether a verb takes worker names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// Optional: none means every worker.
    Optional,
    Required,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    pub workers: Vec<String>,
    /// With `signal` only.
    pub signal: Option<i32>,
}

impl Request {
    /// The request line, newline included.
    pub fn encode(&self) -> String {
        let mut object = Map::new();
        object.insert("verb".into(), Value::from(self.verb.as_str()));
        if !self.workers.is_empty() {
            object.insert("workers".into(), Value::from(self.workers.clone()));
        }
        if let Some(signal) = self.signal {
            object.insert("signal".into(), Value::from(signals::name(signal)));
        }
        format!("{}\n", Value::Object(object))
    }
}

/// Parses one request line (without its newline). The error is the reply's `error`.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    // Duplicate keys are refused, as in the config: `{"verb":"ready","verb":"shutdown"}`
    // must not shut down whoever only checked `ready`.
    let crate::config::StrictValue(value) =
        serde_json::from_slice(line).map_err(|error| format!("not a JSON request: {error}"))?;
    let Value::Object(object) = value else {
        return Err("the request is not a JSON object".into());
    };
    if let Some(key) = object
        .keys()
        .find(|key| !["verb", "workers", "signal"].contains(&key.as_str()))
    {
        return Err(format!("unknown key {key:?}"));
    }
    let verb = match object.get("verb") {
        Some(Value::String(text)) => {
            Verb::parse(text).ok_or_else(|| format!("unknown verb {text:?}"))?
        }
        Some(_) => return Err("\"verb\" must be a string".into()),
        None => return Err("no \"verb\"".into()),
    };
    let mut workers = match object.get("workers") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(name) => Ok(name.clone()),
                _ => Err("\"workers\" must be an array of names".to_string()),
            })
            .collect::<Result<Vec<String>, String>>()?,
        Some(_) => return Err("\"workers\" must be an array of names".into()),
    };
    // Each name once, in the order first given: a 64 KiB request naming one worker 16,000
    // times made PID 1 build (and hold, for a client that never reads) a 2 MB reply, and send
    // as many signals and events.
    let mut seen = std::collections::HashSet::new();
    workers.retain(|name| seen.insert(name.clone()));
    match (verb.workers(), workers.is_empty()) {
        (Names::Required, true) => return Err(format!("{} needs worker names", verb.as_str())),
        (Names::None, false) => return Err(format!("{} takes no worker names", verb.as_str())),
        _ => {}
    }
    let signal = match (verb, object.get("signal")) {
        (Verb::Signal, Some(Value::String(text))) => {
            Some(signals::parse(text).ok_or_else(|| format!("unknown signal {text:?}"))?)
        }
        (Verb::Signal, Some(Value::Number(number))) => {
            let number = number
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| (1..=signals::MAX_SIGNAL).contains(n));
            Some(number.ok_or("\"signal\" is not a signal number")?)
        }
        (Verb::Signal, Some(_)) => return Err("\"signal\" must be a name or a number".into()),
        (Verb::Signal, None) => return Err("signal needs a \"signal\"".into()),
        (_, Some(_)) => return Err(format!("{} takes no signal", verb.as_str())),
        (_, None) => None,
    };
    Ok(Request {
        verb,
        workers,
        signal,
    })
}

/// The `verb` a refused request named, for its `control` event (bounded: it goes in a log).
pub fn verb_of(line: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let verb = value.get("verb")?.as_str()?;
    Some(crate::cli::one_line(
        &verb.chars().take(32).collect::<String>(),
    ))
}

/// `{"ok": false, "error": ...}`.
pub fn refusal(error: &str) -> Value {
    json!({"ok": false, "error": error})
}

/// The reply line, newline included.
pub fn encode_reply(reply: &Value) -> Vec<u8> {
    let mut bytes = reply.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request {
                verb: Verb::Status,
                workers: vec![],
                signal: None,
            },
            Request {
                verb: Verb::Stop,
                workers: vec!["a".into(), "b".into()],
                signal: None,
            },
            Request {
                verb: Verb::Signal,
                workers: vec!["a".into()],
                signal: Some(libc::SIGHUP),
            },
        ] {
            let line = request.encode();
            assert!(line.ends_with('\n'));
            assert_eq!(parse_request(line.trim_end().as_bytes()), Ok(request));
        }
    }

    #[test]
    fn a_name_given_many_times_is_one_name() {
        let names: Vec<&str> = std::iter::repeat_n("w", 16_000)
            .chain(["a", "w", "a"])
            .collect();
        let line = serde_json::json!({"verb": "status", "workers": names}).to_string();
        let request = parse_request(line.as_bytes()).unwrap();
        assert_eq!(request.workers, ["w", "a"], "each once, first order kept");
    }

    #[test]
    fn bad_requests_say_why() {
        for (line, want) in [
            ("", "not a JSON request"),
            ("[1]", "not a JSON object"),
            ("{}", "no \"verb\""),
            (r#"{"verb": 3}"#, "must be a string"),
            (r#"{"verb": "kill"}"#, "unknown verb \"kill\""),
            (r#"{"verb": "status", "x": 1}"#, "unknown key \"x\""),
            (r#"{"verb": "stop"}"#, "stop needs worker names"),
            (r#"{"verb": "stop", "workers": "a"}"#, "array of names"),
            (r#"{"verb": "stop", "workers": [1]}"#, "array of names"),
            (r#"{"verb": "ready", "workers": ["a"]}"#, "takes no worker"),
            (
                r#"{"verb": "signal", "workers": ["a"]}"#,
                "needs a \"signal\"",
            ),
            (
                r#"{"verb": "signal", "workers": ["a"], "signal": "NOPE"}"#,
                "unknown signal",
            ),
            (
                r#"{"verb": "signal", "workers": ["a"], "signal": 99}"#,
                "not a signal number",
            ),
            (
                r#"{"verb": "stop", "workers": ["a"], "signal": 1}"#,
                "takes no signal",
            ),
            // The last of two keys once won: a `ready` probe's line could shut down.
            (
                r#"{"verb": "ready", "verb": "shutdown"}"#,
                "duplicate key \"verb\"",
            ),
            (
                r#"{"verb": "stop", "workers": ["a"], "workers": ["b"]}"#,
                "duplicate key \"workers\"",
            ),
        ] {
            let error = parse_request(line.as_bytes()).unwrap_err();
            assert!(error.contains(want), "{line}: {error}");
        }
        assert_eq!(verb_of(br#"{"verb":"fly"}"#).as_deref(), Some("fly"));
        assert_eq!(verb_of(b"{"), None);
        let numbered = parse_request(br#"{"verb":"signal","workers":["a"],"signal":10}"#);
        assert_eq!(numbered.map(|r| r.signal), Ok(Some(10)));
    }
}
