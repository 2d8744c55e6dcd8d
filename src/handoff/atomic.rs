//! Crash-safe file replacement: write a temp file, fsync it, rename it over the target, fsync
//! the directory. A crash at any instant leaves the old file or the new one, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `dir/name` with `bytes`, mode 0600.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!(".{name}.tmp"));
    let result = write_synced(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, dir.join(name)))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        // The old file is untouched; a half-written temp file must not linger.
        if let Err(error) = std::fs::remove_file(&temp) {
            if error.kind() != std::io::ErrorKind::NotFound {
                log::debug!("cannot remove {}: {error}", temp.display());
            }
        }
    }
    result
}

/// Removes `dir/name`; a missing file is already removed. The directory is not synced: a
/// removal lost to a host crash leaves a file whose entries are of another boot by the next
/// start, which consumes it without signalling anything, so the sync would buy nothing.
pub fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_removes() {
        let dir = std::env::temp_dir().join(format!("fleet-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        replace(&dir, "f.json", b"one").unwrap();
        replace(&dir, "f.json", b"two").unwrap();
        assert_eq!(std::fs::read(dir.join("f.json")).unwrap(), b"two");
        assert!(!dir.join(".f.json.tmp").exists());
        remove(&dir, "f.json").unwrap();
        remove(&dir, "f.json").unwrap();
        assert!(!dir.join("f.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
