//! The durable registry of every process fleet-init is responsible for, kept as one handoff
//! file per generation in the state dir. The in-memory entries are the truth; the file follows
//! them with atomic writes. A failed write keeps both the old file and every in-memory entry,
//! is reported, and is retried on the next change; nothing is dropped.

pub mod atomic;
pub mod files;
pub mod format;

use crate::events::Event;
use format::{Entry, Handoff, Owner, FORMAT_VERSION};
use std::collections::BTreeSet;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Registry {
    dir: PathBuf,
    file_name: String,
    handoff: Handoff,
    /// Pids never written: the config's protected pids, fleet-init, its ancestors.
    protected: Vec<i32>,
    /// The state dir cannot exist (read-only root): the container runs without a registry.
    is_disabled: bool,
    is_dirty: bool,
    /// The file on disk, if any, matches the entries: nothing to retry.
    has_failed: bool,
    has_persisted: bool,
    /// Workers with an entry in the file as last written: `--reap` finds their processes by
    /// name if need be (an entry whose pid is gone resolves by `FLEET_INIT_WORKER`).
    durable_workers: BTreeSet<String>,
}

impl Registry {
    /// Creates the state dir (0700) if needed. When it cannot exist at all, the registry is
    /// disabled and the returned event says so, once.
    pub fn open(
        dir: &Path,
        owner: Owner,
        boot_id: String,
        protected: Vec<i32>,
    ) -> (Registry, Option<Event>) {
        let file_name = format::file_name(&owner);
        let mut registry = Registry {
            dir: dir.to_path_buf(),
            file_name,
            handoff: Handoff {
                version: FORMAT_VERSION,
                boot_id,
                owner,
                entries: Vec::new(),
            },
            protected,
            is_disabled: false,
            is_dirty: false,
            has_failed: false,
            has_persisted: false,
            durable_workers: BTreeSet::new(),
        };
        let event = match create_state_dir(dir) {
            Ok(()) => None,
            Err(error) => {
                registry.is_disabled = true;
                Some(
                    Event::error("handoff_persist_failed")
                        .with("path", dir.display().to_string())
                        .with(
                            "error",
                            format!("state dir unusable, running without a registry: {error}"),
                        ),
                )
            }
        };
        (registry, event)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    pub fn is_disabled(&self) -> bool {
        self.is_disabled
    }

    pub fn entries(&self) -> &[Entry] {
        &self.handoff.entries
    }

    /// Before a spawn: the worker's next run is recorded by name, so a crash between fork and
    /// recording its pid still leaves it findable (by `FLEET_INIT_WORKER`).
    pub fn add_pending(&mut self, worker: &str, run: u32) {
        self.handoff.entries.push(Entry {
            worker: worker.to_string(),
            run,
            pid: None,
            start_time: None,
            cmdline: Vec::new(),
        });
        self.is_dirty = true;
    }

    /// Whether a spawn of `worker` must wait for a write: not when the file already holds an
    /// entry of that worker (its previous run's), which covers the new process by name. So a
    /// restart costs one write, after the spawn, instead of two.
    pub fn needs_write_before_spawn(&self, worker: &str) -> bool {
        !self.is_disabled && !self.durable_workers.contains(worker)
    }

    /// The spawn worked: the pending entry gets the process's identity.
    pub fn set_pid(
        &mut self,
        worker: &str,
        run: u32,
        pid: i32,
        start_time: Option<u64>,
        cmdline: &[String],
    ) {
        let protected = self.protected.contains(&pid);
        let pending = self
            .handoff
            .entries
            .iter()
            .position(|e| e.worker == worker && e.run == run && e.pid.is_none());
        if let Some(index) = pending {
            self.handoff.entries.remove(index);
        }
        // Without a start time there is no identity to check later: the name still finds it.
        match (protected, start_time) {
            (false, Some(start_time)) => self.handoff.entries.push(Entry {
                worker: worker.to_string(),
                run,
                pid: Some(pid),
                start_time: Some(start_time),
                cmdline: cmdline.to_vec(),
            }),
            (false, None) => self.add_pending(worker, run),
            (true, _) => log::warn!("worker {worker} pid {pid} is a protected pid: not recorded"),
        }
        self.is_dirty = true;
    }

    /// The spawn failed: its child never ran anything.
    pub fn forget_pending(&mut self, worker: &str, run: u32) {
        self.handoff
            .entries
            .retain(|e| !(e.worker == worker && e.run == run && e.pid.is_none()));
        self.is_dirty = true;
    }

    /// The processes of this pid's run are confirmed gone.
    pub fn forget_pid(&mut self, pid: i32) {
        let before = self.handoff.entries.len();
        self.handoff.entries.retain(|e| e.pid != Some(pid));
        self.is_dirty |= self.handoff.entries.len() != before;
    }

    /// Everything below fleet-init is gone.
    pub fn forget_all(&mut self) {
        if !self.handoff.entries.is_empty() {
            self.handoff.entries.clear();
            self.is_dirty = true;
        }
    }

    /// Writes the entries if they changed (or a previous write failed). An empty registry is
    /// no file at all. Returns the event to emit, if any: the first success, a failure, and
    /// the success that ends a run of failures.
    pub fn persist(&mut self) -> Option<Event> {
        if self.is_disabled || !self.is_dirty {
            return None;
        }
        let result = if self.handoff.entries.is_empty() {
            atomic::remove(&self.dir, &self.file_name)
        } else {
            atomic::replace(&self.dir, &self.file_name, &self.handoff.encode())
        };
        let path = self.path().display().to_string();
        match result {
            Ok(()) => {
                self.is_dirty = false;
                self.durable_workers = self
                    .handoff
                    .entries
                    .iter()
                    .map(|e| e.worker.clone())
                    .collect();
                let should_tell = self.has_failed || !self.has_persisted;
                self.has_failed = false;
                self.has_persisted = true;
                should_tell.then(|| {
                    Event::info("handoff_persisted")
                        .with("path", path)
                        .with("entries", self.handoff.entries.len())
                })
            }
            Err(error) => {
                // The old file stays as it was, and the entries stay in memory: retried on the
                // next change.
                self.has_failed = true;
                Some(
                    Event::error("handoff_persist_failed")
                        .with("path", path)
                        .with("error", error.to_string())
                        .with("entries", self.handoff.entries.len()),
                )
            }
        }
    }
}

fn create_state_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(error) => return Err(error),
    }
    let metadata = std::fs::metadata(dir)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
