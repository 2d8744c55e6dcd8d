//! Process-tree questions over a scanned table (children, descendants, ancestors) and the sum
//! of memory readings over a tree. Pure: the table and the readings come in as values.

use std::collections::{BTreeMap, HashSet};

use super::stat::ProcStat;
use super::status::{MemoryReading, MemorySource};

/// How many of the largest contributors `TreeMemory::top` keeps.
pub const TOP_CONTRIBUTORS: usize = 5;

/// Each parent pid with its children's pids, ascending.
pub fn children_map(table: &[ProcStat]) -> BTreeMap<i32, Vec<i32>> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for process in table {
        children.entry(process.ppid).or_default().push(process.pid);
    }
    for pids in children.values_mut() {
        pids.sort_unstable();
        pids.dedup();
    }
    children
}

/// Every transitive child of `root` by ppid, nearest first, without `root` itself. Each pid
/// appears once and the walk ends even when garbage in the table forms a cycle.
pub fn descendants(table: &[ProcStat], root: i32) -> Vec<i32> {
    walk(&children_map(table), root)
}

/// `descendants` over a children map built once, for callers that walk many roots.
pub fn walk(children: &BTreeMap<i32, Vec<i32>>, root: i32) -> Vec<i32> {
    let mut seen = HashSet::from([root]);
    let mut found = Vec::new();
    let mut next = 0;
    let mut parent = root;
    loop {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(child) {
                found.push(child);
            }
        }
        let Some(&following) = found.get(next) else {
            return found;
        };
        parent = following;
        next = next.saturating_add(1);
    }
}

/// The parent, grandparent, ... of `pid` as the table records them, nearest first, up to the
/// first pid not in the table (pid 0 above init). Ends on cycles.
pub fn ancestors(table: &[ProcStat], pid: i32) -> Vec<i32> {
    let mut seen = HashSet::from([pid]);
    let mut found = Vec::new();
    let mut current = pid;
    while let Some(process) = find(table, current) {
        if process.ppid == 0 || !seen.insert(process.ppid) {
            break;
        }
        found.push(process.ppid);
        current = process.ppid;
    }
    found
}

/// The entry of `pid`, if the table has one.
pub fn find(table: &[ProcStat], pid: i32) -> Option<&ProcStat> {
    table.iter().find(|process| process.pid == pid)
}

/// The resident memory of a process tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeMemory {
    /// Sum over the processes that gave a reading; saturates at `u64::MAX`, which is above any
    /// limit, rather than wrapping to a small number.
    pub total_bytes: u64,
    /// `RssAnonShmem` when every contributor gave it, `VmRss` when any fell back, `None` when
    /// no process gave a reading.
    pub source: Option<MemorySource>,
    /// The largest contributors as (pid, bytes), largest first, at most `TOP_CONTRIBUTORS`.
    pub top: Vec<(i32, u64)>,
    /// How many processes gave a reading.
    pub processes: usize,
}

/// Sums per-process readings into a `TreeMemory`.
pub fn sum_readings(readings: impl IntoIterator<Item = (i32, MemoryReading)>) -> TreeMemory {
    let mut tree = TreeMemory::default();
    let mut contributors = Vec::new();
    for (pid, reading) in readings {
        tree.total_bytes = tree.total_bytes.saturating_add(reading.bytes);
        tree.source = match (tree.source, reading.source) {
            (Some(MemorySource::VmRss), _) | (_, MemorySource::VmRss) => Some(MemorySource::VmRss),
            (_, MemorySource::RssAnonShmem) => Some(MemorySource::RssAnonShmem),
        };
        tree.processes = tree.processes.saturating_add(1);
        contributors.push((pid, reading.bytes));
    }
    // Largest first; equal sizes by pid so the order is stable from one sample to the next.
    contributors.sort_unstable_by(|(pid_a, bytes_a), (pid_b, bytes_b)| {
        bytes_b.cmp(bytes_a).then(pid_a.cmp(pid_b))
    });
    contributors.truncate(TOP_CONTRIBUTORS);
    tree.top = contributors;
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i32, ppid: i32) -> ProcStat {
        ProcStat {
            pid,
            comm: format!("p{pid}"),
            state: 'S',
            ppid,
            pgrp: pid,
            session: 1,
            start_time: 100,
        }
    }

    /// 1 ─┬─ 10 ─┬─ 11 ── 13
    ///    │      └─ 12
    ///    ├─ 20 ── 21
    ///    └─ 30
    /// plus a cycle 40 → 41 → 42 → 40 and a self-parent 50 → 50.
    fn table() -> Vec<ProcStat> {
        [
            (1, 0),
            (10, 1),
            (12, 10),
            (11, 10),
            (13, 11),
            (20, 1),
            (21, 20),
            (30, 1),
            (40, 42),
            (41, 40),
            (42, 41),
            (50, 50),
        ]
        .into_iter()
        .map(|(pid, ppid)| process(pid, ppid))
        .collect()
    }

    #[test]
    fn descendants_follow_ppid_transitively() {
        let table = table();
        let cases: &[(i32, &[i32])] = &[
            (1, &[10, 20, 30, 11, 12, 21, 13]),
            (10, &[11, 12, 13]),
            (11, &[13]),
            (13, &[]),
            (30, &[]),
            (999, &[]),
            (40, &[41, 42]),
            (41, &[42, 40]),
            (50, &[]),
            (0, &[1, 10, 20, 30, 11, 12, 21, 13]),
        ];
        for (root, expected) in cases {
            assert_eq!(descendants(&table, *root), *expected, "root {root}");
        }
        assert_eq!(descendants(&[], 1), Vec::<i32>::new());
    }

    #[test]
    fn duplicate_entries_appear_once() {
        let table = vec![process(2, 1), process(2, 1), process(3, 2), process(3, 2)];
        assert_eq!(descendants(&table, 1), vec![2, 3]);
        assert_eq!(children_map(&table).get(&1), Some(&vec![2]));
    }

    #[test]
    fn children_map_groups_by_parent() {
        let map = children_map(&table());
        assert_eq!(map.get(&1), Some(&vec![10, 20, 30]));
        assert_eq!(map.get(&10), Some(&vec![11, 12]));
        assert_eq!(map.get(&50), Some(&vec![50]));
        assert_eq!(map.get(&13), None);
    }

    #[test]
    fn ancestors_walk_up_and_stop_on_cycles() {
        let table = table();
        let cases: &[(i32, &[i32])] = &[
            (13, &[11, 10, 1]),
            (1, &[]),
            (999, &[]),
            (40, &[42, 41]),
            (50, &[]),
        ];
        for (pid, expected) in cases {
            assert_eq!(ancestors(&table, *pid), *expected, "pid {pid}");
        }
    }

    fn reading(bytes: u64, source: MemorySource) -> MemoryReading {
        MemoryReading { bytes, source }
    }

    #[test]
    fn sums_readings_with_source_and_top() {
        use MemorySource::{RssAnonShmem as Split, VmRss};
        type Case = (&'static str, Vec<(i32, MemoryReading)>, TreeMemory);
        let cases: Vec<Case> = vec![
            ("nothing", vec![], TreeMemory::default()),
            (
                "all split",
                vec![(1, reading(10, Split)), (2, reading(30, Split))],
                TreeMemory {
                    total_bytes: 40,
                    source: Some(Split),
                    top: vec![(2, 30), (1, 10)],
                    processes: 2,
                },
            ),
            (
                "one fell back",
                vec![
                    (1, reading(10, Split)),
                    (2, reading(5, VmRss)),
                    (3, reading(7, Split)),
                ],
                TreeMemory {
                    total_bytes: 22,
                    source: Some(VmRss),
                    top: vec![(1, 10), (3, 7), (2, 5)],
                    processes: 3,
                },
            ),
            (
                "top keeps five, ties by pid",
                (1..=7)
                    .map(|pid| (pid, reading(if pid == 4 { 99 } else { 1 }, Split)))
                    .collect(),
                TreeMemory {
                    total_bytes: 105,
                    source: Some(Split),
                    top: vec![(4, 99), (1, 1), (2, 1), (3, 1), (5, 1)],
                    processes: 7,
                },
            ),
            (
                "saturates instead of wrapping",
                vec![(1, reading(u64::MAX, VmRss)), (2, reading(2, Split))],
                TreeMemory {
                    total_bytes: u64::MAX,
                    source: Some(VmRss),
                    top: vec![(1, u64::MAX), (2, 2)],
                    processes: 2,
                },
            ),
        ];
        for (name, readings, expected) in cases {
            assert_eq!(sum_readings(readings), expected, "{name}");
        }
    }
}
