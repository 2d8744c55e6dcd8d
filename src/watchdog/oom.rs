//! The kernel OOM killer's counter for fleet-init's cgroup (v2 `memory.events`, v1
//! `memory.oom_control`): tells an OOM kill apart from a crash by SIGKILL.

use std::path::{Path, PathBuf};

/// The files that may hold this cgroup's `oom_kill` counter, most specific first, from the
/// text of `/proc/self/cgroup`. Inside a container the cgroup root is usually its own, so the
/// root files come last as a fallback.
pub fn counter_files(proc_self_cgroup: &str, cgroup_root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            files.push(cgroup_root.join(relative).join("memory.events"));
            files.push(
                cgroup_root
                    .join("unified")
                    .join(relative)
                    .join("memory.events"),
            );
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(
                cgroup_root
                    .join("memory")
                    .join(relative)
                    .join("memory.oom_control"),
            );
        }
    }
    files.push(cgroup_root.join("memory.events"));
    files.push(cgroup_root.join("memory").join("memory.oom_control"));
    files.dedup();
    files
}

/// The `oom_kill N` line of either file format.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("oom_kill"), Some(count)) => count.parse().ok(),
            _ => None,
        }
    })
}

/// Where this process's counter is read from, found once at start.
#[derive(Clone, Debug, Default)]
pub struct OomCounter {
    file: Option<PathBuf>,
    /// The count read while locating the file: the starting value, without a second read.
    pub initial: Option<u64>,
}

impl OomCounter {
    /// Finds the first candidate file that has a readable counter; none: OOM kills are not told
    /// apart (no cgroup memory controller here).
    pub fn locate() -> OomCounter {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let found = counter_files(&cgroup, Path::new("/sys/fs/cgroup"))
            .into_iter()
            .find_map(|file| read_counter(&file).map(|count| (file, count)));
        if found.is_none() {
            log::debug!("no cgroup oom_kill counter found: OOM kills will look like SIGKILLs");
        }
        let (file, initial) = found.unzip();
        OomCounter { file, initial }
    }

    pub fn read(&self) -> Option<u64> {
        self.file.as_deref().and_then(read_counter)
    }
}

fn read_counter(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()
        .as_deref()
        .and_then(parse_oom_kill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_lines_of_both_formats() {
        for (text, want) in [
            (
                "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n",
                Some(2),
            ),
            ("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", Some(7)),
            ("oom_kill_disable 0\nunder_oom 0\n", None),
            ("oom_kill x\n", None),
            ("", None),
        ] {
            assert_eq!(parse_oom_kill(text), want, "{text:?}");
        }
    }

    #[test]
    fn files_follow_the_cgroup_paths() {
        let root = Path::new("/sys/fs/cgroup");
        let v1 = "4:memory:/pod/abc\n3:cpu,cpuacct:/pod/abc\n0::/\n";
        let files = counter_files(v1, root);
        assert_eq!(
            files.first().unwrap(),
            Path::new("/sys/fs/cgroup/memory/pod/abc/memory.oom_control")
        );
        let v2 = "0::/kubepods/pod1/ctr\n";
        assert_eq!(
            counter_files(v2, root).first().unwrap(),
            Path::new("/sys/fs/cgroup/kubepods/pod1/ctr/memory.events")
        );
        assert!(counter_files("garbage", root).contains(&root.join("memory.events")));
    }
}
