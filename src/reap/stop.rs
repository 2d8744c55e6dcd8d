//! Stopping whole process trees that fleet-init does not own as children: SIGTERM, grace,
//! SIGKILL, and waiting until each process is gone. A process is signalled through a pidfd
//! opened after its start time was checked again, so a pid reused meanwhile is never hit.

use crate::procscan::{self, descendants, find, Lookup, ProcStat};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// After SIGKILL, how long the kernel is given to take the processes down.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Without pidfds (kernels before 5.3), liveness is polled at this interval.
const FALLBACK_POLL: Duration = Duration::from_millis(10);

/// One process to stop, and the root (recorded process) it belongs to.
struct Member {
    root: i32,
    start_time: u64,
    /// `None` without pidfd support: signalled by pid after a start-time check.
    pidfd: Option<OwnedFd>,
    signal: Option<i32>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// (pid, root, last signal sent) of each process confirmed gone.
    pub gone: Vec<(i32, i32, i32)>,
    /// (pid, root) still alive at the end.
    pub survivors: Vec<(i32, i32)>,
}

pub fn stop_trees(proc_root: &Path, roots: &[i32], grace: Duration, protected: &[i32]) -> Outcome {
    let mut members: BTreeMap<i32, Member> = BTreeMap::new();
    let table = procscan::scan(proc_root);
    enlist(&mut members, &table, roots, protected, proc_root);
    signal_all(&mut members, libc::SIGTERM, proc_root);
    wait_gone(&mut members, Instant::now() + grace, proc_root);
    let mut outcome = Outcome::default();
    collect_gone(&mut members, &mut outcome, proc_root);
    if !members.is_empty() {
        // Children forked during the grace join their tree before the SIGKILL.
        let table = procscan::scan(proc_root);
        let live_roots: Vec<i32> = members.keys().copied().collect();
        let before: Vec<i32> = members.keys().copied().collect();
        enlist(&mut members, &table, &live_roots, protected, proc_root);
        for pid in members.keys().copied().collect::<Vec<_>>() {
            if !before.contains(&pid) {
                if let Some(member) = members.get_mut(&pid) {
                    // Inherit the root of its nearest enlisted ancestor.
                    member.root = procscan::ancestors(&table, pid)
                        .into_iter()
                        .find(|a| before.contains(a))
                        .unwrap_or(pid);
                }
            }
        }
        signal_all(&mut members, libc::SIGKILL, proc_root);
        wait_gone(&mut members, Instant::now() + KILL_WAIT, proc_root);
        collect_gone(&mut members, &mut outcome, proc_root);
    }
    outcome.survivors = members.iter().map(|(pid, m)| (*pid, m.root)).collect();
    outcome
}

/// Adds each root and its descendants, each with a pidfd opened after a start-time check.
fn enlist(
    members: &mut BTreeMap<i32, Member>,
    table: &[ProcStat],
    roots: &[i32],
    protected: &[i32],
    proc_root: &Path,
) {
    for &root in roots {
        let tree = std::iter::once(root).chain(descendants(table, root));
        for pid in tree {
            if members.contains_key(&pid) || protected.contains(&pid) {
                continue;
            }
            let Some(scanned) = find(table, pid).filter(|p| !p.is_zombie()) else {
                continue;
            };
            let pidfd = open_pidfd(pid);
            // Checked after the pidfd exists: from here on the pidfd names this very process.
            match procscan::read_stat(proc_root, pid) {
                Lookup::Found(now) if now.start_time == scanned.start_time => {}
                _ => continue,
            }
            members.insert(
                pid,
                Member {
                    root,
                    start_time: scanned.start_time,
                    pidfd,
                    signal: None,
                },
            );
        }
    }
}

fn open_pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal_all(members: &mut BTreeMap<i32, Member>, signal: i32, proc_root: &Path) {
    for (pid, member) in members.iter_mut() {
        let result = match &member.pidfd {
            Some(pidfd) => {
                let fd = std::os::fd::AsRawFd::as_raw_fd(pidfd);
                // SAFETY: pidfd_send_signal(2) on a descriptor we own, no siginfo.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd,
                        signal,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(Errno::last())
                }
            }
            None => signal_by_pid(*pid, member.start_time, signal, proc_root),
        };
        match result {
            Ok(()) => member.signal = Some(signal),
            // Already gone: nothing to do.
            Err(Errno::ESRCH) => member.signal = member.signal.or(Some(signal)),
            Err(errno) => log::warn!(
                "cannot send {} to pid {pid}: {errno}",
                crate::signals::name(signal)
            ),
        }
    }
}

/// The fallback: re-check the start time right before kill(2).
fn signal_by_pid(pid: i32, start_time: u64, signal: i32, proc_root: &Path) -> Result<(), Errno> {
    match procscan::read_stat(proc_root, pid) {
        Lookup::Found(now) if now.start_time == start_time && !now.is_zombie() => {
            // SAFETY: plain kill(2).
            if unsafe { libc::kill(pid, signal) } == 0 {
                Ok(())
            } else {
                Err(Errno::last())
            }
        }
        _ => Err(Errno::ESRCH),
    }
}

fn is_gone(pid: i32, member: &Member, proc_root: &Path) -> bool {
    match &member.pidfd {
        Some(pidfd) => {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        }
        None => !matches!(procscan::read_stat(proc_root, pid),
            Lookup::Found(now) if now.start_time == member.start_time && !now.is_zombie()),
    }
}

/// Sleeps on the pidfds until every member has exited or the deadline passes, reaping
/// zombies that reparent to us (as PID 1 or subreaper) on every wake-up.
fn wait_gone(members: &mut BTreeMap<i32, Member>, deadline: Instant, proc_root: &Path) {
    loop {
        // Their statuses are nobody's business here: the processes are only being taken down.
        let _reaped = crate::reaper::reap_all();
        let pending: Vec<i32> = members
            .iter()
            .filter(|(pid, m)| !is_gone(**pid, m, proc_root))
            .map(|(pid, _)| *pid)
            .collect();
        if pending.is_empty() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        let with_pidfd: Vec<PollFd<'_>> = pending
            .iter()
            .filter_map(|pid| members.get(pid)?.pidfd.as_ref())
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if with_pidfd.len() < pending.len() {
            std::thread::sleep(left.min(FALLBACK_POLL));
            continue;
        }
        let mut fds = with_pidfd;
        let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                log::warn!("poll on pidfds failed: {errno}");
                std::thread::sleep(left.min(FALLBACK_POLL));
            }
        }
    }
}

fn collect_gone(members: &mut BTreeMap<i32, Member>, outcome: &mut Outcome, proc_root: &Path) {
    let gone: Vec<i32> = members
        .iter()
        .filter(|(pid, m)| is_gone(**pid, m, proc_root))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in gone {
        if let Some(member) = members.remove(&pid) {
            outcome
                .gone
                .push((pid, member.root, member.signal.unwrap_or(libc::SIGTERM)));
        }
    }
}
