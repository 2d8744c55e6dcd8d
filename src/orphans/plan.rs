//! Which processes belong to a dead generation: pure decisions over a /proc snapshot.
//!
//! A handoff file of another boot is dropped and of another PID namespace kept, both untouched;
//! a file whose owner still runs is skipped. For a dead generation, a live process is a target
//! when it carries the generation's id in its environment, or is a recorded worker process
//! (same pid, same start time: its command line may have changed by `exec`), or descends from
//! a target. A process that carries another id, or none, never is: a worker name alone never
//! makes a target. A process whose environment cannot be read even as its owner is reported as
//! unverified (counted as a survivor), never silently taken for a stranger.

use crate::handoff::format::{Entry, Handoff};
use crate::procscan::{children_map, find, walk, Lookup, Marks, ProcStat};
use nix::errno::Errno;
use std::collections::BTreeMap;

/// Where the reader stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    pub boot_id: String,
    pub pid_ns: u64,
    pub self_pid: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileVerdict {
    /// Written under another boot: every process it names is long gone. Dropped.
    OtherBoot,
    /// Written in another PID namespace: its pids mean nothing here. Kept, never acted on.
    OtherNamespace,
    /// Its fleet-init runs: its processes are its own.
    LiveOwner,
    /// Its fleet-init is gone: what is left of the generation is to be stopped.
    Dead,
}

pub fn judge(handoff: &Handoff, reader: &Reader, table: &[ProcStat]) -> FileVerdict {
    if handoff.boot_id != reader.boot_id {
        return FileVerdict::OtherBoot;
    }
    if handoff.pid_ns != reader.pid_ns {
        return FileVerdict::OtherNamespace;
    }
    // This very process is the owner after an abnormal end exec'd --reap: its own generation
    // is dead by then.
    let owner = &handoff.owner;
    let is_alive = owner.pid != reader.self_pid
        && find(table, owner.pid)
            .is_some_and(|p| p.start_time == owner.start_time && !p.is_zombie());
    if is_alive {
        FileVerdict::LiveOwner
    } else {
        FileVerdict::Dead
    }
}

/// A dead generation, as the selection needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadGeneration {
    pub generation: String,
    /// Nothing the generation started can have started before its owner did.
    pub owner_start_time: u64,
    pub entries: Vec<Entry>,
    /// Every descendant of the reader is the generation's too: the reader is its owner, after
    /// an abnormal end whose registry could not be written.
    pub is_own: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub start_time: u64,
    /// Index into the dead generations.
    pub generation: usize,
    pub worker: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub targets: BTreeMap<i32, Target>,
    /// Could be the generation's, cannot be told: (pid, generation candidates' start, errno).
    pub unverified: BTreeMap<i32, Errno>,
    /// Protected processes met among the targets: never signalled, reported (with the
    /// generation and the worker they would have been a target of).
    pub protected: BTreeMap<i32, Target>,
}

/// The live processes of the dead generations in `table`. `marks` reads a process's
/// environment marks (the caller caches it: it is a file read per process).
pub fn select(
    table: &[ProcStat],
    dead: &[DeadGeneration],
    marks: &mut dyn FnMut(&ProcStat) -> Lookup<Marks>,
    protected: &[i32],
    self_pid: i32,
) -> Selection {
    let mut selection = Selection::default();
    let Some(earliest) = dead.iter().map(|g| g.owner_start_time).min() else {
        return selection;
    };
    // One index of the table for every walk below: a tree of thousands of processes is walked
    // in O(n log n), not O(n^2).
    let by_pid: BTreeMap<i32, &ProcStat> = table.iter().map(|p| (p.pid, p)).collect();
    // A protected process met in a tree is skipped with its subtree: no walk goes below it.
    // The reader itself is protected, and after an abnormal end its own descendants are the
    // walk's (`is_own`): that one root stays.
    let mut children = children_map(table);
    for pid in protected.iter().filter(|pid| **pid != self_pid) {
        children.remove(pid);
    }
    let recorded: BTreeMap<(i32, u64), (usize, &str)> = dead
        .iter()
        .enumerate()
        .flat_map(|(index, g)| {
            g.entries
                .iter()
                .map(move |e| ((e.pid, e.start_time), (index, e.worker.as_str())))
        })
        .collect();
    for process in table {
        if process.is_zombie() || process.pid == self_pid || process.start_time < earliest {
            continue;
        }
        // A recorded pid is its generation's only when it started after that generation's
        // owner (a file may name any pid; the earliest owner of all files is no bound).
        let recorded = recorded
            .get(&(process.pid, process.start_time))
            .filter(|(index, _)| {
                dead.get(*index)
                    .is_some_and(|g| process.start_time >= g.owner_start_time)
            })
            .map(|(index, worker)| (*index, Some(worker.to_string())));
        let found = match recorded {
            Some(found) => Some(found),
            None => match marks(process) {
                Lookup::Found(marks) => dead
                    .iter()
                    .position(|g| {
                        marks.generation.as_deref() == Some(g.generation.as_str())
                            && process.start_time >= g.owner_start_time
                    })
                    .map(|index| (index, marks.worker)),
                Lookup::Gone => None,
                // A protected pid (the reader's ancestors among them) is never a target, so
                // not knowing whose it is changes nothing.
                _ if protected.contains(&process.pid) => None,
                Lookup::Unreadable(errno) => {
                    selection.unverified.insert(process.pid, errno);
                    None
                }
                Lookup::Malformed => {
                    selection.unverified.insert(process.pid, Errno::EINVAL);
                    None
                }
            },
        };
        if let Some((generation, worker)) = found {
            add(
                &mut selection,
                &by_pid,
                process,
                generation,
                worker,
                protected,
            );
        }
    }
    let live = |pid: &i32| by_pid.get(pid).copied().filter(|p| !p.is_zombie());
    if let Some(own) = dead.iter().position(|g| g.is_own) {
        for process in walk(&children, self_pid).iter().filter_map(live) {
            add(&mut selection, &by_pid, process, own, None, protected);
        }
    }
    // Every descendant of a target is the generation's too: a child that cleared its
    // environment, or one whose environment cannot be read, is still in the tree.
    let roots: Vec<(i32, usize)> = selection
        .targets
        .iter()
        .map(|(pid, target)| (*pid, target.generation))
        .collect();
    for (root, generation) in roots {
        for process in walk(&children, root).iter().filter_map(live) {
            if !selection.targets.contains_key(&process.pid) {
                add(
                    &mut selection,
                    &by_pid,
                    process,
                    generation,
                    None,
                    protected,
                );
            }
        }
    }
    let targets = &selection.targets;
    selection
        .unverified
        .retain(|pid, _| !targets.contains_key(pid));
    selection
}

fn add(
    selection: &mut Selection,
    by_pid: &BTreeMap<i32, &ProcStat>,
    process: &ProcStat,
    generation: usize,
    worker: Option<String>,
    protected: &[i32],
) {
    // A descendant takes the worker of its nearest recorded ancestor when it names none.
    let worker = worker.or_else(|| {
        let parent = by_pid.get(&process.ppid)?;
        selection.targets.get(&parent.pid)?.worker.clone()
    });
    let target = Target {
        start_time: process.start_time,
        generation,
        worker,
    };
    if protected.contains(&process.pid) {
        selection.protected.insert(process.pid, target);
        return;
    }
    selection.targets.entry(process.pid).or_insert(target);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::format::{Owner, FORMAT_VERSION};

    const DEAD: &str = "dddddddddddddddddddddddddddddddd";
    const LIVE: &str = "11111111111111111111111111111111";

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

    fn handoff(boot: &str, ns: u64, owner_pid: i32, owner_start: u64) -> Handoff {
        Handoff {
            version: FORMAT_VERSION,
            generation: DEAD.into(),
            boot_id: boot.into(),
            pid_ns: ns,
            owner: Owner {
                pid: owner_pid,
                start_time: owner_start,
            },
            entries: vec![],
        }
    }

    #[test]
    fn a_protected_process_inside_a_tree_is_skipped_with_its_subtree() {
        // 3 carries the dead id; 5, its child, is protected; 7 and 8 are 5's, with no id.
        let table = [
            proc(1, 0, 100, 'S'),
            proc(3, 1, 103, 'S'),
            proc(4, 3, 104, 'S'),
            proc(5, 3, 105, 'S'),
            proc(7, 5, 107, 'S'),
            proc(8, 5, 108, 'S'),
        ];
        let dead = [DeadGeneration {
            generation: DEAD.into(),
            owner_start_time: 100,
            entries: vec![],
            is_own: false,
        }];
        let mut marks = |p: &ProcStat| {
            Lookup::Found(Marks {
                generation: (p.pid == 3).then(|| DEAD.into()),
                worker: None,
            })
        };
        let selection = select(&table, &dead, &mut marks, &[5], 2);
        assert_eq!(
            selection.targets.keys().copied().collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(selection.protected.keys().copied().collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn files_are_judged_by_boot_namespace_and_owner() {
        let table = [
            proc(1, 0, 1, 'S'),
            proc(50, 1, 500, 'S'),
            proc(60, 1, 600, 'Z'),
        ];
        let reader = Reader {
            boot_id: "b".into(),
            pid_ns: 7,
            self_pid: 1,
        };
        for (file, want) in [
            (handoff("old", 7, 50, 500), FileVerdict::OtherBoot),
            (handoff("b", 8, 50, 500), FileVerdict::OtherNamespace),
            (handoff("b", 7, 50, 500), FileVerdict::LiveOwner),
            (handoff("b", 7, 50, 499), FileVerdict::Dead),
            (handoff("b", 7, 60, 600), FileVerdict::Dead),
            (handoff("b", 7, 99, 1), FileVerdict::Dead),
            (handoff("b", 7, 1, 1), FileVerdict::Dead),
        ] {
            assert_eq!(judge(&file, &reader, &table), want, "{file:?}");
        }
    }

    fn entry(worker: &str, pid: i32, start_time: u64) -> Entry {
        Entry {
            worker: worker.into(),
            run: 1,
            pid,
            start_time,
            cmdline: vec!["/old/name".into()],
        }
    }

    #[test]
    fn targets_are_the_generation_s_processes_and_only_those() {
        // 1 fleet-init (reader)
        // 10 recorded worker, exec'd into another command line; 11 its child
        // 20 carries the dead generation (a daemonized child of a worker); 21 its child with a
        //    cleared environment
        // 30 carries a live generation's id, same worker name: never a target
        // 40 carries nothing: never a target
        // 50 recorded pid reused by a newer process (other start time), carries nothing
        // 60 environment unreadable, started after the dead owner: unverified
        // 70 environment unreadable, started before the dead owner: cannot be its
        // 80 carries the dead id but is protected; 81 its child
        // 90 zombie carrying the dead id
        let table = [
            proc(1, 0, 150, 'S'),
            proc(10, 1, 110, 'S'),
            proc(11, 10, 111, 'S'),
            proc(20, 1, 120, 'S'),
            proc(21, 20, 121, 'S'),
            proc(30, 1, 130, 'S'),
            proc(40, 1, 140, 'S'),
            proc(50, 1, 999, 'S'),
            proc(60, 1, 160, 'S'),
            proc(70, 1, 5, 'S'),
            proc(80, 1, 180, 'S'),
            proc(81, 80, 181, 'S'),
            proc(90, 1, 190, 'Z'),
        ];
        let dead = [DeadGeneration {
            generation: DEAD.into(),
            owner_start_time: 100,
            entries: vec![entry("api", 10, 110), entry("api", 50, 150)],
            is_own: false,
        }];
        let mut marks = |p: &ProcStat| {
            let carry = |generation: &str, worker: &str| {
                Lookup::Found(Marks {
                    generation: Some(generation.into()),
                    worker: Some(worker.into()),
                })
            };
            match p.pid {
                20 | 80 | 90 => carry(DEAD, "api"),
                30 => carry(LIVE, "api"),
                60 | 70 | 11 | 1 => Lookup::Unreadable(Errno::EACCES),
                _ => Lookup::Found(Marks::default()),
            }
        };
        let selection = select(&table, &dead, &mut marks, &[1, 80], 2);
        let pids: Vec<i32> = selection.targets.keys().copied().collect();
        assert_eq!(pids, [10, 11, 20, 21]);
        let workers: Vec<Option<&str>> = selection
            .targets
            .values()
            .map(|t| t.worker.as_deref())
            .collect();
        assert_eq!(
            workers,
            [Some("api"); 4],
            "descendants take their root's worker"
        );
        assert_eq!(
            selection.unverified.keys().copied().collect::<Vec<_>>(),
            [60],
            "11 is a descendant of a target; 70 started before the owner"
        );
        assert_eq!(
            selection.protected.keys().copied().collect::<Vec<_>>(),
            [80]
        );
        assert_eq!(
            selection.protected[&80].worker.as_deref(),
            Some("api"),
            "a protected pid is reported with the worker it carries"
        );

        // The owner's own reap after an abnormal end: its descendants are its generation's.
        let own = [DeadGeneration {
            is_own: true,
            entries: vec![],
            ..dead[0].clone()
        }];
        let mut nothing = |_: &ProcStat| Lookup::Found(Marks::default());
        // The reader (1 here) is among the protected at run time: its tree is walked still.
        let protected_reader = select(&table, &own, &mut nothing, &[1], 1);
        assert_eq!(
            protected_reader.targets.len(),
            select(&table, &own, &mut nothing, &[], 1).targets.len()
        );
        assert!(!protected_reader.targets.is_empty());
        let selection = select(&table, &own, &mut nothing, &[], 1);
        assert_eq!(
            selection.targets.len(),
            11,
            "every live process below the reader"
        );
        assert!(
            !selection.targets.contains_key(&90),
            "zombies are left to the waiter"
        );

        let selection = select(&table, &[], &mut nothing, &[], 1);
        assert_eq!(selection, Selection::default());
    }

    #[test]
    fn a_recorded_pid_older_than_its_own_files_owner_is_not_a_target() {
        // Two dead generations: an early owner (100) that recorded nothing, and a later one
        // (300) whose file names pid 10 with its real start time 200. 10 started before the
        // owner of the file that names it: it cannot be that generation's, whatever the file
        // says (the earliest owner of all files once let it through, and it was killed).
        let table = [
            proc(1, 0, 50, 'S'),
            proc(10, 1, 200, 'S'),
            proc(11, 10, 210, 'S'),
        ];
        let early = DeadGeneration {
            generation: DEAD.into(),
            owner_start_time: 100,
            entries: vec![],
            is_own: false,
        };
        let late = DeadGeneration {
            generation: LIVE.into(),
            owner_start_time: 300,
            entries: vec![entry("x", 10, 200)],
            is_own: false,
        };
        let mut nothing = |_: &ProcStat| Lookup::Found(Marks::default());
        let selection = select(&table, &[early, late.clone()], &mut nothing, &[], 1);
        assert_eq!(selection, Selection::default());
        // Alone, the same: and recorded after its owner, it is one.
        let selection = select(&table, std::slice::from_ref(&late), &mut nothing, &[], 1);
        assert_eq!(selection, Selection::default());
        let before = DeadGeneration {
            owner_start_time: 150,
            ..late
        };
        let selection = select(&table, &[before], &mut nothing, &[], 1);
        assert_eq!(
            selection.targets.keys().copied().collect::<Vec<_>>(),
            [10, 11]
        );
    }
}
