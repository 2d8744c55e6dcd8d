//! `--reap` and the reap every normal start does before spawning: consume the handoff files a
//! previous generation left, stop what is still alive of the recorded trees, and rewrite each
//! file to what is left (removing it when nothing is).

pub mod plan;
pub mod stop;

use crate::events::{self, Event};
use crate::handoff::atomic;
use crate::handoff::files::{self, Loaded};
use crate::handoff::format::Handoff;
use crate::procscan;
use plan::{Decision, View};
use std::path::Path;
use std::time::{Duration, Instant};

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
    let mut protected: Vec<i32> = extra.to_vec();
    protected.push(self_pid);
    // Up the parent chain, one stat each: a full /proc scan here cost 18 ms of start-up on a
    // host with a thousand processes.
    let mut pid = self_pid;
    for _ in 0..MAX_ANCESTORS {
        let Some(parent) = procscan::read_stat(proc_root, pid).found().map(|s| s.ppid) else {
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

/// Consumes every handoff file in `state_dir` but `own_file`, emitting the reap events.
/// With `is_quiet_when_empty` (a normal start), nothing is said when there is nothing to reap.
pub fn reap(
    state_dir: &Path,
    own_file: Option<&str>,
    grace: Duration,
    protected: &[i32],
    is_quiet_when_empty: bool,
) -> Report {
    let proc_root = Path::new("/proc");
    let started = Instant::now();
    let mut report = Report::default();
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let loaded = match files::load_all(state_dir, euid, own_file) {
        Ok(loaded) => loaded,
        Err(error) => {
            events::emit(
                &Event::error("reap_skipped")
                    .with("path", state_dir.display().to_string())
                    .with("reason", format!("state dir unreadable: {error}")),
            );
            report.bad_files += 1;
            return finish(report, started);
        }
    };
    if loaded.is_empty() && is_quiet_when_empty {
        return report;
    }
    let boot_id = procscan::read_boot_id(proc_root).unwrap_or_default();
    let table = procscan::scan(proc_root);
    let cmdline = |pid: i32| procscan::read_cmdline(proc_root, pid).found();
    let worker_of = |pid: i32| {
        procscan::read_environ_value(proc_root, pid, "FLEET_INIT_WORKER")
            .found()
            .flatten()
    };
    let view = View {
        table: &table,
        cmdline: &cmdline,
        worker_of: &worker_of,
        protected,
    };
    // Every file's decisions first, then one stop for all trees, so the graces run together.
    let mut usable: Vec<(String, Handoff, Vec<Decision>)> = Vec::new();
    for file in loaded {
        match file {
            Loaded::Usable { name, handoff } if is_live_owner(&handoff, &table) => {
                // Another fleet-init sharing this state dir, alive: its records are its own.
                events::emit(
                    &Event::info("reap_skipped")
                        .with("path", state_dir.join(name).display().to_string())
                        .with("pid", handoff.owner.pid)
                        .with("reason", "its fleet-init is alive"),
                );
            }
            Loaded::Usable { name, handoff } => {
                let decisions = handoff
                    .entries
                    .iter()
                    .map(|entry| plan::decide(entry, &handoff.boot_id, &boot_id, &view))
                    .collect();
                usable.push((name, handoff, decisions));
            }
            Loaded::Refused { name, reason } => {
                report.bad_files += 1;
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
                let moved = moved_to.map(|p| p.display().to_string());
                events::emit(
                    &Event::error("handoff_corrupt")
                        .with("path", state_dir.join(name).display().to_string())
                        .with("moved_to", moved)
                        .with("error", error),
                );
            }
        }
    }
    let roots: Vec<i32> = usable
        .iter()
        .flat_map(|(_, _, decisions)| decisions.iter())
        .filter_map(|d| match d {
            Decision::Stop { roots } => Some(roots.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let outcome = if roots.is_empty() {
        stop::Outcome::default()
    } else {
        stop::stop_trees(proc_root, &roots, grace, protected)
    };
    for (name, handoff, decisions) in usable {
        settle_file(state_dir, &name, handoff, &decisions, &outcome, &mut report);
    }
    finish(report, started)
}

/// Reports each entry's fate and rewrites the file to the entries with survivors.
fn settle_file(
    state_dir: &Path,
    name: &str,
    mut handoff: Handoff,
    decisions: &[Decision],
    outcome: &stop::Outcome,
    report: &mut Report,
) {
    let mut keep = Vec::new();
    for (entry, decision) in handoff.entries.iter().zip(decisions) {
        match decision {
            Decision::Gone => {}
            Decision::Skip { pid, reason } => {
                report.skipped += 1;
                events::emit(
                    &Event::warn("reap_skipped")
                        .with("worker", entry.worker.clone())
                        .with("pid", *pid)
                        .with("reason", reason.clone()),
                );
            }
            Decision::Stop { roots } => {
                for (pid, root, signal) in &outcome.gone {
                    if roots.contains(root) {
                        report.reaped += 1;
                        events::emit(
                            &Event::info("reaped")
                                .with("worker", entry.worker.clone())
                                .with("pid", *pid)
                                .with("signal", crate::signals::name(*signal)),
                        );
                    }
                }
                let survivors: Vec<i32> = outcome
                    .survivors
                    .iter()
                    .filter(|(_, root)| roots.contains(root))
                    .map(|(pid, _)| *pid)
                    .collect();
                if !survivors.is_empty() {
                    report.survivors += survivors.len();
                    log::error!(
                        "worker {} survivors {survivors:?} stay recorded",
                        entry.worker
                    );
                    keep.push(entry.clone());
                }
            }
        }
    }
    handoff.entries = keep;
    let result = if handoff.entries.is_empty() {
        atomic::remove(state_dir, name)
    } else {
        atomic::replace(state_dir, name, &handoff.encode())
    };
    if let Err(error) = result {
        events::emit(
            &Event::error("handoff_persist_failed")
                .with("path", state_dir.join(name).display().to_string())
                .with("error", error.to_string()),
        );
    }
}

/// The file's writer still runs (same pid and start time) and is not this very process, which
/// consumes its own file after an abnormal end.
fn is_live_owner(handoff: &Handoff, table: &[procscan::ProcStat]) -> bool {
    let self_pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    handoff.owner.pid != self_pid
        && procscan::find(table, handoff.owner.pid)
            .is_some_and(|p| p.start_time == handoff.owner.start_time && !p.is_zombie())
}

fn finish(report: Report, started: Instant) -> Report {
    events::emit(
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
