//! Reading the handoff files previous generations left, refusing any that someone else could
//! have planted (see `StateDir::read`) and moving corrupt ones aside, never deleting them.

use super::format::{self, Handoff};
use super::statedir::{Refusal, StateDir};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub enum Loaded {
    Usable {
        name: String,
        handoff: Handoff,
    },
    Refused {
        name: String,
        reason: String,
    },
    Corrupt {
        name: String,
        moved_to: Option<String>,
        error: String,
    },
}

/// Every handoff file in `dir` but `skip` (the caller's own).
pub fn load_all(dir: &StateDir, skip: Option<&str>) -> Result<Vec<Loaded>, nix::errno::Errno> {
    Ok(load_named(dir, &dir.names()?, skip))
}

/// `load_all` on a listing the caller already made (`StateDir::names`).
pub fn load_named(dir: &StateDir, names: &[String], skip: Option<&str>) -> Vec<Loaded> {
    names
        .iter()
        .filter(|name| format::is_handoff_name(name) && Some(name.as_str()) != skip)
        .map(|name| load(dir, name.clone()))
        .collect()
}

fn load(dir: &StateDir, name: String) -> Loaded {
    let bytes = match dir.read(&name) {
        Ok(bytes) => bytes,
        Err(Refusal::Refused(reason)) => return Loaded::Refused { name, reason },
        Err(Refusal::Failed(errno)) => {
            return Loaded::Refused {
                name,
                reason: format!("unreadable: {}", errno.desc()),
            }
        }
    };
    match Handoff::decode(&bytes) {
        // A generation has one file, named after it: a copy under another name (planted, or
        // restored from a backup) would let a reap judge a live generation dead by a forged
        // owner while its own file says it is alive.
        Ok(handoff) if handoff.generation_id().map(format::file_name) != Some(name.clone()) => {
            Loaded::Refused {
                reason: format!("its name is not its generation's ({})", handoff.generation),
                name,
            }
        }
        Ok(handoff) => Loaded::Usable { name, handoff },
        Err(error) => {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let moved_to = match dir.move_aside(&name, &format!("corrupt-{millis}")) {
                Ok(moved) => Some(moved),
                Err(errno) => {
                    log::error!("cannot move corrupt handoff {name} aside: {errno}");
                    None
                }
            };
            Loaded::Corrupt {
                name,
                moved_to,
                error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn unsafe_and_corrupt_files_are_refused_or_moved_aside() {
        let path = std::env::temp_dir().join(format!("fleet-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let dir = StateDir::open(&path, true).unwrap();
        let good = br#"{"version":2,"generation":"0123456789abcdef0123456789abcdef","boot_id":"b","pid_ns":1,"owner":{"pid":9,"start_time":1},"entries":[]}"#;
        let write = |name: &str, bytes: &[u8], mode: u32| {
            std::fs::write(path.join(name), bytes).unwrap();
            std::fs::set_permissions(path.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        };
        let good_name = "handoff-0123456789abcdef0123456789abcdef.json";
        write(good_name, good, 0o600);
        write("handoff-1.json", good, 0o600);
        write("handoff-2.json", b"{torn", 0o600);
        write("handoff-3.json", good, 0o666);
        write("handoff-5.json", good, 0o600);
        write("other.json", b"ignored", 0o600);
        std::os::unix::fs::symlink(path.join("handoff-1.json"), path.join("handoff-4.json"))
            .unwrap();
        std::fs::create_dir(path.join("handoff-6.json")).unwrap();
        let loaded = load_all(&dir, Some("handoff-5.json")).unwrap();
        let summary: Vec<String> = loaded
            .iter()
            .map(|l| match l {
                Loaded::Usable { name, .. } => format!("{name}: usable"),
                Loaded::Refused { name, reason } => format!("{name}: refused: {reason}"),
                Loaded::Corrupt { name, moved_to, .. } => {
                    format!("{name}: corrupt, moved: {}", moved_to.is_some())
                }
            })
            .collect();
        assert_eq!(
            summary,
            [
                "handoff-0123456789abcdef0123456789abcdef.json: usable",
                "handoff-1.json: refused: its name is not its generation's (0123456789abcdef0123456789abcdef)",
                "handoff-2.json: corrupt, moved: true",
                "handoff-3.json: refused: writable by group or others (mode 666)",
                "handoff-4.json: refused: a symlink",
                "handoff-6.json: refused: not a regular file",
            ]
        );
        assert!(!path.join("handoff-2.json").exists());
        let kept: Vec<_> = dir
            .names()
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("handoff-2.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "moved aside, never deleted");
        std::fs::remove_dir_all(&path).unwrap();
    }
}
