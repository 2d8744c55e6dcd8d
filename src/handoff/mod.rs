//! The durable registry of every process fleet-init is responsible for, kept as one handoff
//! file per generation in the state dir. The file is written before the first worker starts
//! (as PID 1, right after its first fork: `Registry::deferred`), so the generation id it holds
//! finds every process of the generation whatever happens next;
//! the entries (pid and start time of each worker process) follow with at most one write per
//! loop turn. The in-memory entries are the truth: a failed write keeps both the old file and
//! every in-memory entry, is reported, and is retried on a deadline of the loop.

pub mod files;
pub mod format;
pub mod generation;
pub mod statedir;

use crate::events::Event;
use crate::supervisor::Millis;
use format::{Entry, Handoff, Owner, FORMAT_VERSION};
pub use generation::Generation;
use nix::errno::Errno;
use statedir::{Refusal, StateDir};
use std::path::{Path, PathBuf};

/// How long after a failed write the next one is tried, when nothing else changes.
pub const RETRY_MS: Millis = 1000;

/// Who wrote a registry: what a reader needs to tell a live generation from a dead one, and
/// which of the processes it sees are this generation's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub generation: Generation,
    pub boot_id: String,
    pub pid_ns: u64,
    pub owner: Owner,
}

/// Reads the identity of the given generation (`Registry::deferred`).
pub type ReadIdentity = fn(Generation) -> Identity;

pub struct Registry {
    path: PathBuf,
    /// `None` while the dir is missing (deleted while running, not yet created again).
    dir: Option<StateDir>,
    file_name: String,
    handoff: Handoff,
    /// Pids never written: the config's protected pids, fleet-init, its ancestors.
    protected: Vec<i32>,
    /// The state dir cannot exist or is refused: the container runs without a registry.
    is_disabled: bool,
    is_dirty: bool,
    /// The last write failed: the file on disk is behind the entries.
    has_failed: bool,
    has_persisted: bool,
    retry_at: Option<Millis>,
    /// A registry opened `deferred`: reads the rest of the identity (boot id, pid namespace,
    /// the owner's start time) at the first `persist`, which then opens the state dir.
    pending_identity: Option<(ReadIdentity, Generation)>,
}

impl Registry {
    /// Opens (creating it 0700 if needed) the state dir. When it cannot exist at all or is
    /// refused, the registry is disabled and the returned event says so, once. The header is
    /// written by the first `persist`, which the caller makes before spawning anything.
    pub fn open(dir: &Path, identity: Identity, protected: Vec<i32>) -> (Registry, Option<Event>) {
        let mut registry = Registry::unopened(dir, identity, protected);
        let event = registry.open_dir();
        (registry, event)
    }

    /// A registry whose state dir is opened, and whose identity is read with
    /// `read_identity`, only by the first `persist`: what PID 1 does, whose first write comes
    /// after its first fork anyway (when PID 1 dies the kernel ends every process of the
    /// namespace, so a file written before the fork protects nothing). Its reads of /proc and
    /// of the state dir (~15 system calls, two of them mkdir) then run beside the first
    /// worker's exec. A refused state dir is reported by that `persist`, as `open` would have.
    pub fn deferred(
        dir: &Path,
        generation: Generation,
        protected: Vec<i32>,
        read_identity: ReadIdentity,
    ) -> Registry {
        let identity = Identity {
            generation,
            boot_id: String::new(),
            pid_ns: 0,
            owner: Owner {
                pid: 0,
                start_time: 0,
            },
        };
        let mut registry = Registry::unopened(dir, identity, protected);
        registry.pending_identity = Some((read_identity, generation));
        registry
    }

    fn unopened(dir: &Path, identity: Identity, protected: Vec<i32>) -> Registry {
        Registry {
            path: dir.to_path_buf(),
            dir: None,
            file_name: format::file_name(identity.generation),
            handoff: Handoff {
                version: FORMAT_VERSION,
                generation: identity.generation.to_string(),
                boot_id: identity.boot_id,
                pid_ns: identity.pid_ns,
                owner: identity.owner,
                entries: Vec::new(),
            },
            protected,
            is_disabled: false,
            is_dirty: true,
            has_failed: false,
            has_persisted: false,
            retry_at: None,
            pending_identity: None,
        }
    }

    /// Opens (creating it 0700 if needed) the state dir; when it cannot exist at all or is
    /// refused, disables the registry and returns the event that says so.
    fn open_dir(&mut self) -> Option<Event> {
        match StateDir::open(&self.path, true) {
            Ok(state_dir) => {
                self.dir = Some(state_dir);
                None
            }
            Err(refusal) => {
                self.is_disabled = true;
                let why = match refusal {
                    Refusal::Refused(reason) => format!("state dir refused ({reason})"),
                    Refusal::Failed(errno) => format!("state dir unusable ({})", errno.desc()),
                };
                Some(
                    Event::error("handoff_persist_failed")
                        .with("path", self.path.display().to_string())
                        .with("error", format!("{why}, running without a registry")),
                )
            }
        }
    }

    pub fn path(&self) -> PathBuf {
        self.path.join(&self.file_name)
    }

    pub fn state_dir(&self) -> &Path {
        &self.path
    }

    pub fn is_disabled(&self) -> bool {
        self.is_disabled
    }

    /// The last write failed or never happened: the file does not hold what is in memory.
    pub fn is_behind(&self) -> bool {
        self.is_disabled || self.is_dirty
    }

    pub fn entries(&self) -> &[Entry] {
        &self.handoff.entries
    }

    /// A worker process started. A protected pid is not recorded (the generation id still
    /// finds the worker); a process without a start time has no identity to record.
    pub fn add(&mut self, worker: &str, run: u32, pid: i32, start_time: u64, cmdline: &[String]) {
        if self.protected.contains(&pid) {
            log::warn!("worker {worker} pid {pid} is a protected pid: not recorded");
            return;
        }
        self.handoff.entries.push(Entry {
            worker: worker.to_string(),
            run,
            pid,
            start_time,
            cmdline: cmdline.to_vec(),
        });
        self.is_dirty = true;
    }

    /// The processes of this pid's run are confirmed gone.
    pub fn forget_pid(&mut self, pid: i32) {
        let before = self.handoff.entries.len();
        self.handoff.entries.retain(|e| e.pid != pid);
        self.is_dirty |= self.handoff.entries.len() != before;
    }

    /// When a failed write is due to be tried again.
    pub fn next_retry(&self) -> Option<Millis> {
        self.retry_at.filter(|_| self.is_dirty && !self.is_disabled)
    }

    /// Writes the file if the entries changed or a previous write failed and its retry is due.
    /// Returns the event to emit, if any: the first success, the first failure of a run of
    /// failures, and the success that ends it.
    pub fn persist(&mut self, now: Millis) -> Option<Event> {
        if let Some((read_identity, generation)) = self.pending_identity.take() {
            let identity = read_identity(generation);
            self.handoff.boot_id = identity.boot_id;
            self.handoff.pid_ns = identity.pid_ns;
            self.handoff.owner = identity.owner;
            if let Some(event) = self.open_dir() {
                return Some(event);
            }
        }
        if self.is_disabled || !self.is_dirty {
            return None;
        }
        if self.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        let path = self.path().display().to_string();
        match self.write() {
            Ok(()) => {
                self.is_dirty = false;
                self.retry_at = None;
                let should_tell = self.has_failed || !self.has_persisted;
                self.has_failed = false;
                self.has_persisted = true;
                should_tell.then(|| {
                    Event::info("handoff_persisted")
                        .with("path", path)
                        .with("generation", self.handoff.generation.clone())
                        .with("entries", self.handoff.entries.len())
                })
            }
            Err(errno) => {
                // The old file stays as it was, and the entries stay in memory.
                self.retry_at = Some(now.saturating_add(RETRY_MS));
                let was_failing = std::mem::replace(&mut self.has_failed, true);
                if was_failing {
                    log::debug!("handoff {path}: write failed again: {}", errno.desc());
                    return None;
                }
                Some(
                    Event::error("handoff_persist_failed")
                        .with("path", path)
                        .with("error", errno.desc())
                        .with("entries", self.handoff.entries.len()),
                )
            }
        }
    }

    /// One write; a state dir deleted since it was opened is created again first.
    fn write(&mut self) -> Result<(), Errno> {
        if self.dir.as_ref().is_none_or(StateDir::is_deleted) {
            self.dir = None;
            match StateDir::open(&self.path, true) {
                Ok(dir) => {
                    log::warn!("state dir {} was gone: created again", self.path.display());
                    self.dir = Some(dir);
                }
                Err(Refusal::Failed(errno)) => return Err(errno),
                Err(Refusal::Refused(reason)) => {
                    log::error!("state dir {} refused: {reason}", self.path.display());
                    return Err(Errno::EPERM);
                }
            }
        }
        let dir = self.dir.as_ref().ok_or(Errno::ENOENT)?;
        dir.replace(&self.file_name, &self.handoff.encode())
    }

    /// Everything below fleet-init is gone: the generation leaves nothing to reap.
    pub fn remove(&mut self) {
        self.handoff.entries.clear();
        self.is_dirty = false;
        if let Some(dir) = &self.dir {
            if let Err(errno) = dir.remove(&self.file_name) {
                log::warn!("cannot remove {}: {errno}", self.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests;
