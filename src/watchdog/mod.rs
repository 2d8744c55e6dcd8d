//! Everything about memory: the watchdog's policy (a worker's tree reading against its
//! `max_rss_mb`, and the `watchdog_triggered` event with the largest contributors) and the
//! cgroup's OOM-kill counter (`oom`). Sampling is the runtime's; the readings are `procscan`'s.

pub mod oom;

use crate::events::Event;
use crate::procscan::TreeMemory;
use serde_json::{json, Value};

const BYTES_PER_MIB: u64 = 1024 * 1024;

pub fn limit_bytes(max_rss_mb: u64) -> u64 {
    max_rss_mb.saturating_mul(BYTES_PER_MIB)
}

/// `Some(event)` when the reading is over the limit. A tree with no reading at all (every
/// process vanished or unreadable) is no evidence: no action.
pub fn check(worker: &str, pid: i32, memory: &TreeMemory, max_rss_mb: u64) -> Option<Event> {
    let limit = limit_bytes(max_rss_mb);
    // Every sample, so that a watchdog that stays quiet can be told from one that never looked
    // (or never got a reading): tests of "does not trigger" count these lines.
    let Some(source) = memory.source else {
        log::debug!("watchdog sample of {worker} (pid {pid}): no reading");
        return None;
    };
    log::debug!(
        "watchdog sample of {worker} (pid {pid}): {} bytes, {}, {} processes, limit {limit}",
        memory.total_bytes,
        source.as_str(),
        memory.processes
    );
    if memory.total_bytes <= limit {
        return None;
    }
    let top: Vec<Value> = memory
        .top
        .iter()
        .map(|(pid, bytes)| json!({"pid": pid, "rss_bytes": bytes}))
        .collect();
    Some(
        Event::warn("watchdog_triggered")
            .with("worker", worker)
            .with("pid", pid)
            .with("rss_bytes", memory.total_bytes)
            .with("limit_bytes", limit)
            .with("source", source.as_str())
            .with("processes", memory.processes)
            .with("top", top),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procscan::MemorySource;

    fn tree(total_bytes: u64, source: Option<MemorySource>) -> TreeMemory {
        TreeMemory {
            total_bytes,
            source,
            top: vec![(7, total_bytes)],
            processes: 1,
        }
    }

    #[test]
    fn triggers_only_above_the_limit_with_a_reading() {
        let mib = BYTES_PER_MIB;
        for (total, source, fires) in [
            (200 * mib, Some(MemorySource::RssAnonShmem), true),
            (100 * mib, Some(MemorySource::RssAnonShmem), false),
            (100 * mib + 1, Some(MemorySource::VmRss), true),
            (200 * mib, None, false),
            (u64::MAX, Some(MemorySource::RssAnonShmem), true),
        ] {
            let event = check("api", 7, &tree(total, source), 100);
            assert_eq!(event.is_some(), fires, "{total} {source:?}");
            if let Some(event) = event {
                assert_eq!(event.field("rss_bytes"), Some(&json!(total)));
                assert_eq!(event.field("limit_bytes"), Some(&json!(100 * mib)));
                assert_eq!(
                    event.field("source"),
                    Some(&json!(source.unwrap().as_str()))
                );
                assert_eq!(
                    event.field("top"),
                    Some(&json!([{"pid": 7, "rss_bytes": total}]))
                );
            }
        }
        assert_eq!(limit_bytes(u64::MAX), u64::MAX);
    }
}
