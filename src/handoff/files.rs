//! Reading the handoff files a previous generation left, refusing any that someone else could
//! have planted (not a regular file, a symlink, not owned by fleet-init's user, writable by
//! group or others) and moving corrupt ones aside, never deleting them.

use super::format::{self, Handoff};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A file bigger than this is not something fleet-init wrote.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

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
        moved_to: Option<PathBuf>,
        error: String,
    },
}

/// Every handoff file in `dir` but `skip` (the caller's own). A missing dir has none.
pub fn load_all(dir: &Path, euid: u32, skip: Option<&str>) -> std::io::Result<Vec<Loaded>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut names: Vec<String> = listing
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| format::is_handoff_name(name) && Some(name.as_str()) != skip)
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| load(dir, name, euid))
        .collect())
}

fn load(dir: &Path, name: String, euid: u32) -> Loaded {
    let path = dir.join(&name);
    let bytes = match read_trusted(&path, euid) {
        Ok(bytes) => bytes,
        Err(Refusal::Refused(reason)) => return Loaded::Refused { name, reason },
        Err(Refusal::Unreadable(error)) => {
            return Loaded::Refused {
                name,
                reason: format!("unreadable: {error}"),
            }
        }
    };
    match Handoff::decode(&bytes) {
        Ok(handoff) => Loaded::Usable { name, handoff },
        Err(error) => {
            let moved_to = move_aside(dir, &name);
            Loaded::Corrupt {
                name,
                moved_to,
                error,
            }
        }
    }
}

enum Refusal {
    Refused(String),
    Unreadable(std::io::Error),
}

/// Checks the file before and after opening it (same inode), so it cannot be swapped between.
fn read_trusted(path: &Path, euid: u32) -> Result<Vec<u8>, Refusal> {
    let before = std::fs::symlink_metadata(path).map_err(Refusal::Unreadable)?;
    check(&before, euid)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(Refusal::Unreadable)?;
    let after = file.metadata().map_err(Refusal::Unreadable)?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(Refusal::Refused("replaced while being opened".into()));
    }
    check(&after, euid)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Refusal::Unreadable)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(Refusal::Refused(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

fn check(metadata: &std::fs::Metadata, euid: u32) -> Result<(), Refusal> {
    let kind = metadata.file_type();
    if kind.is_symlink() {
        return Err(Refusal::Refused("a symlink".into()));
    }
    if !kind.is_file() {
        return Err(Refusal::Refused("not a regular file".into()));
    }
    if metadata.uid() != euid {
        return Err(Refusal::Refused(format!(
            "owned by uid {}, not fleet-init's uid {euid}",
            metadata.uid()
        )));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Refusal::Refused(format!(
            "writable by group or others (mode {mode:03o})"
        )));
    }
    Ok(())
}

/// `name.corrupt-<unix ms>`: kept for a human to look at, out of the way of the next reap.
fn move_aside(dir: &Path, name: &str) -> Option<PathBuf> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let target = dir.join(format!("{name}.corrupt-{millis}"));
    match std::fs::rename(dir.join(name), &target) {
        Ok(()) => {
            if let Err(error) = super::atomic::sync_dir(dir) {
                log::warn!("cannot sync {}: {error}", dir.display());
            }
            Some(target)
        }
        Err(error) => {
            log::error!("cannot move corrupt handoff {name} aside: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn unsafe_and_corrupt_files_are_refused_or_moved_aside() {
        let dir = std::env::temp_dir().join(format!("fleet-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = br#"{"version":1,"boot_id":"b","owner":{"pid":9,"start_time":1},"entries":[]}"#;
        let write = |name: &str, bytes: &[u8], mode: u32| {
            std::fs::write(dir.join(name), bytes).unwrap();
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        };
        write("handoff-1-1.json", good, 0o600);
        write("handoff-2-2.json", b"{torn", 0o600);
        write("handoff-3-3.json", good, 0o666);
        write("handoff-5-5.json", good, 0o600);
        write("other.json", b"ignored", 0o600);
        std::os::unix::fs::symlink(dir.join("handoff-1-1.json"), dir.join("handoff-4-4.json"))
            .unwrap();
        std::fs::create_dir(dir.join("handoff-6-6.json")).unwrap();
        let euid = unsafe { libc::geteuid() };
        let loaded = load_all(&dir, euid, Some("handoff-5-5.json")).unwrap();
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
                "handoff-1-1.json: usable",
                "handoff-2-2.json: corrupt, moved: true",
                "handoff-3-3.json: refused: writable by group or others (mode 666)",
                "handoff-4-4.json: refused: a symlink",
                "handoff-6-6.json: refused: not a regular file",
            ]
        );
        assert!(!dir.join("handoff-2-2.json").exists());
        let kept: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("handoff-2-2.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "moved aside, never deleted");
        let foreign = load_all(&dir, euid + 1, None).unwrap();
        assert!(foreign.iter().any(|l| matches!(l,
            Loaded::Refused { name, reason } if name == "handoff-1-1.json" && reason.starts_with("owned by uid"))));
        assert!(load_all(&dir.join("missing"), euid, None)
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
