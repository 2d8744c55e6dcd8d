//! The registry's bookkeeping and its behaviour when writes fail.

#[cfg(test)]
use super::*;
use std::os::unix::fs::PermissionsExt;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleet-registry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn identity() -> Identity {
    Identity {
        generation: Generation([7; 16]),
        boot_id: "boot".into(),
        pid_ns: 4026531836,
        owner: Owner {
            pid: 1,
            start_time: 10,
        },
    }
}

fn read(path: &Path) -> Handoff {
    Handoff::decode(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_header_comes_first_then_entries_follow_spawns_and_exits() {
    let dir = temp_dir("life");
    let (mut registry, event) = Registry::open(&dir, identity(), vec![1]);
    assert!(event.is_none());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let first = registry.persist(0).unwrap();
    assert_eq!(first.name, "handoff_persisted");
    let on_disk = read(&registry.path());
    assert_eq!(on_disk.generation, "07".repeat(16));
    assert_eq!(on_disk.pid_ns, 4026531836);
    assert!(
        on_disk.entries.is_empty(),
        "the generation before any spawn"
    );
    assert!(
        registry.persist(0).is_none(),
        "nothing changed, nothing written"
    );
    registry.add("api", 1, 42, 7, &["sleep".into()]);
    registry.add("web", 1, 43, 8, &["sleep".into()]);
    assert!(registry.persist(1).is_none(), "quiet once persisting works");
    let pids: Vec<i32> = read(&registry.path())
        .entries
        .iter()
        .map(|e| e.pid)
        .collect();
    assert_eq!(pids, [42, 43], "two spawns in one turn: one write");
    registry.add("api", 2, 1, 7, &["x".into()]);
    assert!(
        registry.entries().iter().all(|e| e.pid != 1),
        "protected pid"
    );
    registry.forget_pid(42);
    registry.persist(2);
    assert_eq!(read(&registry.path()).entries.len(), 1);
    registry.remove();
    assert!(!registry.path().exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_write_keeps_every_entry_and_is_retried_on_a_deadline() {
    let dir = temp_dir("fail");
    let (mut registry, _) = Registry::open(&dir, identity(), vec![]);
    registry.add("api", 1, 42, 7, &[]);
    registry.persist(0);
    // Make writes fail: the dir is removed and a file stands where it was, so it cannot be
    // created again (what a read-only or full file system does, without needing one).
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();
    registry.add("web", 1, 43, 8, &[]);
    let failed = registry.persist(100).unwrap();
    assert_eq!(failed.name, "handoff_persist_failed");
    assert_eq!(registry.entries().len(), 2, "nothing dropped in memory");
    assert_eq!(
        registry.next_retry(),
        Some(100 + RETRY_MS),
        "a deadline for the loop"
    );
    assert!(registry.persist(200).is_none(), "not before its deadline");
    assert!(
        registry.persist(100 + RETRY_MS).is_none(),
        "a failure again is not reported again"
    );
    std::fs::remove_file(&dir).unwrap();
    let recovered = registry.persist(200 + 2 * RETRY_MS).unwrap();
    assert_eq!(recovered.name, "handoff_persisted");
    assert_eq!(read(&registry.path()).entries.len(), 2);
    assert_eq!(registry.next_retry(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_dir_deleted_while_running_is_created_again() {
    let dir = temp_dir("deleted");
    let (mut registry, _) = Registry::open(&dir, identity(), vec![]);
    registry.persist(0);
    std::fs::remove_dir_all(&dir).unwrap();
    registry.add("api", 1, 42, 7, &[]);
    assert!(registry.persist(1).is_none());
    assert_eq!(read(&registry.path()).entries.len(), 1);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_dir_that_cannot_exist_or_is_refused_disables_the_registry_once() {
    let (mut registry, event) = Registry::open(
        Path::new("/proc/fleet-init-cannot-exist"),
        identity(),
        vec![],
    );
    let event = event.unwrap();
    assert_eq!(event.name, "handoff_persist_failed");
    assert!(registry.is_disabled());
    registry.add("api", 1, 42, 7, &[]);
    assert!(
        registry.persist(0).is_none(),
        "reported once, not on every change"
    );
    assert_eq!(
        registry.next_retry(),
        None,
        "no retry deadline: nothing to retry"
    );

    let dir = temp_dir("symlink");
    std::fs::create_dir_all(dir.join("target")).unwrap();
    std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).unwrap();
    let (registry, event) = Registry::open(&dir.join("link"), identity(), vec![]);
    assert!(registry.is_disabled());
    let error = event.unwrap().field("error").unwrap().to_string();
    assert!(
        error.contains("state dir refused (it is a symlink)"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_deferred_registry_touches_nothing_until_its_first_write_then_writes_the_whole_identity() {
    let dir = temp_dir("deferred");
    let read_identity: ReadIdentity = |generation| Identity {
        generation,
        ..identity()
    };
    let mut registry = Registry::deferred(&dir, Generation([9; 16]), vec![1], read_identity);
    registry.add("api", 1, 42, 7, &["sleep".into()]);
    assert!(!dir.exists(), "no state dir before the first write");
    let first = registry.persist(0).unwrap();
    assert_eq!(first.name, "handoff_persisted");
    let on_disk = read(&registry.path());
    assert_eq!(on_disk.generation, "09".repeat(16));
    assert_eq!(
        (
            on_disk.boot_id.as_str(),
            on_disk.pid_ns,
            on_disk.owner.start_time
        ),
        ("boot", 4026531836, 10),
        "the identity read at the first write"
    );
    assert_eq!(on_disk.entries.len(), 1);
    registry.remove();
    assert!(!registry.path().exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_deferred_registry_on_a_refused_state_dir_says_so_at_its_first_write_and_runs_without() {
    let dir = temp_dir("deferred-refused");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut registry = Registry::deferred(&dir, Generation([9; 16]), vec![1], |_| identity());
    let event = registry.persist(0).unwrap();
    assert_eq!(event.name, "handoff_persist_failed");
    assert!(registry.is_disabled());
    assert!(registry.persist(5000).is_none(), "said once");
    let _ = std::fs::remove_dir_all(&dir);
}
