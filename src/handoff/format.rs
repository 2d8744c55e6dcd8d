//! The handoff file format (versioned JSON): which generation wrote it, under which boot and
//! PID namespace, and one entry per worker process it started. Decoding is strict and pure.

use super::generation::Generation;
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 2;
pub const FILE_PREFIX: &str = "handoff-";
pub const FILE_SUFFIX: &str = ".json";

/// A worker process as started: its identity is (boot id, PID namespace, pid, start time);
/// the command line is there for people to read, never compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub worker: String,
    pub run: u32,
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`.
    pub start_time: u64,
    #[serde(default)]
    pub cmdline: Vec<String>,
}

/// The fleet-init process of the generation: alive (same pid, same start time) means the
/// generation is alive and its processes are nobody else's to stop.
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
    /// 32 hex digits: the `FLEET_INIT_GENERATION` every process of the generation carries.
    pub generation: String,
    pub boot_id: String,
    /// The inode of the owner's `/proc/self/ns/pid`: its pids mean something only there.
    pub pid_ns: u64,
    pub owner: Owner,
    pub entries: Vec<Entry>,
}

impl Handoff {
    pub fn encode(&self) -> Vec<u8> {
        // Compact: 1,000 workers are one write of about 100 KB, not a pretty-printed megabyte.
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
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
        if Generation::parse(&handoff.generation).is_none() {
            return Err(format!(
                "generation {:?} is not 32 lowercase hex digits",
                handoff.generation
            ));
        }
        if handoff.owner.pid <= 0 {
            return Err("owner pid <= 0".into());
        }
        if let Some(entry) = handoff.entries.iter().find(|entry| entry.pid <= 0) {
            return Err(format!("entry of worker {:?} has pid <= 0", entry.worker));
        }
        Ok(handoff)
    }

    pub fn generation_id(&self) -> Option<Generation> {
        Generation::parse(&self.generation)
    }
}

/// `handoff-<generation>.json`: one file per generation, a name nobody can guess before the
/// generation exists, and unique even across PID namespaces sharing one state dir.
pub fn file_name(generation: Generation) -> String {
    format!("{FILE_PREFIX}{generation}{FILE_SUFFIX}")
}

pub fn is_handoff_name(name: &str) -> bool {
    name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEN: &str = "0123456789abcdef0123456789abcdef";

    fn sample() -> Handoff {
        Handoff {
            version: FORMAT_VERSION,
            generation: GEN.into(),
            boot_id: "b".into(),
            pid_ns: 4026531836,
            owner: Owner {
                pid: 1,
                start_time: 5,
            },
            entries: vec![Entry {
                worker: "api".into(),
                run: 2,
                pid: 42,
                start_time: 99,
                cmdline: vec!["/app/api".into()],
            }],
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let handoff = sample();
        assert_eq!(Handoff::decode(&handoff.encode()).unwrap(), handoff);
        let head = format!(
            r#""generation":"{GEN}","boot_id":"b","pid_ns":7,"owner":{{"pid":1,"start_time":1}}"#
        );
        for (text, want) in [
            (String::new(), "EOF while parsing"),
            ("{\"version\":2".into(), "EOF while parsing"),
            ("[]".into(), "invalid length 0"),
            ("7".into(), "invalid type"),
            (format!(r#"{{"version":1,{head},"entries":[]}}"#), "unsupported version 1"),
            (format!(r#"{{"version":2,{head},"entries":[],"x":1}}"#), "unknown field"),
            (
                format!(r#"{{"version":2,{head},"entries":[{{"worker":"a","run":1,"pid":-4,"start_time":1}}]}}"#),
                "pid <= 0",
            ),
            (
                format!(r#"{{"version":2,{head},"entries":[{{"worker":"a","run":1,"pid":4}}]}}"#),
                "missing field `start_time`",
            ),
            (
                r#"{"version":2,"generation":"x","boot_id":"b","pid_ns":7,"owner":{"pid":1,"start_time":1},"entries":[]}"#.into(),
                "not 32 lowercase hex digits",
            ),
            (
                format!(r#"{{"version":2,"generation":"{GEN}","boot_id":"b","owner":{{"pid":1,"start_time":1}},"entries":[]}}"#),
                "missing field `pid_ns`",
            ),
        ] {
            let error = Handoff::decode(text.as_bytes()).unwrap_err();
            assert!(error.contains(want), "{text}: {error}");
        }
        let id = Generation::parse(GEN).unwrap();
        assert_eq!(file_name(id), format!("handoff-{GEN}.json"));
        assert!(is_handoff_name(&file_name(id)));
        assert!(!is_handoff_name(&format!(".handoff-{GEN}.json.{GEN}.tmp")));
        assert!(!is_handoff_name(&format!("handoff-{GEN}.json.corrupt-5")));
    }
}
