//! The registry's bookkeeping and its behaviour when writes fail.

#[cfg(test)]
use super::*;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleet-registry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn owner() -> Owner {
    Owner {
        pid: 1,
        start_time: 10,
    }
}

fn read(path: &Path) -> Handoff {
    Handoff::decode(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn entries_follow_spawns_and_exits_and_an_empty_registry_is_no_file() {
    let dir = temp_dir("life");
    let (mut registry, event) = Registry::open(&dir, owner(), "boot".into(), vec![1]);
    assert!(event.is_none());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    registry.add_pending("api", 1);
    let first = registry.persist().unwrap();
    assert_eq!(first.name, "handoff_persisted");
    let on_disk = read(&registry.path());
    assert_eq!(on_disk.entries[0].pid, None, "persisted before the spawn");
    registry.set_pid("api", 1, 42, Some(7), &["sleep".into()]);
    assert!(registry.persist().is_none(), "quiet once persisting works");
    // A restart of "api" needs no write before its fork: the file names the worker already.
    assert!(!registry.needs_write_before_spawn("api"));
    assert!(registry.needs_write_before_spawn("web"));
    assert_eq!(read(&registry.path()).entries[0].pid, Some(42));
    registry.set_pid("api", 2, 1, Some(7), &["x".into()]);
    assert!(
        registry.entries().iter().all(|e| e.pid != Some(1)),
        "protected pid"
    );
    registry.forget_pid(42);
    registry.persist();
    assert!(!registry.path().exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_write_keeps_the_old_file_and_every_entry_and_is_retried() {
    let dir = temp_dir("fail");
    let (mut registry, _) = Registry::open(&dir, owner(), "boot".into(), vec![]);
    registry.set_pid("api", 1, 42, Some(7), &[]);
    registry.persist();
    // Make writes fail: a directory where the temp file must go.
    let blocker = dir.join(format!(".{}.tmp", format::file_name(&owner())));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"x").unwrap();
    registry.set_pid("web", 1, 43, Some(8), &[]);
    let failed = registry.persist().unwrap();
    assert_eq!(failed.name, "handoff_persist_failed");
    assert_eq!(
        read(&registry.path()).entries.len(),
        1,
        "old durable entries kept"
    );
    assert_eq!(registry.entries().len(), 2, "nothing dropped in memory");
    std::fs::remove_dir_all(&blocker).unwrap();
    // The next change (or the next turn) retries, and says it recovered.
    let recovered = registry.persist().unwrap();
    assert_eq!(recovered.name, "handoff_persisted");
    assert_eq!(read(&registry.path()).entries.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_dir_that_cannot_exist_disables_the_registry_once() {
    let (mut registry, event) = Registry::open(
        Path::new("/proc/fleet-init-cannot-exist"),
        owner(),
        "boot".into(),
        vec![],
    );
    let event = event.unwrap();
    assert_eq!(event.name, "handoff_persist_failed");
    assert!(registry.is_disabled());
    registry.add_pending("api", 1);
    assert!(
        registry.persist().is_none(),
        "reported once, not on every change"
    );
}
