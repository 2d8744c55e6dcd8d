//! The handoff file format (versioned JSON): who wrote it, under which boot, and one entry per
//! process fleet-init is responsible for. Decoding is strict and pure.

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;
pub const FILE_PREFIX: &str = "handoff-";
pub const FILE_SUFFIX: &str = ".json";

/// The identity of a process: pid + start time (field 22 of stat) + boot id, and its command
/// line as exec'd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub worker: String,
    pub run: u32,
    /// Absent: written before the spawn, so the process (if any) is found by
    /// `FLEET_INIT_WORKER=<worker>` in its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub cmdline: Vec<String>,
}

/// The generation of fleet-init that wrote the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub pid: i32,
    pub start_time: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    pub version: u32,
    pub boot_id: String,
    pub owner: Owner,
    pub entries: Vec<Entry>,
}

impl Handoff {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// A file that does not decode to this exact shape and version is corrupt.
    pub fn decode(bytes: &[u8]) -> Result<Handoff, String> {
        let handoff: Handoff = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if handoff.version != FORMAT_VERSION {
            return Err(format!(
                "unsupported version {} (this fleet-init reads {FORMAT_VERSION})",
                handoff.version
            ));
        }
        for entry in &handoff.entries {
            if entry.pid.is_some_and(|pid| pid <= 0) {
                return Err(format!("entry of worker {:?} has pid <= 0", entry.worker));
            }
            if entry.pid.is_some() != entry.start_time.is_some() {
                return Err(format!(
                    "entry of worker {:?} has a pid without start time or the reverse",
                    entry.worker
                ));
            }
        }
        Ok(handoff)
    }
}

/// `handoff-<pid>-<start_time>.json`: one file per generation, so generations never overwrite
/// each other's records.
pub fn file_name(owner: &Owner) -> String {
    format!(
        "{FILE_PREFIX}{}-{}{FILE_SUFFIX}",
        owner.pid, owner.start_time
    )
}

pub fn is_handoff_name(name: &str) -> bool {
    name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handoff {
        Handoff {
            version: 1,
            boot_id: "b".into(),
            owner: Owner {
                pid: 1,
                start_time: 5,
            },
            entries: vec![
                Entry {
                    worker: "api".into(),
                    run: 2,
                    pid: Some(42),
                    start_time: Some(99),
                    cmdline: vec!["/app/api".into()],
                },
                Entry {
                    worker: "api".into(),
                    run: 3,
                    pid: None,
                    start_time: None,
                    cmdline: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let handoff = sample();
        assert_eq!(Handoff::decode(&handoff.encode()).unwrap(), handoff);
        for (text, want) in [
            ("", "EOF while parsing"),
            ("{\"version\":1", "EOF while parsing"),
            ("[]", "invalid length 0"),
            ("7", "invalid type"),
            (
                r#"{"version":2,"boot_id":"b","owner":{"pid":1,"start_time":1},"entries":[]}"#,
                "unsupported version 2",
            ),
            (
                r#"{"version":1,"boot_id":"b","owner":{"pid":1,"start_time":1},"entries":[],"x":1}"#,
                "unknown field",
            ),
            (
                r#"{"version":1,"boot_id":"b","owner":{"pid":1,"start_time":1},"entries":[{"worker":"a","run":1,"pid":-4,"start_time":1}]}"#,
                "pid <= 0",
            ),
            (
                r#"{"version":1,"boot_id":"b","owner":{"pid":1,"start_time":1},"entries":[{"worker":"a","run":1,"pid":4}]}"#,
                "without start time",
            ),
        ] {
            let error = Handoff::decode(text.as_bytes()).unwrap_err();
            assert!(error.contains(want), "{text}: {error}");
        }
        assert_eq!(
            file_name(&Owner {
                pid: 1,
                start_time: 77
            }),
            "handoff-1-77.json"
        );
        assert!(is_handoff_name("handoff-1-77.json"));
        assert!(!is_handoff_name(".handoff-1-77.json.tmp"));
        assert!(!is_handoff_name("handoff-1-77.json.corrupt-5"));
    }
}
