//! The checking vocabulary of the config parser: `ConfigError`, the error collector `Checker`
//! with its typed getters, how found values are described in messages, and a JSON value that
//! refuses duplicate keys.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Longest prefix of a string value quoted back in a message.
const MAX_SHOWN_CHARS: usize = 64;

/// One problem in the config. `worker` is the worker's name, or `#N` (1-based position) when
/// the worker has no usable name: names cannot contain `#`, so the two never collide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub worker: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `worker "api": key "max_crashes": must be ...`, `worker #2: ...`, `key "grace_ms": ...`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.worker {
            Some(label) if label.starts_with('#') => write!(formatter, "worker {label}: ")?,
            Some(name) => write!(formatter, "worker {}: ", quote(name))?,
            None => {}
        }
        if let Some(key) = &self.key {
            write!(formatter, "key {}: ", quote(key))?;
        }
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A string as JSON would write it (so a message stays on one line), cut to 64 characters so
/// one absurd value cannot flood the terminal.
pub(super) fn quote(text: &str) -> String {
    let shown: String = text.chars().take(MAX_SHOWN_CHARS).collect();
    let quoted = serde_json::to_string(&shown).unwrap_or_else(|_| format!("{shown:?}"));
    if shown.len() < text.len() {
        format!("{quoted}...")
    } else {
        quoted
    }
}

/// What was found where something else was expected: `-3`, `1.5`, `"5"`, `true`, `an array`.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => quote(text),
        Value::Array(items) if items.is_empty() => "an empty array".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// serde_json's message ends with ` at line L column C`; the position is moved to the front.
pub(super) fn json_syntax_error(error: &serde_json::Error) -> ConfigError {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    ConfigError {
        worker: None,
        key: None,
        message: format!(
            "invalid JSON at line {} column {}: {message}",
            error.line(),
            error.column()
        ),
    }
}

/// The value of `key`, with `null` read as absent: accepted for the keys whose default is
/// "none" (`env`, `cwd`, `user`, `max_rss_mb`), where it can only mean that default.
pub(super) fn present<'value>(
    object: &'value Map<String, Value>,
    key: &str,
) -> Option<&'value Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// A `Value` that refuses duplicate object keys: serde_json silently keeps the last one, and
/// `{"max_crashes": 0, "max_crashes": 3}` would hide a mistake from the report.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }
    fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }
    fn visit_i64<E>(self, number: i64) -> Result<Value, E> {
        Ok(Value::from(number))
    }
    fn visit_u64<E>(self, number: u64) -> Result<Value, E> {
        Ok(Value::from(number))
    }
    fn visit_f64<E>(self, number: f64) -> Result<Value, E> {
        Ok(Value::from(number))
    }
    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::from(text))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = sequence.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key {}", quote(&key))));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Collects the errors of one scope (the top level, or one worker) with its label.
pub(super) struct Checker<'errors> {
    pub(super) worker: Option<String>,
    pub(super) errors: &'errors mut Vec<ConfigError>,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, key: Option<&str>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            worker: self.worker.clone(),
            key: key.map(str::to_string),
            message: message.into(),
        });
    }

    /// `must be {expected}, got {what was found}`: the one shape of every type error.
    pub(super) fn wrong(&mut self, key: Option<&str>, expected: &str, found: &Value) {
        self.error(key, format!("must be {expected}, got {}", describe(found)));
    }

    pub(super) fn has_error(&self, key: &str) -> bool {
        self.errors
            .iter()
            .any(|error| error.worker == self.worker && error.key.as_deref() == Some(key))
    }

    /// Unknown keys in sorted order: serde_json's `Map` is a `BTreeMap` (its `preserve_order`
    /// feature is off), so its keys come sorted (the unknown-key cases of the config tests).
    pub(super) fn reject_unknown_keys(&mut self, object: &Map<String, Value>, known: &[&str]) {
        let unknown: Vec<&String> = object
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .collect();
        for key in unknown {
            self.error(Some(key), "unknown key");
        }
    }

    pub(super) fn integer(
        &mut self,
        object: &Map<String, Value>,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let value = object.get(key)?;
        let number = value.as_u64().filter(|number| (min..=max).contains(number));
        if number.is_none() {
            self.wrong(Some(key), &format!("an integer from {min} to {max}"), value);
        }
        number
    }

    /// A string without NUL bytes (they cannot cross execve(2) or any path system call).
    pub(super) fn string<'value>(
        &mut self,
        key: &str,
        value: Option<&'value Value>,
        expected: &str,
    ) -> Option<&'value str> {
        match value? {
            Value::String(text) if text.contains('\0') => {
                self.error(Some(key), "must not contain a NUL byte");
                None
            }
            Value::String(text) => Some(text),
            other => {
                self.wrong(Some(key), expected, other);
                None
            }
        }
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        object: &Map<String, Value>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let value = object.get(key)?;
        let found = value.as_str().and_then(|text| {
            choices
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, choice)| *choice)
        });
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(name, _)| quote(name)).collect();
            self.wrong(Some(key), &format!("one of {}", names.join(", ")), value);
        }
        found
    }
}
