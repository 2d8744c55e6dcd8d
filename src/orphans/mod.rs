//! `--reap` and the reap every normal start does before spawning: consume the handoff files
//! dead generations left, stop every live process of theirs (found by their generation id, their
//! recorded identity, their ancestry), and remove each file once nothing of it is left.

pub mod leftovers;
pub mod plan;
pub mod stop;

use crate::events::{self, Event};
use crate::handoff::files::{self, Loaded};
use crate::handoff::statedir::{self, Refusal, StateDir};
use crate::handoff::Generation;
use crate::procscan::{self, Lookup, Marks, ProcStat};
use nix::errno::Errno;
use plan::{DeadGeneration, FileVerdict, Reader};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const PROC: &str = "/proc";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub reaped: usize,
    pub skipped: usize,
    pub survivors: usize,
    /// Refused and corrupt files.
    pub bad_files: usize,
}

impl Report {
    /// `--reap`'s exit code: 0 when nothing recorded is left alive and every file was usable.
    pub fn exit_code(&self) -> i32 {
        if self.survivors == 0 && self.bad_files == 0 {
            0
        } else {
            1
        }
    }
}

/// Deeper than any real process tree; a bound in case /proc says something absurd.
const MAX_ANCESTORS: usize = 4096;

/// Who must never be signalled: the given pids, fleet-init itself and its ancestors.
pub fn protected_pids(extra: &[i32], proc_root: &Path) -> Vec<i32> {
    let self_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let own = procscan::read_stat(proc_root, self_pid).found();
    protected_pids_above(extra, proc_root, own.as_ref())
}

/// `protected_pids`, given fleet-init's own stat (read once by a caller that needs it too).
pub fn protected_pids_above(
    extra: &[i32],
    proc_root: &Path,
    own: Option<&procscan::ProcStat>,
) -> Vec<i32> {
    let self_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let mut protected: Vec<i32> = extra.to_vec();
    protected.push(self_pid);
    // Up the parent chain, one stat each: a full /proc scan here cost 18 ms of start-up on a
    // host with a thousand processes.
    let mut pid = self_pid;
    let parent_of = |pid: i32| {
        if pid == self_pid {
            own.map(|stat| stat.ppid)
        } else {
            procscan::read_stat(proc_root, pid).found().map(|s| s.ppid)
        }
    };
    for _ in 0..MAX_ANCESTORS {
        let Some(parent) = parent_of(pid) else {
            break;
        };
        if parent <= 0 || protected.contains(&parent) {
            break;
        }
        protected.push(parent);
        pid = parent;
    }
    protected.sort_unstable();
    protected.dedup();
    protected
}

/// Whether the state dir holds anything a start-up reap acts on: a handoff file or a temp
/// file. Most starts find none, and then need neither the reap's signal watch nor its reads
/// of /proc. A dir that cannot be opened has nothing a quiet reap would act on either.
pub fn has_leftovers(state_dir: &Path) -> bool {
    let Ok(dir) = StateDir::open(state_dir, false) else {
        return false;
    };
    dir.names().is_ok_and(|names| {
        names.iter().any(|name| {
            crate::handoff::format::is_handoff_name(name) || statedir::temp_target(name).is_some()
        })
    })
}

/// What a reap is asked to do besides reading the state dir.
pub struct Request<'a> {
    pub grace: Duration,
    pub protected: &'a [i32],
    /// A normal start: nothing is said when there is nothing to reap.
    pub is_quiet_when_empty: bool,
    /// The reader's own generation after an abnormal end (from `FLEET_INIT_REAP_GENERATION`):
    /// dead, and every descendant of the reader is its, file or no file.
    pub own_generation: Option<Generation>,
    /// Readable when a shutdown signal is pending: the grace ends at once.
    pub interrupt: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Consumes every handoff file in `state_dir`, emitting the reap events.
pub fn reap(state_dir: &Path, request: &Request<'_>) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    let dir = match StateDir::open(state_dir, false) {
        Ok(dir) => Some(dir),
        Err(Refusal::Failed(Errno::ENOENT)) => None,
        // A normal start: the registry that follows says it once ("reported once").
        Err(_) if request.is_quiet_when_empty => return report,
        Err(refusal) => {
            events::emit(
                &Event::error("reap_skipped")
                    .with("path", state_dir.display().to_string())
                    .with("reason", format!("state dir refused: {refusal}")),
            );
            report.bad_files += 1;
            if request.own_generation.is_none() {
                return finish(report, started);
            }
            None
        }
    };
    // One listing for the handoff files and the stale temps alike.
    let names = match dir.as_ref().map(StateDir::names) {
        None => Vec::new(),
        Some(Ok(names)) => names,
        Some(Err(errno)) => {
            events::emit(
                &Event::error("reap_skipped")
                    .with("path", state_dir.display().to_string())
                    .with("reason", format!("state dir unreadable: {}", errno.desc())),
            );
            report.bad_files += 1;
            return finish(report, started);
        }
    };
    let loaded = match &dir {
        Some(dir) => files::load_named(dir, &names, None),
        None => Vec::new(),
    };
    if loaded.is_empty() && request.own_generation.is_none() && request.is_quiet_when_empty {
        if let Some(dir) = &dir {
            remove_stale_temps(dir, &names, &[]);
        }
        return report;
    }
    let proc_root = Path::new(PROC);
    let self_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let reader = Reader {
        boot_id: procscan::read_boot_id(proc_root).unwrap_or_default(),
        pid_ns: procscan::read_pid_ns(proc_root).unwrap_or_default(),
        self_pid,
    };
    let table = procscan::scan(proc_root);
    let mut dead: Vec<DeadGeneration> = Vec::new();
    let mut dead_files: Vec<Option<String>> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let mut is_own_alive = false;
    for file in loaded {
        match file {
            Loaded::Usable { name, handoff } => {
                let path = state_dir.join(&name).display().to_string();
                match plan::judge(&handoff, &reader, &table) {
                    FileVerdict::LiveOwner => {
                        report.skipped += 1;
                        is_own_alive |= request
                            .own_generation
                            .is_some_and(|own| handoff.generation_id() == Some(own));
                        kept.push(name);
                        events::emit(
                            &Event::info("reap_skipped")
                                .with("path", path)
                                .with("pid", handoff.owner.pid)
                                .with("reason", "its fleet-init is alive"),
                        );
                    }
                    FileVerdict::OtherNamespace => {
                        // Its pids mean nothing here: kept for a reaper in its own namespace.
                        report.skipped += 1;
                        report.bad_files += 1;
                        kept.push(name);
                        events::emit(
                            &Event::warn("reap_skipped")
                                .with("path", path)
                                .with("pid", handoff.owner.pid)
                                .with(
                                    "reason",
                                    format!(
                                        "written in another PID namespace ({}, this is {}): kept, nothing signalled",
                                        handoff.pid_ns, reader.pid_ns
                                    ),
                                ),
                        );
                    }
                    FileVerdict::OtherBoot => {
                        report.skipped += 1;
                        events::emit(
                            &Event::info("reap_skipped")
                                .with("path", path)
                                .with("pid", handoff.owner.pid)
                                .with(
                                    "reason",
                                    format!(
                                        "written under another boot ({}): its processes are gone, nothing signalled",
                                        handoff.boot_id
                                    ),
                                ),
                        );
                        if let Some(dir) = &dir {
                            settle(dir, &name, true);
                        }
                    }
                    FileVerdict::Dead => {
                        let is_own = request
                            .own_generation
                            .is_some_and(|own| handoff.generation_id() == Some(own));
                        dead.push(DeadGeneration {
                            generation: handoff.generation,
                            owner_start_time: handoff.owner.start_time,
                            entries: handoff.entries,
                            is_own,
                        });
                        dead_files.push(Some(name));
                    }
                }
            }
            Loaded::Refused { name, reason } => {
                report.bad_files += 1;
                kept.push(name.clone());
                events::emit(
                    &Event::error("reap_skipped")
                        .with("path", state_dir.join(name).display().to_string())
                        .with("reason", format!("refused: {reason}")),
                );
            }
            Loaded::Corrupt {
                name,
                moved_to,
                error,
            } => {
                report.bad_files += 1;
                let moved = moved_to.map(|m| state_dir.join(m).display().to_string());
                events::emit(
                    &Event::error("handoff_corrupt")
                        .with("path", state_dir.join(name).display().to_string())
                        .with("moved_to", moved)
                        .with("error", error),
                );
            }
        }
    }
    if let Some(own) = request.own_generation {
        // The registry could not be written: no file names it, the reader's ancestry does.
        // Never for a generation whose fleet-init is alive elsewhere (a hand-set variable).
        if !dead.iter().any(|g| g.is_own) && !is_own_alive {
            let start_time = procscan::find(&table, self_pid).map_or(0, |p| p.start_time);
            dead.push(DeadGeneration {
                generation: own.to_string(),
                owner_start_time: start_time,
                entries: Vec::new(),
                is_own: true,
            });
            dead_files.push(None);
        }
    }
    let outcome = stop_dead(proc_root, &dead, request, self_pid);
    report_outcome(&outcome, &dead, &mut report);
    if let Some(dir) = &dir {
        for (index, name) in dead_files.iter().enumerate() {
            let Some(name) = name else { continue };
            let is_clear = !outcome.last.targets.values().any(|t| t.generation == index)
                && outcome.last.unverified.is_empty();
            if !is_clear {
                kept.push(name.clone());
            }
            settle(dir, name, is_clear);
        }
        remove_stale_temps(dir, &names, &kept);
    }
    finish(report, started)
}

/// Stops what is left of the dead generations, reading each process's marks once.
fn stop_dead(
    proc_root: &Path,
    dead: &[DeadGeneration],
    request: &Request<'_>,
    self_pid: i32,
) -> stop::Outcome {
    if dead.is_empty() {
        return stop::Outcome::default();
    }
    let mut known: HashMap<(i32, u64), Lookup<Marks>> = HashMap::new();
    let mut marks = |process: &ProcStat| {
        known
            .entry((process.pid, process.start_time))
            .or_insert_with(|| procscan::read_marks(proc_root, process.pid))
            .clone()
    };
    let mut select =
        |table: &[ProcStat]| plan::select(table, dead, &mut marks, request.protected, self_pid);
    stop::stop(proc_root, &mut select, request.grace, request.interrupt)
}

fn report_outcome(outcome: &stop::Outcome, dead: &[DeadGeneration], report: &mut Report) {
    let generation = |index: usize| dead.get(index).map(|g| g.generation.clone());
    for gone in &outcome.gone {
        report.reaped += 1;
        events::emit(
            &Event::info("reaped")
                .with("pid", gone.pid)
                .with("worker", gone.worker.clone())
                .with("generation", generation(gone.generation))
                .with("signal", crate::signals::name(gone.signal)),
        );
    }
    for (pid, target) in &outcome.last.protected {
        report.skipped += 1;
        events::emit(
            &Event::warn("reap_skipped")
                .with("pid", *pid)
                .with("worker", target.worker.clone())
                .with("generation", generation(target.generation))
                .with("reason", "protected pid"),
        );
    }
    for (pid, target) in &outcome.last.targets {
        report.survivors += 1;
        events::emit(
            &Event::error("reap_skipped")
                .with("pid", *pid)
                .with("worker", target.worker.clone())
                .with("generation", generation(target.generation))
                .with("reason", "survived SIGKILL: stays recorded"),
        );
    }
    for (pid, errno) in &outcome.last.unverified {
        report.survivors += 1;
        events::emit(
            &Event::error("reap_skipped")
                .with("pid", *pid)
                .with(
                    "reason",
                    format!(
                        "cannot read its environment ({}): it may be a dead generation's, counted as a survivor",
                        errno.desc()
                    ),
                ),
        );
    }
}

/// A generation with nothing left loses its file; one with survivors keeps it for the next
/// attempt.
fn settle(dir: &StateDir, name: &str, is_clear: bool) {
    if !is_clear {
        return;
    }
    if let Err(errno) = dir.remove(name) {
        events::emit(
            &Event::error("handoff_persist_failed")
                .with("path", dir.display_path(name))
                .with("error", errno.desc()),
        );
    }
}

/// Temp files whose handoff file belongs to nobody alive (a writer killed between create and
/// rename): removed, so they do not pile up.
/// The temp files of `names` (the reap's listing: a temp made since is a live writer's) whose
/// handoff is not in `kept`.
fn remove_stale_temps(dir: &StateDir, names: &[String], kept: &[String]) {
    for name in names {
        let Some(target) = statedir::temp_target(name) else {
            continue;
        };
        if kept.iter().any(|k| k == target) {
            continue;
        }
        match dir.remove(name) {
            Ok(()) => log::info!("removed the stale temp file {}", dir.display_path(name)),
            // Renamed into place by its writer since the listing: not stale after all.
            Err(Errno::ENOENT) => {}
            Err(errno) => log::warn!("cannot remove {}: {errno}", dir.display_path(name)),
        }
    }
}

fn finish(report: Report, started: Instant) -> Report {
    events::emit_final(
        &Event::info("reap_complete")
            .with("reaped", report.reaped)
            .with("skipped", report.skipped)
            .with("survivors", report.survivors)
            .with("bad_files", report.bad_files)
            .with(
                "duration_ms",
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ),
    );
    report
}
