//! Which recorded processes may be stopped: pure decisions over a /proc snapshot. A recorded
//! pid is a target only if its start time and command line still match (a reused pid is never
//! killed); entries of another boot are never signalled; protected pids are skipped; entries
//! without pids, and recorded pids already gone, are resolved by `FLEET_INIT_WORKER` in the
//! environment.

use crate::handoff::format::Entry;
use crate::procscan::{find, ProcStat};

/// What the reaper knows of the live processes, besides the stat table.
pub struct View<'a> {
    pub table: &'a [ProcStat],
    pub cmdline: &'a dyn Fn(i32) -> Option<Vec<String>>,
    /// `FLEET_INIT_WORKER` of a process, if it has one.
    pub worker_of: &'a dyn Fn(i32) -> Option<String>,
    pub protected: &'a [i32],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing of this entry is alive.
    Gone,
    /// Not touched, and the entry is dropped: the recorded process is gone (reused pid,
    /// another boot) or must never be killed (protected).
    Skip { pid: Option<i32>, reason: String },
    /// Stop these processes and their trees.
    Stop { roots: Vec<i32> },
}

pub fn decide(entry: &Entry, file_boot_id: &str, boot_id: &str, view: &View<'_>) -> Decision {
    if file_boot_id != boot_id {
        return Decision::Skip {
            pid: entry.pid,
            reason: format!("written under another boot id ({file_boot_id})"),
        };
    }
    match entry.pid {
        Some(pid) => decide_recorded(entry, pid, view),
        None => decide_by_name(&entry.worker, view),
    }
}

fn decide_recorded(entry: &Entry, pid: i32, view: &View<'_>) -> Decision {
    if view.protected.contains(&pid) {
        return Decision::Skip {
            pid: Some(pid),
            reason: "protected pid".into(),
        };
    }
    let Some(process) = find(view.table, pid).filter(|p| !p.is_zombie()) else {
        // The recorded process is gone, but what escaped its group (setsid'd, daemonized) may
        // not be: the generation died while draining it. Its name still finds it.
        return decide_by_name(&entry.worker, view);
    };
    if Some(process.start_time) != entry.start_time {
        return Decision::Skip {
            pid: Some(pid),
            reason: format!(
                "pid reused: start time {} is not the recorded {}",
                process.start_time,
                entry.start_time.unwrap_or_default()
            ),
        };
    }
    if !entry.cmdline.is_empty() {
        let live = (view.cmdline)(pid);
        if live.as_ref() != Some(&entry.cmdline) {
            return Decision::Skip {
                pid: Some(pid),
                reason: format!(
                    "pid reused: command line {:?} is not the recorded {:?}",
                    live.unwrap_or_default(),
                    entry.cmdline
                ),
            };
        }
    }
    Decision::Stop { roots: vec![pid] }
}

/// Every live process carrying the worker's name whose parent does not (the tops of its trees).
fn decide_by_name(worker: &str, view: &View<'_>) -> Decision {
    let named: Vec<&ProcStat> = view
        .table
        .iter()
        .filter(|p| !p.is_zombie() && !view.protected.contains(&p.pid))
        .filter(|p| (view.worker_of)(p.pid).as_deref() == Some(worker))
        .collect();
    let roots: Vec<i32> = named
        .iter()
        .filter(|p| !named.iter().any(|parent| parent.pid == p.ppid))
        .map(|p| p.pid)
        .collect();
    if roots.is_empty() {
        Decision::Gone
    } else {
        Decision::Stop { roots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, ppid: i32, start_time: u64, state: char) -> ProcStat {
        ProcStat {
            pid,
            comm: "x".into(),
            state,
            ppid,
            pgrp: pid,
            session: pid,
            start_time,
        }
    }

    fn entry(pid: Option<i32>, start_time: Option<u64>, cmdline: &[&str]) -> Entry {
        Entry {
            worker: "api".into(),
            run: 1,
            pid,
            start_time,
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn decisions_table() {
        let table = [
            proc(1, 0, 1, 'S'),
            proc(10, 1, 100, 'S'),
            proc(11, 10, 101, 'S'),
            proc(12, 1, 102, 'Z'),
            proc(20, 1, 200, 'S'),
            proc(21, 20, 201, 'S'),
            proc(30, 1, 300, 'S'),
        ];
        let cmdline = |pid: i32| match pid {
            10 => Some(vec!["/app/api".to_string()]),
            _ => Some(vec!["other".to_string()]),
        };
        let worker_of = |pid: i32| matches!(pid, 20 | 21 | 30).then(|| "web".to_string());
        let view = View {
            table: &table,
            cmdline: &cmdline,
            worker_of: &worker_of,
            protected: &[1, 30],
        };
        let web = Entry {
            worker: "web".into(),
            ..entry(None, None, &[])
        };
        let skip = |pid: i32, reason: &str| Decision::Skip {
            pid: Some(pid),
            reason: reason.into(),
        };
        for (entry, boot, want) in [
            (
                entry(Some(10), Some(100), &["/app/api"]),
                "b",
                Decision::Stop { roots: vec![10] },
            ),
            (
                entry(Some(10), Some(100), &[]),
                "b",
                Decision::Stop { roots: vec![10] },
            ),
            (
                entry(Some(10), Some(99), &["/app/api"]),
                "b",
                skip(10, "pid reused: start time 100 is not the recorded 99"),
            ),
            (
                entry(Some(10), Some(100), &["/app/old"]),
                "b",
                skip(
                    10,
                    "pid reused: command line [\"/app/api\"] is not the recorded [\"/app/old\"]",
                ),
            ),
            (entry(Some(12), Some(102), &[]), "b", Decision::Gone),
            (entry(Some(99), Some(1), &[]), "b", Decision::Gone),
            (
                Entry {
                    worker: "web".into(),
                    ..entry(Some(99), Some(1), &[])
                },
                "b",
                Decision::Stop { roots: vec![20] },
            ),
            (entry(Some(1), Some(1), &[]), "b", skip(1, "protected pid")),
            (
                entry(Some(10), Some(100), &[]),
                "old",
                skip(10, "written under another boot id (old)"),
            ),
            (web, "b", Decision::Stop { roots: vec![20] }),
            (entry(None, None, &[]), "b", Decision::Gone),
        ] {
            assert_eq!(decide(&entry, boot, "b", &view), want, "{entry:?} {boot}");
        }
    }
}
