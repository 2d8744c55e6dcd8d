//! Who is left to signal: at shutdown, every process in the PID namespace (as PID 1) or below
//! fleet-init (as subreaper), except fleet-init, zombies and the spared worker groups; after a
//! worker's death, the processes of it that escaped its process group.

use crate::procscan::{self, descendants, Lookup, ProcStat};
use std::path::Path;

/// Where fleet-init stands, which decides what "every other process" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    pub self_pid: i32,
    pub is_pid1: bool,
}

/// The pids to signal, from a scan of /proc.
pub fn targets(table: &[ProcStat], scope: Scope, spare_groups: &[i32]) -> Vec<i32> {
    let candidates: Vec<i32> = if scope.is_pid1 {
        table.iter().map(|p| p.pid).collect()
    } else {
        descendants(table, scope.self_pid)
    };
    candidates
        .into_iter()
        .filter(|pid| *pid != scope.self_pid)
        .filter_map(|pid| table.iter().find(|p| p.pid == pid))
        .filter(|p| !p.is_zombie() && !spare_groups.contains(&p.pgrp))
        .map(|p| p.pid)
        .collect()
}

/// fleet-init's live children other than the workers' main processes `mains`, each with its
/// group and its marks: read once a turn, then asked for every draining worker (a signal that
/// ends a thousand workers at once drains a thousand groups in one turn; read per group, that
/// was a million /proc reads and seconds of a loop deaf to SIGTERM). One read of the children
/// list when nobody escaped.
pub fn children(proc_root: &Path, self_pid: i32, mains: &[i32]) -> Vec<Child> {
    let path = proc_root.join(format!("{self_pid}/task/{self_pid}/children"));
    let Ok(listed) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mains: std::collections::HashSet<i32> = mains.iter().copied().collect();
    listed
        .split_whitespace()
        .filter_map(|pid| pid.parse::<i32>().ok())
        .filter(|pid| !mains.contains(pid))
        .filter_map(|pid| {
            let stat = procscan::read_stat(proc_root, pid).found()?;
            if stat.is_zombie() {
                return None;
            }
            let marks = procscan::read_marks(proc_root, pid);
            (marks != Lookup::Gone).then_some(Child {
                pid,
                pgrp: stat.pgrp,
                marks,
            })
        })
        .collect()
}

/// A child of fleet-init as `children` found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub pid: i32,
    pub pgrp: i32,
    pub marks: Lookup<procscan::Marks>,
}

/// A dead worker's processes that left its group (setsid'd, daemonized), among `children`:
/// when its main process died they were reparented to fleet-init, and they still carry this
/// generation's id and the worker's name (read as their owner, so a `user` worker's are found
/// without CAP_SYS_PTRACE). Those still in the worker's group `pgid` are left out: the group's
/// signals reach them, and a process gets one stop signal per stop, not one per path that
/// found it.
pub fn escaped_among(children: &[Child], generation: &str, worker: &str, pgid: i32) -> Escaped {
    let mut escaped = Escaped::default();
    for child in children {
        match &child.marks {
            Lookup::Found(marks) if marks.generation.is_some() => {
                let is_its = marks.generation.as_deref() == Some(generation)
                    && marks.worker.as_deref() == Some(worker);
                if is_its && child.pgrp != pgid {
                    escaped.pids.push(child.pid);
                }
            }
            Lookup::Gone => {}
            // No marks at all, or none readable: a process in the middle of an exec shows an
            // empty environment for a moment (the new program's is not set up yet).
            Lookup::Found(_) | Lookup::Unreadable(_) | Lookup::Malformed => {
                escaped.is_unsure = true
            }
        }
    }
    escaped
}

/// A dead worker's escaped processes, and whether some child of fleet-init could not be told
/// apart (look again shortly before calling the group empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Escaped {
    pub pids: Vec<i32>,
    pub is_unsure: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, ppid: i32, pgrp: i32, state: char) -> ProcStat {
        ProcStat {
            pid,
            comm: "x".into(),
            state,
            ppid,
            pgrp,
            session: 1,
            start_time: 1,
        }
    }

    #[test]
    fn an_escapee_is_its_worker_s_out_of_its_group_and_unknowns_make_it_unsure() {
        let marks = |generation: &str, worker: &str| {
            Lookup::Found(procscan::Marks {
                generation: Some(generation.into()),
                worker: Some(worker.into()),
            })
        };
        let child = |pid, pgrp, marks| Child { pid, pgrp, marks };
        let children = [
            child(20, 20, marks("g", "api")),   // setsid'd out of api's group 10
            child(21, 10, marks("g", "api")),   // still in the group: the group's signal
            child(30, 30, marks("g", "web")),   // web's
            child(40, 40, marks("old", "api")), // another generation's
        ];
        let api = escaped_among(&children, "g", "api", 10);
        assert_eq!(
            api,
            Escaped {
                pids: vec![20],
                is_unsure: false
            }
        );
        assert_eq!(escaped_among(&children, "g", "web", 11).pids, [30]);
        for unknown in [
            Lookup::Found(procscan::Marks::default()),
            Lookup::Unreadable(nix::errno::Errno::EACCES),
            Lookup::Malformed,
        ] {
            let children = [child(20, 20, marks("g", "api")), child(50, 50, unknown)];
            let api = escaped_among(&children, "g", "api", 10);
            assert_eq!(
                api,
                Escaped {
                    pids: vec![20],
                    is_unsure: true
                }
            );
        }
    }

    #[test]
    fn selection_by_scope() {
        let table = [
            proc(1, 0, 1, 'S'),    // init of the namespace
            proc(10, 1, 10, 'S'),  // worker, spared
            proc(11, 10, 10, 'S'), // its child, same group, spared
            proc(12, 1, 12, 'S'),  // setsid escapee
            proc(13, 12, 12, 'Z'), // zombie
            proc(14, 12, 12, 'S'), // escapee's child
            proc(50, 0, 50, 'S'),  // not below fleet-init when it is pid 40
        ];
        let pid1 = Scope {
            self_pid: 1,
            is_pid1: true,
        };
        assert_eq!(targets(&table, pid1, &[10]), [12, 14, 50]);
        assert_eq!(targets(&table, pid1, &[]), [10, 11, 12, 14, 50]);
        let sub = Scope {
            self_pid: 12,
            is_pid1: false,
        };
        assert_eq!(targets(&table, sub, &[]), [14]);
    }
}
